# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure parts of the host preparation backends (host.prepare): paths that never leave root, kernel module lists, the files it renders
and parses back, ip's VF report and the commands derived from it."""

from __future__ import annotations

import json
import os

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils.host.below_root import SysRoot
from ansible_collections.virtdev.libvirt.plugins.module_utils import _files
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import model
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import bind
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import kernel_modules
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import mdev as mdev_backend
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import persistence
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import sriov as sriov_backend
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import sysfs_writer
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import sysfs_source
from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import Tree, build


def test_sysfs_paths_never_leave_root(tmp_path):
    root = build('desktop', tmp_path)
    # a link pointing at the real /sys is taken relative to the root, like everything else
    os.symlink('/sys/bus/pci', os.path.join(root, 'escape'))
    sysfs = sysfs_writer.Sysfs(root)
    assert sysfs.full('escape/drivers_probe') == os.path.join(root, 'sys/bus/pci/drivers_probe')
    assert sysfs.full('sys/bus/pci/devices/0000:01:00.0/driver_override').startswith(root + '/sys/devices/')
    # '..' stops at the root
    Tree(root).mkdir('etc')
    os.symlink('../../../../../../../../etc', os.path.join(root, 'sys/bus/pci/devices/0000:09:00.0'))
    assert sysfs.full('sys/bus/pci/devices/0000:09:00.0/x') == os.path.join(root, 'etc/x')


def test_dry_run_records_and_writes_nothing(tmp_path, monkeypatch):
    root = build('desktop', tmp_path)
    monkeypatch.setattr(sysfs_writer, 'write_attribute', lambda path, value: pytest.fail('wrote %s' % path))
    sysfs = sysfs_writer.Sysfs(root, dry_run=True)
    sysfs.write('sys/bus/pci/drivers_probe', '0000:01:00.0')
    assert sysfs.writes == [{'path': '/sys/bus/pci/drivers_probe', 'value': '0000:01:00.0'}]


def test_write_errors_name_the_attribute(tmp_path):
    root = build('desktop', tmp_path)
    sysfs = sysfs_writer.Sysfs(root)  # the real write_attribute: the fixture has no drivers_probe file
    with pytest.raises(sysfs_writer.PrepareError, match=r"writing '0000:01:00.0' to /sys/bus/pci/drivers_probe failed: .*ENOENT"):
        sysfs.write('sys/bus/pci/drivers_probe', '0000:01:00.0')


def test_vfio_group_users(tmp_path):
    root = build('desktop', tmp_path)
    tree = Tree(root)
    tree.write('proc/100/comm', 'qemu-system-x86\n')
    os.makedirs(os.path.join(root, 'proc/100/fd'))
    os.symlink('/dev/vfio/1', os.path.join(root, 'proc/100/fd/21'))
    os.symlink('/dev/null', os.path.join(root, 'proc/100/fd/0'))
    tree.write('proc/self/comm', 'x\n')
    assert sysfs_source.read_group_users(SysRoot(root)).get('1', []) == [{'pid': 100, 'comm': 'qemu-system-x86', 'guest': None}]
    assert sysfs_source.read_group_users(SysRoot(root)).get('8', []) == []
    assert model.describe_users([{'pid': 100, 'comm': 'qemu-system-x86'}]) == 'pid 100 (qemu-system-x86)'
    # libvirt starts QEMU with -name guest=NAME,...: the guest is named
    tree.write('proc/100/cmdline', 'qemu-system-x86_64\0-name\0guest=web,debug-threads=on\0-S\0')
    assert sysfs_source.read_group_users(SysRoot(root)).get('1', []) == [{'pid': 100, 'comm': 'qemu-system-x86', 'guest': 'web'}]
    assert model.describe_users(sysfs_source.read_group_users(SysRoot(root)).get('1', [])) == 'guest web (pid 100 qemu-system-x86)'


@pytest.mark.parametrize('driver, ok', [
    ('vfio-pci', True), ('pci-stub', True), ('mlx5_vfio_pci', True), ('nvgrace-gpu-vfio-pci', True),
    ('nouveau', False), ('vfio pci', False), ('../vfio-pci', False), ('', False),
])
def test_driver_names(driver, ok):
    if ok:
        assert bind.check_driver_name(driver) == driver
    else:
        with pytest.raises(ValueError, match='driver: '):
            bind.check_driver_name(driver)


def _kernels(tmp_path, kernels):
    root = str(tmp_path)
    for release, (modules, builtin) in kernels.items():
        Tree(root).write('lib/modules/%s/modules.dep' % release,
                         ''.join('kernel/drivers/vfio/%s.ko.xz: \n' % name for name in modules))
        Tree(root).write('lib/modules/%s/modules.builtin' % release,
                         ''.join('kernel/drivers/vfio/%s.ko\n' % name for name in builtin))
    return SysRoot(root)


