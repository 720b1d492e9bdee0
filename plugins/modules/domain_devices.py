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
  - On a running guest, changes that QEMU can take live are hot-plugged too (O(apply)); the others are
    reported as waiting for a restart, which O(restart=if_required) can perform.
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
      - Name or UUID of the domain. Required unless O(domains) is used or O(state=rendered) or
        O(state=parsed).
    type: str
    aliases: [name]
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
      - V(gathered) returns the current devices in the option format (no change).
      - V(rendered) returns the device XML O(config) would produce, without a connection.
      - V(parsed) turns O(running_config) domain XML into the option format, without a connection.
    type: str
    choices: [merged, replaced, overridden, deleted, gathered, rendered, parsed]
    default: merged
  running_config:
    description:
      - Domain XML text for O(state=parsed).
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
      - V(both) changes both and fails, before writing anything, when a change cannot be made live or the
        guest is not running.
      - Live and persistent definitions are planned against the same declaration, so a device hot-plugged
        by V(auto) gets the same MAC and PCI address in both.
    type: str
    choices: [auto, config, live, both]
    default: auto
  restart:
    description:
      - V(if_required) shuts a running guest down gracefully (waiting O(restart_timeout) seconds, never
        forcing it off) and starts it again when changes wait for a restart. V(never) only reports
        RV(restart_required).
    type: str
    choices: [never, if_required]
    default: never
  restart_timeout:
    description: Seconds to wait for the graceful shutdown of O(restart=if_required).
    type: int
    default: 120
  detach_timeout:
    description:
      - Seconds to wait, per attempt, for the guest to release a hot-unplugged device (libvirt's
        device-removed event). A device the guest does not release is an error, never a success.
    type: int
    default: 20
  detach_attempts:
    description: How many times to ask the guest to release a device before giving up.
    type: int
    default: 3
  host_checks:
    description:
      - Before a host device (PCI, USB, mdev) or an SR-IOV VF is assigned, check on this host that it exists,
        its IOMMU group is viable, it is not host-critical (the root disk's controller, the default-route
        NIC, the boot VGA, bridges), not used by another domain, and that a PF and its VFs are not both
        assigned. See C(docs/host_devices.md).
      - The checks read sysfs under O(host_root); with a remote O(uri) and the real root they are skipped with
        a warning, since this machine's sysfs says nothing about that host.
      - Set V(false) only to prepare definitions for another host.
    type: bool
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
  description: Whether any domain's devices changed (or would change, in check mode).
  returned: always
  type: bool
before:
  description: The devices before the run, in the option format, each with its C(class).
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: list
  elements: dict
after:
  description:
    - The devices after the run, predicted in check mode; on a real run read back from libvirt, so it also
      shows what libvirt added (controllers, addresses).
  returned: when something changed (O(domain) with merged, replaced, overridden or deleted)
  type: list
  elements: dict
commands:
  description:
    - What was (or would be) done, one entry per device.
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
  description: Whether the running guest differs from the declaration in ways only a restart fixes.
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: bool
waiting_for_restart:
  description: The devices that differ on the running guest and wait for its next boot.
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: list
  elements: str
  sample: ["video (singleton) 0", "sound model ich9"]
restarted:
  description: Whether O(restart=if_required) restarted the guest (would restart, in check mode).
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: bool
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
    - Per domain, the keys above plus C(domain), when O(domains) is used.
    - Domains that did not change have only C(domain), C(changed), C(commands), C(restart_required),
      C(waiting_for_restart) and C(restarted), so that a no-change run over a whole host stays small; use
      O(state=gathered) to read devices.
  returned: when O(domains) is used
  type: list
  elements: dict
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

import os
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _device_engine, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_apply import (
    APPLY_MODES, LIVE_REMOVAL_CLASSES, ApplyError, DomainRun, preflight,
)
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import device_argument_spec
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import LibvirtFailure

WRITING_STATES = ('merged', 'replaced', 'overridden', 'deleted')


def argument_spec():
    devices = device_argument_spec()
    spec = dict(_common.CONNECTION_ARGS)
    spec.update(
        domain={'type': 'str', 'aliases': ['name']},
        config={'type': 'list', 'elements': 'dict', 'options': devices},
        domains={'type': 'list', 'elements': 'dict', 'options': {
            'domain': {'type': 'str', 'required': True},
            'config': {'type': 'list', 'elements': 'dict', 'options': devices},
        }},
        state={'type': 'str', 'default': 'merged', 'choices': list(_device_engine.STATES)},
        running_config={'type': 'str'},
        apply={'type': 'str', 'default': 'auto', 'choices': list(APPLY_MODES)},
        restart={'type': 'str', 'default': 'never', 'choices': ['never', 'if_required']},
        restart_timeout={'type': 'int', 'default': 120},
        detach_timeout={'type': 'int', 'default': 30},
        detach_attempts={'type': 'int', 'default': 3},
        allow_live_removal={'type': 'list', 'elements': 'str', 'default': [], 'choices': list(LIVE_REMOVAL_CLASSES)},
        host_checks={'type': 'bool', 'default': True},
        host_root={'type': 'path', 'default': '/'},
        force={'type': 'bool', 'default': False},
    )
    return spec


