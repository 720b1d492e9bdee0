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
    source and its position, or matches an existing NIC that agrees on every declared option, so re-runs never add
    NICs. A device found this way (without its identity, as a NIC without MAC or a controller without index) is never
    changed. When no existing device agrees on every declared option, the declared one is added.
author:
  - virtdev.libvirt maintainers (@virtdev)
extends_documentation_fragment:
  - virtdev.libvirt.connection
  - virtdev.libvirt.device_config
  - virtdev.libvirt.device_mappings
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
      - V(overridden) is V(replaced) plus removal of every other device, of every kind; the guest's devices
        become exactly O(config) (a kind left out of O(config) is removed). Devices libvirt adds or owns by
        itself (the first controller of each type, PCI root ports and bridges, PS/2 inputs, the serial
        console, memballoon, audio backends, the video adapter of a guest with graphics) are left in place
        and reported in RV(implicit). O(overridden_kinds) narrows the removal to named kinds.
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
  overridden_kinds:
    description:
      - With O(state=overridden), remove unlisted devices only of these kinds (device element names such as
        V(interface), V(disk), V(rng); an O(config[].kind=xml) entry counts as its element). Devices of other
        kinds are left alone, as O(state=replaced) would.
      - Default (not set) is every kind. To keep the behaviour of earlier releases (only the kinds present in
        O(config)), list those kinds.
    type: list
    elements: str
  gather_implicit:
    description:
      - With O(state=gathered) or O(state=parsed), V(false) leaves out the devices libvirt adds or owns by itself
        (those O(state=overridden) leaves in place and reports in RV(implicit), such as the first controller of
        each type, PCI root ports and bridges, PS/2 inputs, the serial console, memballoon, audio backends), for
        a shorter list to review. Such a list fed back to O(state=overridden) keeps them too.
    type: bool
    default: true
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
  result_detail:
    description:
      - How much a manifest (O(domains)) returns about the domains that did not change.
      - V(compact) (the default) keeps a no-change run over a whole host small, so its result grows with what
        changed rather than with the manifest. The entry of an unchanged domain in RV(results) has only C(domain),
        C(changed), C(outcome) and those of the other keys that are not empty or false (a guest still waiting
        for a restart keeps C(restart_required) and C(waiting_for_restart)); changed and failed domains are
        reported in full except their whole device lists C(before) and C(after), which they have only with
        C(--diff) (the diff shows the devices anyway; C(commands) says what changed) - a failed domain always has
        C(after), what it was left with.
        C(invocation.module_args.domains) shows how many domains and devices were given instead of echoing the
        manifest.
      - V(full) returns every key for every domain (C(before) and C(implicit) too) and echoes the manifest in
        C(invocation.module_args).
      - A single domain (O(domain) or O(uuid)) is always reported in full.
    type: str
    choices: [compact, full]
    default: compact
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
      - The source of a disk, cdrom or floppy the run adds or repoints (O(config[].source.file) or
        O(config[].source.block), raw XML alike) must exist on the host, or the guest is refused before anything is
        written (guard C(source_exists)); libvirt itself accepts the definition and fails only when the guest
        starts. With a O(uri) without a host name it is looked up on this machine; with one that names a host,
        through that libvirt's storage pools (a volume, or a file missing from an active pool's directory after a
        refresh of that pool); a path in no pool cannot be told from here and is named in
        C(not_checked) of RV(host_checks) (refused with V(strict)). A source the guest already has is not judged again.
      - Set V(false) only to prepare definitions for another host, or for disk images created later.
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

- name: Exactly these NICs, no others (devices of other kinds are left alone)
  virtdev.libvirt.domain_devices:
    domain: web01
    state: overridden
    overridden_kinds: [interface]
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
  returned: when O(domain) is used with merged, replaced, overridden or deleted; in RV(results) of a changed domain
    only with O(result_detail=full) or C(--diff)
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
      answer; also the disk sources in no storage pool of that host (C(device) the path, C(where)
      V(config[0].source.file), guard C(source_exists); C(source) is V(libvirt storage pools) when no host device
      was judged).
  returned: when a run assigned or changed a host device, or a disk source could not be checked, and
    O(host_checks) is not false
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
    - Domains that did not change have only C(domain), C(changed), C(outcome) and the other keys whose value is
      not empty or false (O(result_detail=compact)), so that a no-change run over a whole host stays small; with
      O(result_detail=full) they have every key above except C(after). Use O(state=gathered) to read devices.
    - Domains that changed have C(before) and C(after) only with O(result_detail=full) or C(--diff); a domain
      that failed after something was written has C(after) always.
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
    - {domain: web03, changed: false, outcome: not_written}
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

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _device_engine, _device_runner
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_apply import APPLY_MODES, LIVE_REMOVAL_CLASSES
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import mappings as host_mappings


def argument_spec():
    spec = dict(_common.CONNECTION_ARGS)
    spec.update(
        domain={'type': 'str', 'aliases': ['name']},
        uuid={'type': 'str'},
        config={'type': 'list', 'elements': 'dict', 'options': _device_runner.DEVICE_OPTIONS},
        # devices of a manifest: validated once, by the kind table (see _device_runner.MANIFEST_SPEC)
        domains={'type': 'list', 'elements': 'dict', 'options': _device_runner.MANIFEST_SPEC},
        result_detail={'type': 'str', 'default': 'compact', 'choices': list(_device_runner.RESULT_DETAIL)},
        state={'type': 'str', 'default': 'merged', 'choices': list(_device_engine.STATES)},
        overridden_kinds={'type': 'list', 'elements': 'str'},
        gather_implicit={'type': 'bool', 'default': True},
        running_config={'type': 'str', 'no_log': True},  # domain XML: may carry console passwords
        apply={'type': 'str', 'default': 'auto', 'choices': list(APPLY_MODES)},
        restart={'type': 'str', 'default': 'never', 'choices': ['never', 'if_required']},
        restart_timeout={'type': 'int', 'default': 120},
        detach_timeout={'type': 'int', 'default': 30},
        detach_attempts={'type': 'int', 'default': 3},
        on_error={'type': 'str', 'default': 'continue', 'choices': list(_device_runner.ON_ERROR)},
        lock_timeout={'type': 'int', 'default': 300},
        allow_live_removal={'type': 'list', 'elements': 'str', 'default': [], 'choices': list(LIVE_REMOVAL_CLASSES)},
        host_checks={'type': 'raw', 'default': True},
        host_root={'type': 'path', 'default': '/'},
        force={'type': 'bool', 'default': False},
    )
    spec.update(host_mappings.argument_spec())
    return spec


def main():
    module = _device_runner.Module(
        argument_spec=argument_spec(),
        mutually_exclusive=[('domain', 'domains'), ('config', 'domains'), ('uuid', 'domains'), ('domain', 'uuid')],
        required_if=[('state', 'gathered', ('domain', 'uuid'), True), ('state', 'parsed', ('running_config',))],
        supports_check_mode=True,
    )
    _device_runner.run(module)


if __name__ == '__main__':
    main()