def test_initramfs_modules_follow_the_installed_kernels(tmp_path):
    old = ['vfio', 'vfio_iommu_type1', 'vfio_virqfd', 'vfio-pci', 'vfio-pci-core']
    new = ['vfio', 'vfio_iommu_type1', 'vfio-pci', 'vfio-pci-core']
    assert kernel_modules.initramfs_modules(_kernels(tmp_path / 'a', {'6.1.0-18-amd64': (old, [])})) == \
        ['vfio', 'vfio_iommu_type1', 'vfio_virqfd', 'vfio_pci']
    # one kernel without vfio_virqfd (6.2+ merged it into vfio) is enough to leave it out
    assert kernel_modules.initramfs_modules(_kernels(tmp_path / 'b', {'6.1.0-18-amd64': (old, []), '6.8.0-1': (new, [])})) == \
        ['vfio', 'vfio_iommu_type1', 'vfio_pci']
    # built into every kernel: nothing to add; no kernels found: the plain list
    assert kernel_modules.initramfs_modules(_kernels(tmp_path / 'c', {'6.9': (['vfio-pci'], ['vfio', 'vfio_iommu_type1'])})) == \
        ['vfio_pci']
    assert kernel_modules.initramfs_modules(SysRoot(str(tmp_path / 'empty')), 'pci-stub') == \
        ['vfio', 'vfio_iommu_type1', 'vfio_pci', 'pci_stub']
    assert kernel_modules.kernel_module_state(_kernels(tmp_path / 'd', {'6.9': ([], ['vfio'])}), 'vfio_virqfd') == {'6.9': 'missing'}


def test_udev_rules_round_trip():
    entries = {'0000:01:00.1': {'vendor': '0x10de', 'device': '0x10f0', 'driver': 'vfio-pci'},
               '0000:01:00.0': {'vendor': '0x10de', 'device': '0x1b80', 'driver': 'vfio-pci'}}
    text = persistence.render_udev_vfio(entries)
    parsed = persistence.parse_entries(text, persistence._UDEV_ENTRY_RE)  # pylint: disable=protected-access
    assert sorted(parsed) == ['0000:01:00.0', '0000:01:00.1']
    assert {key: parsed['0000:01:00.0'][key] for key in ('vendor', 'device', 'driver')} == entries['0000:01:00.0']
    assert text.index('0000:01:00.0') < text.index('0000:01:00.1')
    assert persistence.render_udev_vfio({}) is None


def test_modprobe_conf_groups_ids_and_softdeps():
    entries = {'0000:01:00.0': {'vendor': '0x10de', 'device': '0x1b80', 'driver': 'vfio-pci', 'host': 'nouveau'},
               '0000:02:00.0': {'vendor': '0x10de', 'device': '0x1b81', 'driver': 'vfio-pci', 'host': 'nouveau'},
               '0000:03:00.0': {'vendor': '0x8086', 'device': '0x1533', 'driver': 'vfio-pci', 'host': '-'}}
    lines = persistence.render_modprobe_vfio(entries).splitlines()
    assert 'options vfio_pci ids=10de:1b80,10de:1b81,8086:1533' in lines
    assert [line for line in lines if line.startswith('softdep')] == ['softdep nouveau pre: vfio_pci']
    parsed = persistence.parse_entries('\n'.join(lines), persistence._MODPROBE_ENTRY_RE)  # pylint: disable=protected-access
    assert parsed['0000:01:00.0']['host'] == 'nouveau'


def test_initramfs_files():
    hook = persistence.render_initramfs_tools_hook(['vfio', 'vfio_pci'], persistence.UDEV_VFIO_RULES)
    assert hook.startswith('#!/bin/sh\n') and 'manual_add_modules vfio vfio_pci\n' in hook
    assert 'prereqs) prereqs; exit 0 ;;' in hook
    conf = persistence.render_dracut_conf(['vfio_pci'], [persistence.MODPROBE_VFIO_CONF])
    assert 'add_drivers+=" vfio_pci "\n' in conf and 'install_items+=" /etc/modprobe.d/virtdev-vfio.conf "\n' in conf


def test_initramfs_command():
    found = {'update-initramfs': '/usr/sbin/update-initramfs', 'dracut': '/usr/bin/dracut'}
    assert persistence.initramfs_command(['initramfs-tools'], found.get) == ['/usr/sbin/update-initramfs', '-u']
    assert persistence.initramfs_command(['dracut'], found.get) == ['/usr/bin/dracut', '-f']
    assert persistence.initramfs_command(['initramfs-tools'], {}.get) is None


IP_JSON = json.dumps([{
    'ifindex': 4, 'ifname': 'ens2f0', 'flags': ['BROADCAST', 'MULTICAST', 'UP'], 'mtu': 1500,
    'address': '3c:fd:fe:00:00:01', 'num_vf': 3,
    'vfinfo_list': [
        {'vf': 0, 'link_type': 'ether', 'address': '52:54:00:00:10:00', 'broadcast': 'ff:ff:ff:ff:ff:ff',
         'vlan_list': [{'vlan': 100}], 'spoofchk': True, 'link_state': 'auto', 'trust': False},
        {'vf': 1, 'link_type': 'ether', 'address': '00:00:00:00:00:00', 'broadcast': 'ff:ff:ff:ff:ff:ff',
         'spoofchk': True, 'link_state': 'auto', 'trust': False},
        {'vf': 2, 'mac': '52:54:00:00:10:02', 'vlan': 7, 'spoofchk': False, 'trust': True},
    ],
}])


