# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""virtdev.libvirt.network against the private libvirtd, and guest NICs that take a VF from a hostdev pool.

A hostdev pool can be defined without real VFs, but libvirt starts it only when the PF exists with VFs
("No usable Vf's present on SRIOV PF"): that refusal is tested as the real outcome. macvtap passthrough and
bridge networks start without their devices (libvirt checks those when a guest plugs in), so start, stop and
autostart are tested on them.
"""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def net_name(libvirtd_uri, virsh):
    name = 'vt-%s' % uuid.uuid4().hex[:8]
    yield name
    virsh(libvirtd_uri, 'net-destroy', name, check=False)
    virsh(libvirtd_uri, 'net-undefine', name, check=False)


def test_vf_pool_create_reapply_change_vlan_delete(libvirtd_uri, run_module, virsh, net_name):
    args = {'uri': libvirtd_uri, 'name': net_name, 'forward': 'hostdev', 'pf': 'vtpf0', 'vlan': 42}

    predicted = run_module('network', args, check_mode=True, diff=True)
    assert predicted['changed'] is True and predicted['commands'] == ['define'], predicted
    assert virsh(libvirtd_uri, 'net-list', '--all', '--name').split().count(net_name) == 0  # check mode wrote nothing

    created = run_module('network', args, diff=True)
    assert created['rc'] == 0 and created['commands'] == ['define'], created
    assert created['network'] == predicted['network']  # check mode predicted exactly what was done
    xml = virsh(libvirtd_uri, 'net-dumpxml', '--inactive', net_name)
    assert "<forward mode='hostdev' managed='yes'>" in xml and "<pf dev='vtpf0'/>" in xml and "<tag id='42'/>" in xml
    uuid_before = xml.split('<uuid>')[1].split('</uuid>')[0]

    again = run_module('network', args)
    assert again['changed'] is False and again['commands'] == [], again
    assert run_module('network', args, check_mode=True)['changed'] is False

    retag = run_module('network', dict(args, vlan=43), diff=True)
    assert retag['changed'] is True and retag['commands'] == ['define']
    assert retag['diff']['before']['vlan'] == 42 and retag['diff']['after']['vlan'] == 43
    xml = virsh(libvirtd_uri, 'net-dumpxml', '--inactive', net_name)
    assert "<tag id='43'/>" in xml and uuid_before in xml  # same network, only the managed part changed

    untagged = run_module('network', dict(args, vlan=None))
    assert untagged['changed'] is True and untagged['network']['vlan'] is None
    assert '<vlan' not in virsh(libvirtd_uri, 'net-dumpxml', '--inactive', net_name)

    # Starting needs a real PF with VFs: libvirt refuses, and the result says nothing was started.
    refused = run_module('network', dict(args, vlan=None, state='started'))
    assert refused['rc'] != 0 and refused['failed_command'] == 'start' and refused['commands'] == []
    assert refused['changed'] is False and 'vtpf0' in refused['msg'], refused

    assert run_module('network', {'uri': libvirtd_uri, 'name': net_name, 'state': 'absent'},
                      check_mode=True)['commands'] == ['undefine']
    deleted = run_module('network', {'uri': libvirtd_uri, 'name': net_name, 'state': 'absent'})
    assert deleted['commands'] == ['undefine'] and 'network' not in deleted
    assert net_name not in virsh(libvirtd_uri, 'net-list', '--all', '--name').split()
    assert run_module('network', {'uri': libvirtd_uri, 'name': net_name, 'state': 'absent'})['changed'] is False


def test_macvtap_started_autostarted_then_bridge_and_stopped(libvirtd_uri, run_module, virsh, net_name):
    args = {'uri': libvirtd_uri, 'name': net_name, 'forward': 'passthrough', 'interfaces': ['vteth0', 'vteth1'],
            'state': 'started', 'autostart': True}
    assert run_module('network', args, check_mode=True)['commands'] == ['define', 'start', 'autostart']
    started = run_module('network', args)
    assert started['commands'] == ['define', 'start', 'autostart'], started
    assert started['network']['active'] is True and started['network']['autostart'] is True
    assert run_module('network', args)['changed'] is False

    # a change to a running network is defined for its next start, and said so
    bridged = run_module('network', dict(args, forward='bridge', interfaces=None, bridge='vtbr0'), diff=True)
    assert bridged['commands'] == ['define'] and bridged['restart_required'] is True, bridged
    assert bridged['diff']['before']['forward'] == 'passthrough' and bridged['diff']['after']['bridge'] == 'vtbr0'
    xml = virsh(libvirtd_uri, 'net-dumpxml', '--inactive', net_name)
    assert "<forward mode='bridge'/>" in xml and "<bridge name='vtbr0'/>" in xml and 'vteth0' not in xml

    stopped = run_module('network', dict(args, forward='bridge', interfaces=None, bridge='vtbr0', state='stopped',
                                         autostart=False))
    assert stopped['commands'] == ['destroy', 'no_autostart'] and stopped['network']['active'] is False


@pytest.mark.parametrize('bad, words', [
    ({'forward': 'hostdev'}, 'pf: required for forward=hostdev'),
    ({'forward': 'hostdev', 'pf': 'eth0', 'vlan': 5000}, 'vlan: 5000 is out of range'),
    ({'forward': 'bridge', 'bridge': 'br0', 'vlan': 3}, 'vlan: not used by forward=bridge'),
    ({'forward': 'hostdev', 'pf': 'a/b'}, "pf: 'a/b' is not a Linux interface name"),
    ({'forward': 'passthrough'}, 'forward=passthrough needs one of pf, interfaces'),
])
def test_bad_input_names_the_field_and_changes_nothing(bad, words, libvirtd_uri, run_module, virsh, net_name):
    result = run_module('network', dict(bad, uri=libvirtd_uri, name=net_name))
    assert result['rc'] != 0 and words in result['msg'], result
    assert net_name not in virsh(libvirtd_uri, 'net-list', '--all', '--name').split()


def test_nic_from_a_vf_pool_converges_idempotently(libvirtd_uri, run_module, virsh, net_name):
    assert run_module('network', {'uri': libvirtd_uri, 'name': net_name, 'forward': 'hostdev', 'pf': 'vtpf1',
                                  'vlan': 7})['changed'] is True
    domain = 'vfnic-%s' % net_name
    try:
        assert run_module('domain', {'uri': libvirtd_uri, 'name': domain, 'type': 'qemu', 'memory': 128})['changed']
        nic = {'uri': libvirtd_uri, 'domain': domain,
               'config': [{'kind': 'interface', 'mac': '52:54:00:5f:00:01', 'source': {'network': net_name}}]}
        assert run_module('domain_devices', nic, check_mode=True)['changed'] is True
        added = run_module('domain_devices', nic)
        assert added['rc'] == 0 and added['changed'] is True, added
        xml = virsh(libvirtd_uri, 'dumpxml', '--inactive', domain)
        assert "<source network='%s'/>" % net_name in xml and '52:54:00:5f:00:01' in xml
        again = run_module('domain_devices', nic)
        assert again['changed'] is False, again
        gathered = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': domain, 'state': 'gathered'})
        nics = [dev for dev in gathered['gathered'] if dev['kind'] == 'interface']
        assert nics and nics[0]['source'] == {'network': net_name}, gathered
        # The guest cannot start here: libvirt needs a free VF of a real PF when it plugs the NIC in.
        assert virsh(libvirtd_uri, 'start', domain, check=False).returncode != 0
    finally:
        virsh(libvirtd_uri, 'undefine', domain, check=False)