class DomainDevices:
    """Runs one state over the requested domains on one connection."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.connection = None

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, **extra)

    def requests(self):
        """(domain, declared devices) pairs; every spec is validated before anything is read."""
        if self.params['domains'] is not None:
            raw = [(entry['domain'], entry['config'], 'domains[%d].config' % index)
                   for index, entry in enumerate(self.params['domains'])]
            names = [name for name, _config, _where in raw]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                self.fail('domains: domain %s is listed more than once' % ', '.join(repr(n) for n in duplicates))
        else:
            raw = [(self.params['domain'], self.params['config'], 'config')]
        try:
            return [(name, _device_engine.declare(config or [], name, where)) for name, config, where in raw]
        except SpecError as exc:
            self.fail(str(exc))

    # -- states without a connection --------------------------------------------------------------
    def rendered(self):
        (_name, declared), = self.requests()
        self.module.exit_json(changed=False, rendered=_device_engine.render(declared))

    def parsed(self):
        try:
            self.module.exit_json(changed=False, parsed=_device_engine.gather(self.params['running_config']))
        except _xml.XMLInputError as exc:
            self.fail('running_config: %s' % exc)

    # -- states with a connection -----------------------------------------------------------------
    def gathered(self):
        self.connection = _common.connect(self.module)
        try:
            dom = self.connection.lookup(self.params['domain'])
            self.module.exit_json(changed=False, gathered=_device_engine.gather(self.connection.xml(dom)))
        except LibvirtFailure as exc:
            self.fail(str(exc))

    def converge(self):
        requests = self.requests()
        self.connection = _common.connect(self.module)
        params = self.params
        runs, results, diffs = [], [], []
        try:
            # read and plan every domain first: a bad one fails the task before any write
            for name, declared in requests:
                try:
                    runs.append(DomainRun(self.connection, name, declared, params['state'], params['apply'],
                                          self.module.check_mode, params['detach_timeout'],
                                          params['detach_attempts'], params['allow_live_removal']).prepare())
                except SpecError as exc:
                    self.fail('%s (domain %s)' % (exc, name))
            self.check_host(runs)
            compact = params['domains'] is not None
            for run in runs:
                try:
                    run.apply()
                    run.restart(params['restart'] == 'if_required', params['restart_timeout'])
                finally:
                    for warning in run.warnings:
                        self.module.warn(warning)
                    run.warnings = []
                # settle each domain as it is done: a host of hundreds of guests is not held in memory twice
                results.append(run.result(compact=compact))
                diffs.append(run.diff() if self.module._diff else None)
                run.release()
        except (LibvirtFailure, ApplyError) as exc:
            # what was done before the failure is reported as a change: the next run starts from there
            unfinished = runs[len(results):]
            if unfinished:
                try:  # a guest that is off because of our shutdown request is never left off
                    unfinished[0].start_if_ours()
                except (LibvirtFailure, ApplyError) as start_failure:
                    exc = '%s; %s' % (exc, start_failure)
            results += [run.result() for run in unfinished]
            extra = {'results': results}
            if params['domains'] is None and results:  # one domain: its keys at the top, as on success
                extra = dict(results[0])
                extra.pop('domain')
            extra['changed'] = any(run.written for run in runs)
            self.fail(str(exc), **extra)
        self.finish(results, [diff for diff in diffs if diff])

    def check_host(self, runs):
        """Passthrough guards for every host device the runs would assign (before any write)."""
        if not self.params['host_checks']:
            return
        root = self.params['host_root']
        if not same_host(root, self.params['uri']):
            self.module.warn('host checks skipped: %s is not the machine this module runs on (its sysfs under %s '
                             'says nothing about that host)' % (self.params['uri'], root))
            return
        errors, warnings = preflight(self.connection, runs, root, self.params['force'])
        for warning in warnings:
            self.module.warn(warning)
        if errors:
            self.fail('refused to assign host devices, nothing was changed: %s' % '; '.join(errors),
                      refusals=errors)

    def finish(self, results, diffs):
        outcome = {'changed': any(result['changed'] for result in results),
                   'libvirt_calls': dict(self.connection.calls)}
        if self.params['domains'] is not None:
            outcome['results'] = results
        else:
            outcome.update(results[0])
            outcome.pop('domain')
        if diffs:
            outcome['diff'] = diffs if len(diffs) > 1 else diffs[0]
        self.module.exit_json(**outcome)


def same_host(root, uri):
    """sysfs under ``root`` describes the libvirt host only for a local URI on the real root."""
    return os.path.realpath(root) != '/' or not urlsplit(uri).hostname


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[('domain', 'domains'), ('config', 'domains')],
        required_if=[('state', 'gathered', ('domain',)), ('state', 'parsed', ('running_config',))],
        supports_check_mode=True,
    )
    _common.require_libraries(module, need_libvirt=module.params['state'] not in ('rendered', 'parsed'))
    runner = DomainDevices(module)
    state = module.params['state']
    if state in WRITING_STATES and not module.params['domain'] and module.params['domains'] is None:
        module.fail_json(msg='domain: state=%s needs domain (or domains)' % state)
    for option, low, high in (('restart_timeout', 0, 86400), ('detach_timeout', 1, 3600), ('detach_attempts', 1, 100)):
        if not low <= module.params[option] <= high:
            module.fail_json(msg='%s: %r is out of range (%d..%d)' % (option, module.params[option], low, high))
    if state in WRITING_STATES:
        runner.converge()
    else:
        getattr(runner, state)()


if __name__ == '__main__':
    main()