def test_parse_ip_vfinfo():
    assert sriov_backend.parse_ip_vfinfo(IP_JSON) == {
        0: {'mac': '52:54:00:00:10:00', 'vlan': 100, 'trust': False, 'spoofchk': True},
        1: {'mac': '00:00:00:00:00:00', 'vlan': 0, 'trust': False, 'spoofchk': True},
        2: {'mac': '52:54:00:00:10:02', 'vlan': 7, 'trust': True, 'spoofchk': False},
    }
    with pytest.raises(sysfs_writer.PrepareError, match='cannot parse the output of ip'):
        sriov_backend.parse_ip_vfinfo('not json')


def test_vf_commands_only_for_what_differs():
    current = sriov_backend.parse_ip_vfinfo(IP_JSON)
    wanted = sriov_backend.normalize_vf_settings([
        {'index': 0, 'mac': '52-54-00-00-10-00', 'vlan': 100, 'spoofchk': True},  # as it is
        {'index': 1, 'mac': '52:54:00:00:10:01', 'trust': False},                 # MAC differs
        {'index': 2, 'vlan': 0, 'trust': True, 'spoofchk': True},                # VLAN and spoofchk differ
    ], 3)
    assert sriov_backend.vf_commands('ens2f0', wanted, current) == [
        ['link', 'set', 'dev', 'ens2f0', 'vf', '1', 'mac', '52:54:00:00:10:01'],
        ['link', 'set', 'dev', 'ens2f0', 'vf', '2', 'vlan', '0', 'spoofchk', 'on']]
    # unknown state: everything is set
    assert len(sriov_backend.vf_commands('ens2f0', wanted, None)) == 3


def test_sriov_rules_render():
    assert sriov_backend.render_sriov_rules('0000:41:00.0', '0x8086', '0x1572', 0, 'ens2f0', [], '/usr/sbin/ip') is None
    text = sriov_backend.render_sriov_rules('0000:41:00.0', '0x8086', '0x1572', 2, None, [], '/usr/sbin/ip')
    assert text.count('ACTION==') == 1 and 'ATTR{sriov_numvfs}="2"' in text
    assert sriov_backend.sriov_rules_path('0000:41:00.0') == '/etc/udev/rules.d/70-virtdev-sriov-0000_41_00_0.rules'


def test_mdevctl_definitions_and_render(tmp_path):
    root = str(tmp_path)
    Tree(root).write('etc/mdevctl.d/0000:00:02.0/3b9f6a2e-1c4d-4e5f-8a7b-9c0d1e2f3a4b',
                     mdev_backend.render_mdevctl('i915-GVTg_V5_8', 'manual', {'attrs': [{'a': '1'}]}))
    Tree(root).write('etc/mdevctl.d/0000:00:02.0/not-a-uuid', '{}')
    Tree(root).mkdir('etc/mdevctl.d/scripts.d/callouts')
    found = mdev_backend.mdevctl_definitions(root)
    assert list(found) == ['3b9f6a2e-1c4d-4e5f-8a7b-9c0d1e2f3a4b']
    [definition] = found['3b9f6a2e-1c4d-4e5f-8a7b-9c0d1e2f3a4b']
    assert (definition['parent'], definition['type'], definition['start']) == ('0000:00:02.0', 'i915-GVTg_V5_8', 'manual')
    assert definition['data']['attrs'] == [{'a': '1'}]


def test_file_writer_rolls_back(tmp_path):
    root = str(tmp_path)
    Tree(root).write('etc/a.conf', 'old\n')
    writer = _files.Transaction(root)
    writer.apply(_files.FileChange('/etc/a.conf', 'old\n', 'new\n'))
    writer.apply(_files.FileChange('/etc/new/b.conf', None, 'b\n', 0o755))
    assert os.stat(os.path.join(root, 'etc/new/b.conf')).st_mode & 0o777 == 0o755
    assert writer.rollback() == []
    assert open(os.path.join(root, 'etc/a.conf'), encoding='utf-8').read() == 'old\n'
    assert not os.path.exists(os.path.join(root, 'etc/new/b.conf'))


def test_symlinked_config_is_refused(tmp_path):
    root = str(tmp_path)
    Tree(root).write('elsewhere', 'x')
    Tree(root).link('etc/udev/rules.d/40-virtdev-vfio-pci.rules', 'elsewhere')
    with pytest.raises(_files.FileError, match='is a symbolic link'):
        _files.read_text(root, persistence.UDEV_VFIO_RULES)
