#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: domain_devices
short_description: Declare the devices of libvirt guests (emulated, virtio, passthrough)
version_added: 0.1.0
description:
  - Makes the devices of one or many libvirt domains match a declared list, idempotently.
  - Devices are matched to existing ones by identity (a disk by its target, an interface by its MAC, a
    PCI host device by its host address, ...), so a second run reports no change.
  - Changes are written to the domain's persistent definition with one validated define per domain;
    the result is read back and checked. Elements and attributes the module does not manage, and the
    guest-visible PCI addresses of existing devices, are kept.
  - Concurrent runs do not lose each other's changes, and after any failure each domain's result says what
    really happened to it (O(on_error), O(lock_timeout), RV(outcome); see C(docs/concurrency.md)).
  - On a running guest, changes that QEMU can take live are hot-plugged too (O(apply)); the others are
    reported as waiting for a restart, which O(restart=if_required) can perform.
  - The persistent definition is written as declared whether or not the running guest took every live step
    (as C(virsh ... --live --config) does); each device the guest did not take or release is named in
    RV(waiting_for_restart) (and RV(pending_unplug)). A paused guest gets no live step and no restart. See
    C(docs/domain_devices.md), "Running guests".
  - An interface declared without O(config[].mac) gets a stable MAC derived from the domain name, its
    source and its position, or matches an existing NIC on the same source, so re-runs never add NICs.
author:
  - virtdev.libvirt maintainers (@virtdev)
extends_documentation_fragment:
  - virtdev.libvirt.connection
  - virtdev.libvirt.device_config
attributes:
  check_mode:
    support: full
    description: Predicts RV(after) and RV(commands) exactly; makes no write call.
  diff_mode:
    support: full
    description: Shows the C(<devices>) section of each changed domain before and after.
