# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""sriov_vfs on the SR-IOV fixture (an Intel X710 with two PFs), with a FakeKernel that answers the
sriov_numvfs writes as the kernel does (EBUSY from one non-zero count to another, ERANGE above
sriov_totalvfs, VFs created as PCI devices). QEMU's emulated NICs have no SR-IOV, so this is where the
module runs against something that behaves like the kernel; ``ip`` is only run with root /.
"""

from __future__ import annotations

import errno
import os

import pytest

from ansible_collections.virtdev.libvirt.plugins.modules import sriov_vfs
from ansible_collections.virtdev.libvirt.tests.unit.prepare_helpers import cycle, expect_refused, machine, read, run_module, \
    warnings

PF0, PF1, VF0, VF3, SATA = '0000:41:00.0', '0000:41:00.1', '0000:41:02.0', '0000:41:02.3', '0000:42:00.0'
RULES1 = '/etc/udev/rules.d/70-virtdev-sriov-0000_41_00_1.rules'


def run(capsys, **params):
    return run_module(capsys, sriov_vfs, **params)


def vfs_of(root, pf):
    path = os.path.join(root, 'sys/bus/pci/devices', pf)
    return sorted(os.path.basename(os.path.realpath(os.path.join(path, name)))
                  for name in os.listdir(path) if name.startswith('virtfn'))


def numvfs(root, pf):
    return int(read(root, 'sys/bus/pci/devices/%s/sriov_numvfs' % pf))


def refused(capsys, root, kernel, **params):
    return expect_refused(capsys, sriov_vfs, root, kernel, **params)


def test_enable_vfs_by_interface_name(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'sriov')
    checked, applied = cycle(capsys, sriov_vfs, root, kernel, pf='ens2f1', num_vfs=8)
    assert applied['pf'] == PF1 and applied['interface'] == 'ens2f1'
    assert [(w['path'], w['value']) for w in applied['writes']] == [
        ('/sys/bus/pci/devices/%s/sriov_numvfs' % PF1, '8')]
    # the kernel's view: 8 VFs, each a PCI device with a physfn link back to the PF
    assert numvfs(root, PF1) == 8 and len(vfs_of(root, PF1)) == 8
    assert applied['after']['vfs'] == vfs_of(root, PF1)
    assert applied['before'] == {'num_vfs': 0, 'total_vfs': 64, 'vfs': []}
    assert checked['diff'][0] == {'before_header': 'pci %s sriov_numvfs' % PF1,
                                  'after_header': 'pci %s sriov_numvfs' % PF1, 'before': '0\n', 'after': '8\n'}


def test_changing_a_nonzero_count_goes_through_zero(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'sriov')
    assert numvfs(root, PF0) == 4
    _checked, applied = cycle(capsys, sriov_vfs, root, kernel, pf=PF0, num_vfs=2)
    assert [w['value'] for w in applied['writes']] == ['0', '2']
    assert numvfs(root, PF0) == 2 and vfs_of(root, PF0) == ['0000:41:02.0', '0000:41:02.1']
    # three of the old VFs were on vfio-pci: recreating them is said
    assert sum('removes and recreates it' in warning for warning in warnings(applied)) == 3


def test_disable(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'sriov')
    cycle(capsys, sriov_vfs, root, kernel, pf=PF0, num_vfs=0)
    assert numvfs(root, PF0) == 0 and vfs_of(root, PF0) == []
    assert not os.path.exists(os.path.join(root, 'sys/bus/pci/devices', VF0))


def test_above_totalvfs(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'sriov')
    result = refused(capsys, root, kernel, pf=PF1, num_vfs=65)
    assert result['msg'] == 'num_vfs: 65 is more than the 64 VFs 0000:41:00.1 supports (sriov_totalvfs) ' \
                            '(nothing was changed)'


@pytest.mark.parametrize('pf, num_vfs, words', [
    (VF0, 1, 'pf: 0000:41:02.0 is itself a VF of 0000:41:00.0; give the PF'),
    (SATA, 1, 'pf: 0000:42:00.0 (storage controller, driver ahci) is not SR-IOV capable'),
    ('eth9', 1, "pf: there is no network interface 'eth9' backed by a PCI device"),
    ('0000:43:00.0', 1, 'pf: there is no PCI device 0000:43:00.0 on this host'),
    ('en s2f0', 1, "pf: 'en s2f0' is neither a PCI address"),
    (PF1, -1, 'num_vfs: -1 is not a number of VFs'),
])
def test_bad_pf_or_count(capsys, tmp_path, monkeypatch, pf, num_vfs, words):
    root, kernel = machine(tmp_path, monkeypatch, 'sriov')
    result = refused(capsys, root, kernel, pf=pf, num_vfs=num_vfs)
    assert words in result['msg'] and 'nothing was changed' in result['msg']


@pytest.mark.parametrize('vfs, words', [
    ([{'index': 4}], 'vfs[0].index: VF 4 does not exist with num_vfs 4 (VFs are numbered 0 to 3)'),
    ([{'index': 0, 'mac': 'nope'}], "vfs[0].mac: 'nope' is not a MAC address"),
    ([{'index': 0, 'mac': '01:00:5e:00:00:01'}], 'is a multicast MAC address'),
    ([{'index': 0, 'vlan': 4096}], 'vfs[0].vlan: 4096 is not a VLAN id from 0 (none) to 4095'),
    ([{'index': 1}, {'index': 1, 'trust': True}], 'vfs[1].index: VF 1 is listed twice'),
])
def test_bad_vf_settings(capsys, tmp_path, monkeypatch, vfs, words):
    root, kernel = machine(tmp_path, monkeypatch, 'sriov')
    result = refused(capsys, root, kernel, pf=PF0, num_vfs=4, vfs=vfs)
    assert words in result['msg']


def test_vf_settings_need_a_network_interface(capsys, tmp_path, monkeypatch):
    def no_netdev(spec):
        spec['net'] = [nic for nic in spec['net'] if nic['iface'] != 'ens2f0']
    root, kernel = machine(tmp_path, monkeypatch, 'sriov', no_netdev)
    result = refused(capsys, root, kernel, pf=PF0, num_vfs=4, vfs=[{'index': 0, 'vlan': 10}])
    assert 'vfs: 0000:41:00.0 has no network interface' in result['msg']


def test_vf_in_use_blocks_a_count_change(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'sriov')
    kernel.open_group(23, pid=777, comm='qemu-kvm')
    result = refused(capsys, root, kernel, pf=PF0, num_vfs=8)
    assert result['errors'] == ['num_vfs: VF 0000:41:02.3 is in use (IOMMU group 23 open by pid 777 (qemu-kvm)); '
                                'changing the VF count would remove it from a running guest']
    assert numvfs(root, PF0) == 4


def test_pf_without_driver(capsys, tmp_path, monkeypatch):
    def unbound(spec):
        next(entry for entry in spec['pci'] if entry['address'] == PF1).pop('driver')
    root, kernel = machine(tmp_path, monkeypatch, 'sriov', unbound)
    result = refused(capsys, root, kernel, pf=PF1, num_vfs=2)
    assert 'pf: 0000:41:00.1 has no driver bound' in result['msg']


def test_failed_count_restores_the_previous_one(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'sriov')
    kernel.fail_writes[(kernel.device_path(PF0) + '/sriov_numvfs', '8')] = errno.ENOMEM
    result = run(capsys, root=root, pf=PF0, num_vfs=8)
    assert result['rc'] == 1
    assert result['msg'].startswith("writing '8' to /sys/bus/pci/devices/0000:41:00.0/sriov_numvfs failed: ")
    assert 'the VF count was already set to 0' in result['msg']
    assert result['msg'].endswith('restored the previous count of 4 VFs')
    assert numvfs(root, PF0) == 4 and len(vfs_of(root, PF0)) == 4


def test_vf_settings_below_a_fixture_root_are_skipped_not_changed(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'sriov')
    params = dict(pf=PF0, num_vfs=4, vfs=[{'index': 1, 'mac': '52:54:00:AA:00:01', 'vlan': 100, 'trust': True},
                                          {'index': 0, 'spoofchk': False}])
    result = run(capsys, root=root, **params)
    assert result['rc'] == 0 and result['changed'] is False and result['commands'] == []
    assert result['skipped_commands'] == [
        ['/usr/sbin/ip', 'link', 'set', 'dev', 'ens2f0', 'vf', '0', 'spoofchk', 'off'],
        ['/usr/sbin/ip', 'link', 'set', 'dev', 'ens2f0', 'vf', '1', 'mac', '52:54:00:aa:00:01', 'vlan', '100',
         'trust', 'on']]
    assert any('not read or applied' in warning for warning in warnings(result))
    assert kernel.writes == []


def test_persistent_rules(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'sriov')
    params = dict(pf=PF1, num_vfs=2, persistent=True, vfs=[{'index': 0, 'mac': '52:54:00:00:10:00', 'vlan': 7}])
    _checked, applied = cycle(capsys, sriov_vfs, root, kernel, **params)
    assert applied['files'] == [os.path.join(root, RULES1.lstrip('/'))]
    rules = read(root, RULES1).splitlines()
    assert rules[2] == ('ACTION=="bind", SUBSYSTEM=="pci", KERNEL=="0000:41:00.1", ATTR{vendor}=="0x8086", '
                        'ATTR{device}=="0x1572", ATTR{sriov_numvfs}="2"')
    assert rules[3] == ('ACTION=="bind", SUBSYSTEM=="pci", KERNEL=="0000:41:00.1", ATTR{vendor}=="0x8086", '
                        'ATTR{device}=="0x1572", RUN+="/usr/sbin/ip link set dev ens2f1 vf 0 mac 52:54:00:00:10:00 '
                        'vlan 7"')
    # a new count rewrites the rule; zero VFs removes it
    result = run(capsys, root=root, pf=PF1, num_vfs=3, persistent=True)
    assert result['changed'] is True and 'ATTR{sriov_numvfs}="3"' in read(root, RULES1)
    assert [w['value'] for w in result['writes']] == ['0', '3']
    result = run(capsys, root=root, pf=PF1, num_vfs=0, persistent=True)
    assert result['changed'] is True and read(root, RULES1) is None and numvfs(root, PF1) == 0
