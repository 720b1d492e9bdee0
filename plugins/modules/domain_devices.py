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
notes:
  - Live changes to running guests (hotplug) are not made yet; changes reach a running guest at its next
    boot.
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
  description: The devices before the run, in the option format (with RV(before[].class)).
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: list
  elements: dict
after:
  description: The devices after the run, predicted in check mode.
  returned: when O(domain) is used with merged, replaced, overridden or deleted
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
  description: Whether a running guest only sees the change after a restart.
  returned: when O(domain) is used with merged, replaced, overridden or deleted
  type: bool
libvirt_calls:
  description: libvirt API calls this run made, by name; a run without change makes no C(define).
  returned: with merged, replaced, overridden or deleted
  type: dict
  sample: {lookup: 1, xml: 1}
results:
  description: Per domain, the keys above plus C(domain), when O(domains) is used.
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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _device_engine, _xml
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
        if not self.params['running_config']:
            self.fail('running_config: state=parsed needs the domain XML text in running_config')
        try:
            self.module.exit_json(changed=False, parsed=_device_engine.gather(self.params['running_config']))
        except _xml.XMLInputError as exc:
            self.fail('running_config: %s' % exc)

    # -- states with a connection -----------------------------------------------------------------
    def gathered(self):
        self.connection = _common.connect(self.module, readonly=False)
        try:
            dom = self.connection.lookup(self.params['domain'])
            self.module.exit_json(changed=False, gathered=_device_engine.gather(self.connection.xml(dom)))
        except LibvirtFailure as exc:
            self.fail(str(exc))

    def converge(self):
        requests = self.requests()
        self.connection = _common.connect(self.module)
        state = self.params['state']
        results, diffs = [], []
        try:
            # read and plan everything first: a bad domain fails the task before any write
            planned = []
            for name, declared in requests:
                dom = self.connection.lookup(name)
                try:
                    planned.append((name, dom, _device_engine.plan(self.connection.xml(dom), declared, state)))
                except SpecError as exc:
                    self.fail('%s (domain %s)' % (exc, name))
            for name, dom, plan in planned:
                if plan.changed and not self.module.check_mode:
                    self.write(name, dom, plan)
                results.append(self.result(name, plan, dom))
                if plan.changed and self.module._diff:
                    diffs.append({'before_header': '%s devices' % name, 'after_header': '%s devices' % name,
                                  'before': plan.before_text + '\n', 'after': plan.after_text + '\n'})
        except LibvirtFailure as exc:
            self.fail(str(exc), results=results)
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

    def write(self, name, dom, plan):
        original = self.connection.xml(dom)
        if self.connection.find(dom.UUIDString()) is None:
            self.fail('domain %s disappeared while the task ran; nothing was written' % name)
        self.connection.define(plan.new_xml)
        readback = self.connection.xml(dom)
        problems = _device_engine.verify(plan, readback)
        # report what libvirt really kept (it adds controllers and addresses the prediction cannot know)
        plan.after = _device_engine.gather(readback)
        if problems:
            # leave the domain as we found it rather than half-applied
            self.connection.define(original)
            self.fail('libvirt did not keep the requested devices of %s, the definition was restored: %s'
                      % (name, '; '.join(problems)))

    def result(self, name, plan, dom):
        running = plan.changed and self.connection.is_active(dom)
        return {'domain': name, 'changed': plan.changed, 'before': plan.before, 'after': plan.after,
                'commands': plan.commands, 'implicit': plan.implicit, 'restart_required': running}


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
    if state in WRITING_STATES:
        runner.converge()
    else:
        getattr(runner, state)()


if __name__ == '__main__':
    main()