options:
  domain:
    description:
      - Name of the domain; always taken as a name, never as a UUID (use O(uuid) for that). Required unless
        O(uuid) or O(domains) is used or O(state=rendered) or O(state=parsed).
    type: str
    aliases: [name]
  uuid:
    description:
      - UUID of the domain, to find it by UUID instead of by name. Mutually exclusive with O(domain).
    type: str
  state:
    description:
      - V(merged) adds the listed devices and updates the listed options of matching ones; nothing else
        changes.
      - V(replaced) makes each listed device exactly its spec; its unlisted options are reset (except
        those libvirt derives when absent, such as a disk bus), parts of its XML that no option manages
        are kept.
      - V(overridden) is V(replaced) plus removal of every other device of the kinds present in
        O(config). Devices libvirt re-adds by itself (PCI root, first USB controller, PS/2 inputs,
        memballoon) are reported in RV(implicit) instead of being removed.
      - V(deleted) removes the listed devices.
      - V(gathered) returns the current devices in the option format (no change). A console password shows
        as C(********); given back, that value keeps the current password (see O(config[].password)).
      - V(rendered) returns the device XML O(config) would produce, without a connection (passwords shown as
        C(********)).
      - V(parsed) turns O(running_config) domain XML into the option format, without a connection.
      - Under every state, what the option format does not show is kept. Passwords are kept unless given
        (or removed with an empty value), parts of a device no option describes are kept. Secrets never
        appear in any result, diff, warning or error, in any escaped form. See the section Adopting a guest
        of C(docs/domain_devices.md).
    type: str
    choices: [merged, replaced, overridden, deleted, gathered, rendered, parsed]
    default: merged
  running_config:
    description:
      - Domain XML text for O(state=parsed). It is C(no_log) because domain XML can carry console passwords.
    type: str
  apply:
    description:
      - Where changes go when the guest is running.
      - V(auto) always changes the persistent definition, and also the running guest for every change QEMU can
        take live (hot-plug and hot-unplug of NICs, disks on virtio/SCSI/USB, RNGs, host devices, channels,
        vsock, virtiofs; cdrom media, link state and graphics passwords as live updates). Other changes wait
        for the next boot and are listed in RV(waiting_for_restart).
      - V(config) changes only the persistent definition.
      - V(live) changes only the running guest (planned against its live XML); the definition is untouched.
      - V(both) changes both and fails, before writing anything, when a change cannot be made live, a removal needs
        O(allow_live_removal), or the guest is not running (or paused); when a live step fails (a device the guest
        does not release, a hot-plug QEMU refuses), the definition is still written as declared and the task fails
        naming the devices.
      - Live and persistent definitions are planned against the same declaration, so a device hot-plugged
        by V(auto) gets the same MAC and PCI address in both.
    type: str
    choices: [auto, config, live, both]
    default: auto
  restart:
    description:
      - V(if_required) shuts a running guest down gracefully (the ACPI power button, never forcing it off), waits
        up to O(restart_timeout) seconds for it to power off and starts it again, when devices wait for a restart
        (RV(waiting_for_restart), pending unplugs included). V(never) only reports RV(restart_required). A paused
        guest is never restarted.
      - A shutdown request cannot be withdrawn, so the module records it in the domain's C(<metadata>) before
        pressing the button. When the guest does not power off within O(restart_timeout), the task fails for that
        domain with RV(shutdown_pending=true); whenever a later run (with any O(restart)) finds the guest off with
        that record, it starts the guest and removes the record. To keep such a guest off, remove the record
        (C(virsh metadata DOMAIN urn:virtdev:libvirt:restart:1 --remove --config)).
    type: str
    choices: [never, if_required]
    default: never
  restart_timeout:
    description: Seconds to wait for the guest to power off after the shutdown request of O(restart=if_required).
    type: int
    default: 120
  detach_timeout:
    description:
      - Seconds a hot-unplug may cost in total, per device, waiting for the guest to release it (libvirt's
        device-removed event). The request is sent without libvirt's own wait inside the call, so this is all the
        time a device that the guest does not release costs.
      - A device the guest does not release in time is never reported as removed; it is listed in
        RV(pending_unplug) and RV(waiting_for_restart), the request stays with the guest, and the definition
        is written without it (with O(apply=both) the task then fails).
    type: int
    default: 30
  detach_attempts:
    description: How many times, spread evenly over O(detach_timeout), to send the unplug request (for guests that
      miss the first one).
    type: int
    default: 3
  allow_live_removal:
    description:
      - Removals from a running guest that can lose data or take a device from a driver in use are done live only
        when named here; V(disk) (any disk) and V(passthrough) (host devices of any type, SR-IOV VF interfaces).
      - Without consent, O(state=overridden) and O(state=deleted) remove such a device from the definition only;
        it stays on the running guest until its restart (RV(waiting_for_restart)), its RV(commands) entry has
        C(destructive=true) and C(live=false), and C(--diff) marks it with a comment. With O(apply=live) or
        O(apply=both) such a removal fails before anything is written.
    type: list
    elements: str
    choices: [disk, passthrough]
    default: []
  on_error:
    description:
      - What a manifest (O(domains)) does when one domain fails.
      - V(continue) (the default) applies every domain it can, records each failure in that domain's entry of
        RV(results), and fails the task at the end, naming every failed domain and why. One guest that fails
        does not keep the others of the host from converging. Bad input (an option that does not validate) still
        fails the task before anything is read or written.
      - V(stop) reads and plans every domain first and writes nothing if any of them fails there (a missing
        domain, a device that does not fit, a refused host device); a failure while writing stops the run at that
        domain, and the domains after it are reported as not attempted.
      - Either way each entry of RV(results) says what really happened to its domain (C(outcome), see RV(outcome)). A lost
        connection to libvirt always stops the run.
    type: str
    choices: [continue, stop]
    default: continue
  lock_timeout:
    description:
      - Seconds to wait for another run of this collection on the same machine that is writing the same domain.
      - Each domain is written under a per-domain lock (a lock file named by the domain's UUID; see
        C(docs/concurrency.md)), so concurrent runs never lose each other's changes; the definition is also read
        again just before it is written, and planned again if anything else changed it since.
    type: int
    default: 300
  host_checks:
    description:
      - Before a host device (PCI, USB, mdev) or an SR-IOV VF is assigned, check on this host that it exists,
        its IOMMU group is viable, it is not host-critical (the root disk's controller, the default-route
        NIC, the boot VGA, bridges), not used by another domain, and that a PF and its VFs are not both
        assigned. See C(docs/host_devices.md).
      - When libvirt runs on this machine (an O(uri) without a host name) the checks read sysfs under
        O(host_root). With a O(uri) that names a host (V(qemu+ssh://hv1/system), V(qemu+tls://hv1/system), even
        V(127.0.0.1)) they read the same facts from that host's libvirt node devices and run the same guards;
        the guards node devices cannot answer (the root disk's controller, the default-route NIC, the boot VGA,
        other mounts, /dev/vfio, reset method, interrupt remapping, ACS override) are named per device in
        RV(host_checks) and in a warning. See C(docs/deploying.md).
      - V(strict) refuses, over such a URI, every guest that would get a host device whose guards could not all
        be checked; V(true) assigns it with the warning. When libvirt gives no node devices the assignment is
        refused either way.
      - Set V(false) only to prepare definitions for another host.
      - A boolean or V(strict).
    type: raw
    default: true
  host_root:
    description: Directory under which the host checks read C(/sys), C(/proc) and C(/dev/vfio) (for tests).
    type: path
    default: /
  force:
    description:
      - Turn refusals of the guards that are safe to override (host-critical device, partial IOMMU group,
        use by another domain's persistent definition, ...) into warnings. Missing devices, malformed
        addresses, bridges and a device used by another running guest are always refused.
    type: bool
    default: false
seealso:
  - module: virtdev.libvirt.domain
'''

EXAMPLES = r'''
- name: Give a guest an emulated and a para-virtualized NIC, a virtio disk and an RNG
  virtdev.libvirt.domain_devices:
    uri: qemu:///system
    domain: web01
    config:
      - kind: interface
        source: {network: default}
        model: e1000
      - kind: interface
        source: {bridge: br0}
        model: virtio
      - kind: disk
        target: vdb
        source: {file: /var/lib/libvirt/images/web01-data.qcow2}
        format: qcow2
      - kind: rng
        backend: /dev/urandom

- name: Converge a whole host manifest in one task
  virtdev.libvirt.domain_devices:
    domains:
      - domain: web01
        config:
          - {kind: interface, source: {network: default}, model: virtio}
      - domain: db01
        config:
          - {kind: disk, target: vdb, source: {block: /dev/vg0/db01-data}}

- name: Any device libvirt knows, as raw XML
  virtdev.libvirt.domain_devices:
    domain: web01
    config:
      - kind: xml
        xml: "<watchdog model='i6300esb' action='reset'/>"

- name: Exactly these NICs, no others
  virtdev.libvirt.domain_devices:
    domain: web01
    state: overridden
    config:
      - {kind: interface, mac: "52:54:00:12:34:56", source: {network: default}, model: virtio}

- name: Pass a PCI device through (persistent definition)
  virtdev.libvirt.domain_devices:
    domain: gpu01
    config:
      - {kind: hostdev, type: pci, address: "0000:01:00.0", managed: true}

- name: Converge a host all or nothing (any guest that cannot be read or planned means nothing is written)
  virtdev.libvirt.domain_devices:
    on_error: stop
    domains:
      - domain: web01
        config:
          - {kind: rng, backend: /dev/urandom}
      - uuid: 3f0c1a52-6a47-4a2b-8f7e-3d1e4a2b9c11
        config:
          - {kind: rng, backend: /dev/urandom}

- name: Which guests still use emulated disks?
  virtdev.libvirt.domain_devices:
    domain: web01
    state: gathered
  register: devices

- name: Show them
  ansible.builtin.debug:
    msg: "{{ devices.gathered | selectattr('kind', 'eq', 'disk') | selectattr('class', 'eq', 'emulated') }}"
'''

RETURN = r'''
changed:
  description:
    - Whether any domain's devices changed (or would change, in check mode). After a failure, true only when
      something was written (or may have been, RV(outcome=unknown)).
  returned: always
  type: bool
outcome:
  description:
    - What really happened to the domain on this run (also in each entry of RV(results) for a manifest).
    - V(written) when this run changed it (RV(commands) lists what took effect), V(not_written) when it did not
      (check mode, nothing to do, or a failure before anything of it was written, including a definition libvirt
      refused or that was restored), V(unknown) when the connection to libvirt broke while a write call was in
      flight, so it may or may not have taken effect (RV(after) is then left out; run the task again).
  returned: with merged, replaced, overridden or deleted
  type: str
  sample: written
before:
  description: The devices before the run, in the option format, each with its C(class).
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: list
  elements: dict
after:
  description:
    - The devices after the run, predicted in check mode; on a real run read back from libvirt, so it also
      shows what libvirt added (controllers, addresses), also after a failure.
  returned: when something changed and what is there is known (O(domain) with merged, replaced, overridden or deleted)
  type: list
  elements: dict
commands:
  description:
    - What was (or would be, in check mode) done, one entry per device; on a real run only what took effect, with
      C(live) and C(config) saying where (a device the guest did not release has C(live=false)).
    - A removal from a running guest that needs O(allow_live_removal) has C(destructive=true).
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: list
  elements: dict
  sample: [{op: attach, kind: interface, key: "mac 52:54:00:16:37:36", live: false, config: true}]
implicit:
  description: Devices O(state=overridden) left in place because libvirt re-adds them.
  returned: when O(domain) is used with overridden
  type: list
  elements: dict
restart_required:
  description: Whether the running guest differs from its definition in ways only a restart fixes
    (RV(waiting_for_restart) is not empty).
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: bool
waiting_for_restart:
  description:
    - The devices the running guest has otherwise than its definition after this run, which its next boot brings
      in line; what happened, not what was planned. Changes QEMU cannot make live, hot-plugs QEMU refused, unplugs
      the guest did not answer (RV(pending_unplug)), removals withheld for O(allow_live_removal), and every change
      on a paused guest. Empty when the guest is off or was restarted.
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: list
  elements: str
  sample: ["video (singleton) 0", "sound model ich9"]
pending_unplug:
  description:
    - The devices the guest was asked to release and still held after O(detach_timeout); they are gone from
      the definition. The request stays with the guest (it may still release them); the next restart removes them.
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: list
  elements: str
  sample: ["interface mac 52:54:00:16:37:36"]
restarted:
  description:
    - Whether this run restarted the guest (would, in check mode), for O(restart=if_required) or to finish a
      restart an earlier run began (a guest that powered off after its shutdown request is started).
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: bool
shutdown_pending:
  description:
    - A shutdown this module requested has not completed; it is recorded in the domain's metadata, and the
      next run starts the guest if it is off by then.
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: bool
guest_state:
  description: The guest's state as the run leaves it (V(running), V(paused), V(shutoff), ...).
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: str
  sample: running
host_checks:
  description:
    - What the passthrough guards read (C(source), V(sysfs) or V(libvirt node devices)) and, over a URI that
      names a host, C(not_checked) - per host device, C(domain), C(device) (address, UUID or USB ids), C(where)
      (the entry of O(config)) and C(guards) (C(guard), C(what), C(why)), the guards libvirt's node devices cannot
      answer.
  returned: when a run assigned or changed a host device and O(host_checks) is not false
  type: dict
  sample: {source: libvirt node devices, not_checked: [{domain: web, device: "0000:01:00.0", where: "config[0]",
           guards: [{guard: host_critical, what: the default-route NIC, why: "node devices name ..."}]}]}
refusals:
  description: Why host devices were refused, one entry per guard that failed.
  returned: when the host checks refused an assignment
  type: list
  elements: str
libvirt_calls:
  description: libvirt API calls this run made, by name; a run without change makes no C(define).
  returned: with merged, replaced, overridden or deleted
  type: dict
  sample: {lookup: 1, xml: 1}
results:
  description:
    - Per domain, the keys above plus C(domain), when O(domains) is used; one entry per domain of O(domains), also
      when the task fails.
    - Domains that did not change have only C(domain), C(changed), C(outcome), C(commands), C(restart_required),
      C(waiting_for_restart), C(pending_unplug), C(restarted), C(shutdown_pending) and C(guest_state), so that a
      no-change run over a whole host stays small; use O(state=gathered) to read devices.
    - A domain that failed also has C(failed=true) and C(msg) (naming the domain, and the device and option when
      known); a domain that O(on_error=stop) left alone has C(msg) starting with C(not attempted).
  returned: when O(domains) is used
  type: list
  elements: dict
  sample:
    - {domain: web01, changed: true, outcome: written, commands: [{op: attach, kind: rng, key: virtio random,
       live: false, config: true}], restart_required: false, waiting_for_restart: [], restarted: false}
    - {domain: web02, changed: false, outcome: not_written, failed: true, commands: [], restart_required: false,
       waiting_for_restart: [], restarted: false, msg: "domain 'web02' is not defined on qemu:///system"}
gathered:
  description: The current devices in the option format.
  returned: when O(state=gathered)
  type: list
  elements: dict
rendered:
  description: Device XML elements that O(config) produces.
  returned: when O(state=rendered)
  type: list
  elements: str
parsed:
  description: The devices of O(running_config) in the option format.
  returned: when O(state=parsed)
  type: list
  elements: dict
'''

from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _device_engine, _guest_lock, _ids, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_apply import (
    APPLY_MODES, LIVE_REMOVAL_CLASSES, ApplyError, DomainRun, preflight,
)
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import device_argument_spec
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import ConnectionLost, LibvirtFailure
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import nodedev_source, source

WRITING_STATES = ('merged', 'replaced', 'overridden', 'deleted')
ON_ERROR = ('continue', 'stop')


def argument_spec():
    devices = device_argument_spec()
    spec = dict(_common.CONNECTION_ARGS)
    spec.update(
        domain={'type': 'str', 'aliases': ['name']},
        uuid={'type': 'str'},
        config={'type': 'list', 'elements': 'dict', 'options': devices},
        domains={'type': 'list', 'elements': 'dict', 'options': {
            'domain': {'type': 'str'},
            'uuid': {'type': 'str'},
            'config': {'type': 'list', 'elements': 'dict', 'options': devices},
        }},
        state={'type': 'str', 'default': 'merged', 'choices': list(_device_engine.STATES)},
        running_config={'type': 'str', 'no_log': True},  # domain XML: may carry console passwords
        apply={'type': 'str', 'default': 'auto', 'choices': list(APPLY_MODES)},
        restart={'type': 'str', 'default': 'never', 'choices': ['never', 'if_required']},
        restart_timeout={'type': 'int', 'default': 120},
        detach_timeout={'type': 'int', 'default': 30},
        detach_attempts={'type': 'int', 'default': 3},
        on_error={'type': 'str', 'default': 'continue', 'choices': list(ON_ERROR)},
        lock_timeout={'type': 'int', 'default': 300},
        allow_live_removal={'type': 'list', 'elements': 'str', 'default': [], 'choices': list(LIVE_REMOVAL_CLASSES)},
        host_checks={'type': 'raw', 'default': True},
        host_root={'type': 'path', 'default': '/'},
        force={'type': 'bool', 'default': False},
    )
    return spec


class Request:
    """One guest of the task: asked for by name or by UUID, with its validated devices."""

    def __init__(self, name, uuid, config, where):
        self.name = name
        self.uuid = uuid.lower() if uuid else None
        self.config = config or []
        self.where = where
        # validated now, before anything is read; a guest asked for by UUID is declared again under its
        # real name once it is found (MACs derived from the name)
        self.declared = _device_engine.declare(self.config, name or self.uuid, where)

    def redeclare(self, name):
        return _device_engine.declare(self.config, name, self.where)


class DomainDevices:
    """Runs one state over the requested domains on one connection."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.connection = None
        self.host_checks = None  # what the passthrough guards read and what they could not check

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, **extra)

    def requests(self):
        """The guests of the task; every spec is validated before anything is read."""
        if self.params['domains'] is not None:
            raw = [(entry['domain'], entry['uuid'], entry['config'], 'domains[%d]' % index)
                   for index, entry in enumerate(self.params['domains'])]
        else:
            raw = [(self.params['domain'], self.params['uuid'], self.params['config'], None)]
        for name, uuid, _config, where in raw:
            prefix = where + '.' if where else ''
            if where and (name is None) == (uuid is None):
                self.fail('%s: give domain (a name) or uuid, %s' % (where, 'not both' if name else 'one of them'))
            if uuid is not None and not _ids.is_uuid(uuid):
                self.fail('%suuid: %r is not a UUID' % (prefix, uuid))
        for position, label in ((0, 'domain'), (1, 'uuid')):
            values = [str(item[position]).lower() if position else item[position] for item in raw
                      if item[position] is not None]
            duplicates = sorted({value for value in values if values.count(value) > 1})
            if duplicates:
                self.fail('domains: %s %s is listed more than once' % (label, ', '.join(repr(v) for v in duplicates)))
        try:
            return [Request(name, uuid, config, (where + '.config') if where else 'config')
                    for name, uuid, config, where in raw]
        except SpecError as exc:
            self.fail(str(exc))

    # -- states without a connection --------------------------------------------------------------
    def rendered(self):
        request, = self.requests()
        self.module.exit_json(changed=False, rendered=_device_engine.render(request.declared))

    def parsed(self):
        try:
            self.module.exit_json(changed=False, parsed=_device_engine.gather(self.params['running_config']))
        except _xml.XMLInputError as exc:
            self.fail('running_config: %s' % exc)

    # -- states with a connection -----------------------------------------------------------------
    def gathered(self):
        self.connection = _common.connect(self.module)
        try:
            if self.params['uuid']:
                dom = self.connection.lookup_uuid(self.params['uuid'])
            else:
                dom = self.connection.lookup(self.params['domain'])
            self.module.exit_json(changed=False, gathered=_device_engine.gather(self.connection.xml(dom)))
        except LibvirtFailure as exc:
            self.fail(str(exc))

    def converge(self):
        requests = self.requests()
        self.connection = _common.connect(self.module)
        params = self.params
        runs = [DomainRun(self.connection, request.name, request.declared, params['state'], params['apply'],
                          self.module.check_mode, params['detach_timeout'], params['detach_attempts'],
                          uuid=request.uuid, redeclare=request.redeclare,
                          allow_live_removal=params['allow_live_removal'])
                for request in requests]
        # read and plan every domain first: with on_error=stop a bad one fails the task before any write
        for run in runs:
            if self.connection.lost:
                run.fail('not read: the connection to libvirt was lost')
                continue
            try:
                run.prepare()
            except (SpecError, LibvirtFailure, ApplyError) as exc:
                run.fail(exc)
        refusals = self.check_host([run for run in runs if run.error is None])
        halted = self.halted_before_writing(runs)
        lock_dir = _guest_lock.lock_dir(params['uri'])
        compact = params['domains'] is not None
        results, diffs = [], []
        for run in runs:
            if run.error is None and halted is None:
                halted = self.write(run, lock_dir)
            elif run.error is None:
                run.skipped = halted
            # settle each domain as it is done: a host of hundreds of guests is not held in memory twice
            results.append(run.result(compact=compact))
            diffs.append(run.diff() if self.module._diff else None)
            run.release()
        self.finish(runs, results, [diff for diff in diffs if diff], refusals)

    def halted_before_writing(self, runs):
        """With on_error=stop any failure while reading and planning means nothing is written."""
        failed = [run.name for run in runs if run.error is not None]
        if self.connection.lost:
            return 'the connection to libvirt was lost'
        if failed and self.params['on_error'] == 'stop':
            return 'on_error=stop and %s %s failed before anything was written' % (
                'domain' if len(failed) == 1 else 'domains', _names(failed))
        return None

    def write(self, run, lock_dir):
        """Apply one guest under its lock; return why the guests after it must not be attempted, if so."""
        try:
            with run.locked(lock_dir, self.params['lock_timeout']):
                try:
                    run.apply()
                    # under the lock too: a restart writes its record into the definition's metadata
                    run.restart(self.params['restart'] == 'if_required', self.params['restart_timeout'])
                except (LibvirtFailure, ApplyError) as exc:
                    raise ApplyError(self.start_if_ours(run, exc)) from exc
        except (LibvirtFailure, ApplyError, _guest_lock.LockError) as exc:
            run.fail(exc)
            if self.connection.lost:
                return 'the connection to libvirt was lost while domain %s was written' % run.name
            if self.params['on_error'] == 'stop':
                return 'on_error=stop and domain %s failed' % run.name
        finally:
            for warning in run.plan_warnings + run.warnings:
                self.module.warn(warning)
        return None

    def start_if_ours(self, run, exc):
        """A guest that is off because of this module's shutdown request is never left off, even when its run
        failed; returns the failure's message (with the start's failure, if that failed too)."""
        if isinstance(exc, ConnectionLost):
            raise exc
        try:
            run.start_if_ours()
        except (LibvirtFailure, ApplyError) as start_failure:
            return '%s; %s' % (exc, start_failure)
        return str(exc)

    def check_host(self, runs):
        """Passthrough guards for every host device the runs would assign (before any write): refused guests
        fail (with on_error=stop, nothing is written then). Returns the refusals.

        The host is read from sysfs when libvirt runs on this machine, else from libvirt's node devices, and
        the guards those cannot answer are named per device (refused with host_checks=strict)."""
        mode = host_checks_mode(self.params['host_checks'])
        if mode == 'off' or not runs:
            return []
        root, uri = self.params['host_root'], self.params['uri']
        remote = source.reads_node_devices(root, uri)
        host_source = nodedev_source.NodeDeviceSource(self.connection) if remote else None
        errors, warnings = preflight(self.connection, runs, root, self.params['force'], host_source=host_source)
        if any(run.host_requests for run in runs):
            self.host_checks = {'source': nodedev_source.SOURCE if remote else 'sysfs', 'not_checked': []}
            if remote:
                errors += self.not_checked_remotely(runs, uri, strict=mode == 'strict')
        for warning in warnings:
            self.module.warn(warning)
        for run in runs:
            if run.refusals:
                run.fail('refused to assign host devices, nothing of it was written: %s' % '; '.join(run.refusals))
        return errors

    def not_checked_remotely(self, runs, uri, strict):
        """Name, per device, the guards libvirt's node devices cannot answer; with ``strict`` they refuse the run.
        Returns the new refusals."""
        errors = []
        for run in runs:
            devices = []
            for request in run.host_requests:
                rows = nodedev_source.not_checked(request['type'])
                device = request.get('address') or request.get('uuid') or (
                    '%s:%s' % (request['vendor'], request['product']) if request.get('vendor')
                    else 'usb bus %s device %s' % (request.get('bus'), request.get('device')))
                self.host_checks['not_checked'].append({'domain': run.name, 'device': device,
                                                        'where': request.get('where'), 'guards': rows})
                devices.append('%s (%s)' % (request.get('where'), device))
            if not devices:
                continue
            rows = [row for request in run.host_requests for row in nodedev_source.not_checked(request['type'])]
            what = '; '.join(_unique('%s: %s' % (row['guard'], row['what']) for row in rows))
            message = ('over %s the guards run on libvirt\'s node devices, which cannot answer these for %s: %s'
                       % (_host_of(uri), ', '.join(devices), what))
            if strict:
                run.refusals.append('host_checks=strict and %s [guard not checked]' % message)
                errors.append('domain %s: %s' % (run.name, run.refusals[-1]))
            else:
                self.module.warn('domain %s: not checked: %s (host_checks: strict refuses instead)' % (run.name,
                                                                                                       message))
        return errors

    def finish(self, runs, results, diffs, refusals):
        outcome = {'changed': any(result['changed'] for result in results),
                   'libvirt_calls': dict(self.connection.calls)}
        if self.params['domains'] is not None:
            outcome['results'] = results
        else:
            outcome.update(results[0])
            for key in ('domain', 'msg', 'failed'):
                outcome.pop(key, None)
        if refusals:
            outcome['refusals'] = refusals
        if self.host_checks is not None:
            outcome['host_checks'] = self.host_checks
        if diffs:
            outcome['diff'] = diffs if len(diffs) > 1 else diffs[0]
        failed = [run for run in runs if run.error is not None]
        if refusals and (self.params['on_error'] == 'stop' or self.params['domains'] is None):
            self.fail('refused to assign host devices, nothing was changed: %s' % '; '.join(refusals), **outcome)
        if failed:
            self.fail(self.failure_message(runs, failed, results), **outcome)
        self.module.exit_json(**outcome)

    def failure_message(self, runs, failed, results):
        if self.params['domains'] is None:
            return failed[0].error
        written = [result['domain'] for result in results if result['outcome'] == 'written']
        unknown = [result['domain'] for result in results if result['outcome'] == 'unknown']
        skipped = [run.name for run in runs if run.skipped]
        parts = ['%d of %d domains failed: %s' % (len(failed), len(runs), '; '.join(run.error for run in failed))]
        parts.append('written: %s' % (_names(written) if written else 'none'))
        if unknown:
            parts.append('unknown whether written (the connection was lost mid-call): %s' % _names(unknown))
        if skipped:
            parts.append('not attempted: %s' % _names(skipped))
        return '. '.join(parts)


def _names(names, shown=20):
    """'a, b, c' (and how many more)."""
    text = ', '.join(names[:shown])
    return text + (' and %d more' % (len(names) - shown) if len(names) > shown else '')


def _unique(items):
    """The items in their order, each once."""
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _host_of(uri):
    """'qemu+ssh://hv1/system' for a URI, without its user, port and query (key files, sockets)."""
    parts = urlsplit(uri)
    return '%s://%s%s' % (parts.scheme, parts.hostname or '', parts.path)


def host_checks_mode(value):
    """'on', 'off' or 'strict' from O(host_checks) (a boolean or V(strict)); validated in main()."""
    if isinstance(value, str) and value.strip().lower() == 'strict':
        return 'strict'
    return 'on' if boolean(value, strict=True) else 'off'


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[('domain', 'domains'), ('config', 'domains'), ('uuid', 'domains'), ('domain', 'uuid')],
        required_if=[('state', 'gathered', ('domain', 'uuid'), True), ('state', 'parsed', ('running_config',))],
        supports_check_mode=True,
    )
    _common.mask_secrets(module)
    _common.check_strings(module)  # NUL, control characters, lone surrogates: refused naming the option
    _common.require_libraries(module, need_libvirt=module.params['state'] not in ('rendered', 'parsed'))
    runner = DomainDevices(module)
    state = module.params['state']
    if state in WRITING_STATES and not (module.params['domain'] or module.params['uuid']) \
            and module.params['domains'] is None:
        module.fail_json(msg='domain: state=%s needs domain (or uuid, or domains)' % state)
    try:
        host_checks_mode(module.params['host_checks'])
    except TypeError:
        module.fail_json(msg='host_checks: %r is not one of true, false, strict' % (module.params['host_checks'],))
    for option, low, high in (('restart_timeout', 0, 86400), ('detach_timeout', 1, 3600), ('detach_attempts', 1, 100),
                              ('lock_timeout', 0, 86400)):
        if not low <= module.params[option] <= high:
            module.fail_json(msg='%s: %r is out of range (%d..%d)' % (option, module.params[option], low, high))
    if state in WRITING_STATES:
        runner.converge()
    else:
        getattr(runner, state)()


if __name__ == '__main__':
    main()
