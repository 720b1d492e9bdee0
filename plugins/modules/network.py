#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: network
short_description: Ensure a libvirt network that guest NICs take devices from (SR-IOV VF pools, macvtap, bridges)
version_added: 0.1.0
description:
  - Defines, starts, stops, autostarts or removes a libvirt network of one of the kinds device provisioning needs
    (L(libvirt network XML,https://libvirt.org/formatnetwork.html)).
  - V(hostdev) is a pool of SR-IOV virtual functions of one physical function; each guest NIC whose source is the
    network (M(virtdev.libvirt.domain_devices), C(kind=interface), C(source.network)) gets a free VF by PCI
    passthrough, bound to vfio-pci by libvirt (C(managed=yes)), optionally tagged with a VLAN.
  - V(passthrough) is macvtap passthrough of host interfaces (or of the VFs of O(pf)); V(bridge) plugs guests
    into an existing host bridge (this module does not create the bridge).
  - Only the forward kind, O(pf), O(interfaces), O(bridge) and O(vlan) are managed; everything else in an
    existing definition (UUID, port groups, metadata) is kept. Changing the forward kind replaces the definition
    except name, UUID and description.
  - A changed definition of a running network takes effect when the network is next started; the module does not
    restart it (that disconnects the guests plugged into it) and returns RV(restart_required).
  - Starting a V(hostdev) network needs the PF to exist with VFs enabled (M(virtdev.libvirt.sriov_vfs));
    libvirt refuses otherwise ("No usable Vf's present on SRIOV PF"). Defining it does not.
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
    description: Name of the network.
    type: str
    required: true
  forward:
    description:
      - The kind of network. Required unless O(state=absent).
      - V(hostdev) takes O(pf) and O(vlan); V(passthrough) takes O(pf) or O(interfaces); V(bridge) takes O(bridge).
    type: str
    choices: [bridge, hostdev, passthrough]
  pf:
    description: The SR-IOV physical function (host interface name) whose VFs the network hands out.
    type: str
  interfaces:
    description: For V(passthrough), the host interfaces guests may take (one per guest NIC).
    type: list
    elements: str
  bridge:
    description: For V(bridge), the existing host bridge guests are plugged into.
    type: str
  vlan:
    description: For V(hostdev), the VLAN tag (0-4095) libvirt sets on each VF it hands out. Omit for untagged.
    type: int
  state:
    description:
      - V(present) defines the network and leaves it running or stopped as it is; V(started) also starts it;
        V(stopped) also stops it; V(absent) stops and undefines it.
    type: str
    choices: [present, started, stopped, absent]
    default: present
  autostart:
    description: Whether libvirt starts the network when it starts. Left as it is when omitted.
    type: bool
'''

EXAMPLES = r'''
- name: A pool of the VFs of enp65s0f0, tagged VLAN 42
  virtdev.libvirt.network:
    name: vf-pool-a
    forward: hostdev
    pf: enp65s0f0
    vlan: 42
    state: started
    autostart: true

- name: A guest NIC that takes a VF from the pool
  virtdev.libvirt.domain_devices:
    domain: web01
    config:
      - kind: interface
        mac: "52:54:00:aa:00:01"
        source: {network: vf-pool-a}

- name: macvtap passthrough of two host ports
  virtdev.libvirt.network:
    name: direct-ports
    forward: passthrough
    interfaces: [enp1s0f2, enp1s0f3]
    state: started

- name: Guests on the host bridge br0
  virtdev.libvirt.network:
    name: lan
    forward: bridge
    bridge: br0
    state: started
    autostart: true

- name: Remove a network
  virtdev.libvirt.network:
    name: old-pool
    state: absent
'''

RETURN = r'''
network:
  description: The network's managed settings after the run (predicted in check mode), with its state.
  returned: when the network exists after the run
  type: dict
  sample: {name: vf-pool-a, forward: hostdev, pf: enp65s0f0, interfaces: [], bridge: null, vlan: 42,
           active: true, autostart: true}
restart_required:
  description: Whether the network is running an older definition; it takes effect at the network's next start.
  returned: always
  type: bool
commands:
  description: What was (or would be) done, in order.
  returned: always
  type: list
  elements: str
  sample: [define, start, autostart]
failed_command:
  description: The command libvirt refused (RV(commands) lists what was done before it; nothing is undone).
  returned: on failure of a libvirt call
  type: str
  sample: start
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _network_spec
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import LibvirtFailure


class NetworkRunner:
    def __init__(self, module, wanted):
        self.module = module
        self.params = module.params
        self.wanted = wanted
        self.connection = _common.connect(module)
        self.commands = []
        self.before = None
        self.after = None
        self.restart_required = False
        self.failed_command = None

    def do(self, command, func, *args):
        """Run a command unless in check mode; record it once done (or predicted), so a failure lists only what
        really happened."""
        if self.module.check_mode:
            self.commands.append(command)
            return None
        self.failed_command = command
        result = func(*args)
        self.commands.append(command)
        self.failed_command = None
        return result

    def run(self):
        name, state = self.params['name'], self.params['state']
        net = self.connection.network_find(name)
        active = autostart = False
        if net is not None:
            xml = self.connection.network_xml(net)
            active = self.connection.network_is_active(net)
            autostart = self.connection.network_autostart(net)
            self.before = dict(_network_spec.settings_of(xml), name=name, active=active, autostart=autostart)
        if state == 'absent':
            if net is not None:
                if active:
                    self.do('destroy', self.connection.network_destroy, net)
                self.do('undefine', self.connection.network_undefine, net)
            return
        if net is None:
            net = self.do('define', self.connection.network_define, _network_spec.render(name, self.wanted))
        elif _network_spec.differences(self.before, self.wanted):
            self.do('define', self.connection.network_define, _network_spec.apply(xml, self.wanted))
            self.restart_required = active and state != 'stopped'
        if state == 'started' and not active:
            self.do('start', self.connection.network_start, net)
            active = True
        elif state == 'stopped' and active:
            self.do('destroy', self.connection.network_destroy, net)
            active = False
        if self.params['autostart'] is not None and self.params['autostart'] != autostart:
            command = 'autostart' if self.params['autostart'] else 'no_autostart'
            self.do(command, self.connection.network_set_autostart, net, self.params['autostart'])
            autostart = self.params['autostart']
        if self.module.check_mode:
            self.after = dict(self.wanted, name=name, active=active, autostart=autostart)
        else:  # read back what libvirt stored rather than trusting the plan
            self.after = dict(_network_spec.settings_of(self.connection.network_xml(net)), name=name,
                              active=self.connection.network_is_active(net),
                              autostart=self.connection.network_autostart(net))


def main():
    module = AnsibleModule(
        argument_spec=dict(
            _common.CONNECTION_ARGS,
            name={'type': 'str', 'required': True},
            forward={'type': 'str', 'choices': sorted(_network_spec.FORWARD_KINDS)},
            pf={'type': 'str'},
            interfaces={'type': 'list', 'elements': 'str'},
            bridge={'type': 'str'},
            vlan={'type': 'int'},
            state={'type': 'str', 'choices': ['present', 'started', 'stopped', 'absent'], 'default': 'present'},
            autostart={'type': 'bool'},
        ),
        required_if=[('state', 'present', ['forward']), ('state', 'started', ['forward']),
                     ('state', 'stopped', ['forward'])],
        supports_check_mode=True,
    )
    _common.check_strings(module)  # NUL, control characters, lone surrogates: refused naming the option
    params = module.params
    if not params['name'] or '/' in params['name']:
        module.fail_json(msg='name: %r is not a valid network name (empty or contains "/")' % params['name'])
    wanted = None
    if params['state'] != 'absent':
        try:
            wanted = _network_spec.desired(params)
        except _network_spec.NetworkSpecError as exc:
            module.fail_json(msg=str(exc))

    runner = NetworkRunner(module, wanted)
    try:
        runner.run()
    except LibvirtFailure as exc:
        # commands lists what was done before the failure (nothing is undone); failed_command what failed
        module.fail_json(msg=str(exc), changed=bool(runner.commands) and not module.check_mode,
                         commands=runner.commands, failed_command=runner.failed_command)
    result = {'changed': bool(runner.commands), 'commands': runner.commands,
              'restart_required': runner.restart_required}
    if runner.after is not None:
        result['network'] = runner.after
    if module._diff:
        result['diff'] = {'before': runner.before or {}, 'after': runner.after or {}}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
