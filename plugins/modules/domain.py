#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: domain
short_description: Ensure a libvirt guest is defined, running or stopped, from a few base settings
version_added: 0.1.0
description:
  - Defines a libvirt domain from base settings (memory, vCPUs, machine type, firmware) if it is
    absent, updates memory and vCPUs of an existing one, and starts, stops or undefines it.
  - Devices are not this module's job; use M(virtdev.libvirt.domain_devices) for them.
  - Everything else in an existing definition is kept as it is.
author:
  - virtdev.libvirt maintainers (@virtdev)
extends_documentation_fragment:
  - virtdev.libvirt.connection
attributes:
  check_mode:
    support: full
    description: Reports what would change and makes no write call.
  diff_mode:
    support: full
    description: Shows the managed settings before and after.
options:
  name:
    description: Name of the domain. It is always taken as a name, never as a UUID.
    type: str
    required: true
  uuid:
    description:
      - UUID for a new domain (libvirt generates one when omitted). An existing domain's UUID is never changed.
      - With an existing domain, the domain named O(name) must have this UUID, else the task fails and changes
        nothing; so O(state=absent) with O(uuid) removes only that very guest.
    type: str
  memory:
    description: Memory in MiB. Default V(1024) for a new domain; an existing domain keeps its value when omitted.
    type: int
  vcpus:
    description: Number of virtual CPUs. Default V(1) for a new domain.
    type: int
  machine:
    description:
      - Machine type, for example V(pc) or V(q35) (aliases are resolved through the host capabilities).
      - Only used when the domain is created; a different value on an existing domain is an error.
    type: str
  firmware:
    description: V(bios) or V(efi) (UEFI, needs OVMF on the host). Only used when the domain is created.
    type: str
    choices: [bios, efi]
  type:
    description: Domain type. V(qemu) runs under TCG emulation, V(kvm) needs hardware virtualization.
    type: str
    choices: [kvm, qemu]
    default: kvm
  arch:
    description: Guest architecture.
    type: str
    default: x86_64
  pcie_root_ports:
    description:
      - For a new q35 guest, how many B(free) C(pcie-root-port) controllers it gets, so PCIe devices can be
        hot-plugged later (each needs an empty port). libvirt gives the guest's own devices ports first; this
        counts what is left for hot-plug right after creation.
      - Devices added to the definition later take free ports too. An existing domain is not topped up (that
        would change it on every run that follows a device change); declare extra ports with
        M(virtdev.libvirt.domain_devices) (O(virtdev.libvirt.domain_devices#module:config[].kind=controller),
        O(virtdev.libvirt.domain_devices#module:config[].model=pcie-root-port) and an index) to keep a fixed
        layout.
    type: int
    default: 0
  state:
    description:
      - V(present) defines the domain; V(running) also starts it; V(shutoff) also stops it (graceful
        shutdown, then forced off after O(shutdown_timeout)); V(absent) stops and undefines it (disk
        images are kept).
    type: str
    choices: [present, absent, running, shutoff]
    default: present
  shutdown_timeout:
    description: Seconds to wait for a graceful shutdown before forcing the guest off.
    type: int
    default: 120
'''

EXAMPLES = r'''
- name: A small UEFI q35 guest with room for four hot-plugged PCIe devices
  virtdev.libvirt.domain:
    name: web01
    memory: 2048
    vcpus: 2
    machine: q35
    firmware: efi
    pcie_root_ports: 4

- name: Start it
  virtdev.libvirt.domain:
    name: web01
    state: running

- name: Remove a guest (its disk images stay)
  virtdev.libvirt.domain:
    name: old01
    state: absent
'''

RETURN = r'''
domain:
  description: The domain's settings after the run (predicted in check mode).
  returned: when the domain exists after the run
  type: dict
  sample: {name: web01, uuid: 3f0c..., memory_mib: 2048, vcpus: 2, machine: pc-q35-7.2, firmware: efi, active: false}
restart_required:
  description: Whether a running guest sees the change only after its next boot.
  returned: always
  type: bool
commands:
  description: What was (or would be) done, in order.
  returned: always
  type: list
  elements: str
  sample: [define, start]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _domain_spec
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import UUID_RE, LibvirtFailure


class DomainRunner:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.connection = _common.connect(module)
        self.commands = []
        self.was_active = False
        self.before = None
        self.after = None

    def do(self, command, func, *args):
        """Record a command and run it unless in check mode."""
        self.commands.append(command)
        if not self.module.check_mode:
            return func(*args)
        return None

    def run(self):
        dom = self.connection.find(self.params['name'])  # by name only: a name is never taken for a UUID
        state = self.params['state']
        uuid = self.params['uuid']
        if dom is not None and uuid and dom.UUIDString().lower() != uuid.lower():
            self.module.fail_json(msg='uuid: domain %s has UUID %s, not %s; nothing was changed'
                                  % (self.params['name'], dom.UUIDString(), uuid))
        if state == 'absent':
            return self.absent(dom)
        if dom is None:
            dom = self.create()
            active = False
        else:
            active = self.connection.is_active(dom)
            self.was_active = active
            self.update(dom)
        if state == 'running' and not active:
            self.do('start', self.connection.start, dom)
            active = True
        elif state == 'shutoff' and active:
            self.stop(dom)
            active = False
        if self.after is not None:
            self.after['active'] = active
        return dom

    def create(self):
        xml = _domain_spec.new_definition(self.params)
        dom = self.do('define', self.connection.define, xml)
        if dom is not None:
            self.ensure_root_ports(dom, self.connection.xml(dom))
            self.after = _domain_spec.settings_of(self.connection.xml(dom))
            return dom
        # check mode: predict what libvirt will store (it canonicalizes machine aliases)
        self.ensure_root_ports(None, xml)
        self.after = _domain_spec.settings_of(xml)
        aliases = _domain_spec.machine_aliases(self.connection.capabilities())
        self.after['machine'] = aliases.get(self.params['machine'] or 'pc', self.params['machine'])
        return None

    def update(self, dom):
        current_xml = self.connection.xml(dom)
        current = _domain_spec.settings_of(current_xml)
        self.before = dict(current)
        aliases = _domain_spec.machine_aliases(self.connection.capabilities()) if self.params['machine'] else {}
        try:
            changes = _domain_spec.differences(current, self.params, aliases)
        except _domain_spec.DomainSpecError as exc:
            self.module.fail_json(msg=str(exc))
        if changes:
            current_xml = _domain_spec.apply_changes(current_xml, changes)
            self.do('define', self.connection.define, current_xml)
            for setting, (_old, new) in changes.items():
                current[{'memory': 'memory_mib'}.get(setting, setting)] = new
        self.after = current

    def ensure_root_ports(self, dom, xml):
        """Add pcie-root-ports until pcie_root_ports of them are empty (two rounds at most: libvirt may
        move a device onto a new port when it re-addresses)."""
        wanted = self.params['pcie_root_ports']
        for _round in range(2):
            missing = wanted - _domain_spec.free_root_ports(xml)
            if missing <= 0:
                return
            xml = _domain_spec.with_root_ports(xml, missing)
            if self.do('define', self.connection.define, xml) is None:
                return  # check mode: one define predicted
            xml = self.connection.xml(dom)
        if _domain_spec.free_root_ports(xml) < wanted:
            self.module.fail_json(msg='pcie_root_ports: libvirt kept only %d free ports of %d asked'
                                  % (_domain_spec.free_root_ports(xml), wanted))

    def stop(self, dom):
        self.commands.append('shutdown')
        if self.module.check_mode:
            return
        if not self.connection.shutdown(dom, self.params['shutdown_timeout']):
            self.commands.append('destroy')
            self.connection.destroy(dom)

    def absent(self, dom):
        if dom is None:
            return None
        self.before = _domain_spec.settings_of(self.connection.xml(dom))
        if self.connection.is_active(dom):
            self.do('destroy', self.connection.destroy, dom)
        self.do('undefine', self.connection.undefine, dom)
        return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            _common.CONNECTION_ARGS,
            name={'type': 'str', 'required': True},
            uuid={'type': 'str'},
            memory={'type': 'int'},
            vcpus={'type': 'int'},
            machine={'type': 'str'},
            firmware={'type': 'str', 'choices': ['bios', 'efi']},
            type={'type': 'str', 'choices': ['kvm', 'qemu'], 'default': 'kvm'},
            arch={'type': 'str', 'default': 'x86_64'},
            pcie_root_ports={'type': 'int', 'default': 0},
            state={'type': 'str', 'choices': ['present', 'absent', 'running', 'shutoff'], 'default': 'present'},
            shutdown_timeout={'type': 'int', 'default': 120},
        ),
        supports_check_mode=True,
    )
    params = module.params
    for option, low, high in (('memory', 16, 16 * 1024 * 1024), ('vcpus', 1, 4096), ('pcie_root_ports', 0, 30),
                              ('shutdown_timeout', 0, 86400)):
        if params[option] is not None and not low <= params[option] <= high:
            module.fail_json(msg='%s: %r is out of range (%d..%d)' % (option, params[option], low, high))
    if params['uuid'] and not UUID_RE.match(params['uuid']):
        module.fail_json(msg='uuid: %r is not a UUID' % params['uuid'])
    if not params['name'] or '/' in params['name']:
        module.fail_json(msg='name: %r is not a valid domain name (empty or contains "/")' % params['name'])

    runner = DomainRunner(module)
    try:
        runner.run()
    except LibvirtFailure as exc:
        module.fail_json(msg=str(exc), commands=runner.commands)
    result = {'changed': bool(runner.commands), 'commands': runner.commands,
              'restart_required': bool(runner.commands) and runner.was_active and params['state'] != 'absent'}
    if runner.after is not None:
        result['domain'] = runner.after
    if module._diff:
        result['diff'] = {'before': runner.before or {}, 'after': runner.after or {}}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
