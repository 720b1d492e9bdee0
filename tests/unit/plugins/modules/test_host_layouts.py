# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One verdict model on the hypervisor layouts users run: for every PCI device of each fixture machine,
host_devices_info's verdict, the guards of domain_devices (``check_assignment``, what its preflight runs in
check mode) and vfio_bind's plan (check mode, ``whole_group``) agree with each other and with the
expected verdict written down here from the rules (docs/host_devices.md). Every refusal is then tried for
real: vfio_bind writes nothing, and its message names the guard and the other devices of the group.

The machines (tests/unit/fixtures/sysfs/): a Z170 desktop with GVT-g, a B450 APU board with PCIe Dummy
Host Bridges, an EPYC GPU server with a group shared by two V100s, a Xeon server with ACS, SR-IOV and a
vGPU card, a Proxmox host with a ZFS root and Open vSwitch, a small host whose two X710 ports share a group.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import facts as host_facts
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import guards as host_guards
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import model
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import preflight
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import sysfs_source
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import domain_usage
from ansible_collections.virtdev.libvirt.plugins.modules import host_devices_info, mdev, sriov_vfs, vfio_bind
from ansible_collections.virtdev.libvirt.tests.unit.prepare_helpers import expect_refused, machine, run_module

R, N, OK = 'refused', 'needs_preparation', 'ready'

# guests (name, running, [PCI addresses]) and, per device, (verdict, guards behind it: refusal reasons, else
# warnings) as the rules give them; bridges are refused as such and left out of the table
LAYOUTS = {
    'z170_gvtg': ([], {
        '0000:00:00.0': (R, {'host_critical'}),
        '0000:00:02.0': (R, {'host_critical', 'group_open'}),  # boot VGA; its vGPU held by office-vm
        '0000:00:14.0': (N, {'host_input'}),  # keyboard and mouse: a warning naming them
        '0000:00:16.0': (N, set()),
        '0000:00:17.0': (R, {'host_critical'}),  # active swap (and /home: warning only)
        '0000:00:1f.0': (R, {'host_critical', 'group_critical'}),
        '0000:00:1f.2': (R, {'group_critical'}),
        '0000:00:1f.3': (R, {'group_critical'}),
        '0000:00:1f.4': (R, {'host_critical', 'group_critical'}),
        '0000:00:1f.6': (R, {'host_critical', 'group_critical'}),  # default route over br0
        '0000:01:00.0': (N, set()),
        '0000:01:00.1': (N, set()),
        '0000:02:00.0': (R, {'host_critical'}),  # / on LVM
    }),
    'b450_apu': ([], {
        '0000:00:00.0': (R, {'host_critical'}),
        '0000:00:00.2': (R, {'host_critical'}),
        '0000:00:01.0': (R, {'host_critical', 'group_critical'}),
        '0000:00:07.0': (R, {'host_critical'}),  # a dummy host bridge is itself never passed through
        '0000:00:08.0': (R, {'host_critical', 'group_critical'}),
        '0000:00:14.0': (R, {'host_critical', 'group_critical'}),
        '0000:00:14.3': (R, {'host_critical', 'group_critical'}),
        '0000:01:00.0': (R, {'host_critical', 'group_critical'}),
        '0000:02:00.0': (R, {'host_critical', 'group_critical'}),
        '0000:04:00.0': (N, set()),  # FCH SATA next to a dummy host bridge: viable, the bridge is not bound
        '0000:04:00.3': (N, set()),
        '0000:05:00.0': (R, {'host_critical'}),
        '0000:05:00.1': (R, {'group_critical'}),
        '0000:05:00.3': (R, {'group_critical'}),
    }),
    'epyc_gpu': ([('train-1', True, ['0000:43:00.0'])], {
        '0000:00:00.0': (R, {'host_critical'}),
        '0000:00:00.2': (R, {'host_critical'}),
        '0000:43:00.0': (OK, set()),  # train-1's own GPU: used_by says so
        '0000:44:00.0': (R, {'group_held_live'}),  # its group peer is in running train-1
        '0000:61:00.0': (N, set()),
        '0000:81:00.0': (R, {'host_critical'}),  # / on md RAID1
        '0000:82:00.0': (R, {'host_critical'}),
        '0000:c1:00.0': (R, {'host_critical', 'group_critical'}),  # bond0
        '0000:c1:00.1': (R, {'host_critical', 'group_critical'}),
    }),
    'xeon_acs_sriov': ([('db', True, ['0000:18:02.0'])], {
        '0000:00:00.0': (R, {'host_critical'}),
        '0000:18:00.0': (R, {'host_critical'}),  # VLAN on port 0
        '0000:18:00.1': (N, set()),
        '0000:18:02.0': (OK, set()),  # db's VF
        '0000:18:02.1': (N, set()),
        '0000:3b:00.0': (R, {'group_open'}),  # its vGPU held by vdi-1 (not a libvirt guest of this URI)
        '0000:5e:00.0': (R, {'host_critical'}),
    }),
    'proxmox_zfs_ovs': ([], {
        '0000:00:00.0': (R, {'host_critical'}),
        '0000:01:00.0': (R, {'host_critical'}),  # ZFS mirror member of rpool
        '0000:02:00.0': (R, {'host_critical'}),
        '0000:03:00.0': (N, {'host_mounted'}),  # /var/lib/vz: a warning
        '0000:04:00.0': (R, {'host_critical'}),  # the only port of OVS bridge vmbr0
        '0000:04:00.1': (N, set()),
    }),
    'x710_shared': ([], {
        '0000:00:00.0': (R, {'host_critical'}),
        '0000:00:17.0': (R, {'host_critical'}),
        '0000:01:00.0': (R, {'host_critical'}),
        '0000:01:00.1': (R, {'group_critical'}),  # its group peer carries the default route
    }),
}

DOMAIN = """<domain type='test'><name>%s</name><memory>1048576</memory><os><type arch='x86_64'>hvm</type></os>
<devices>%s</devices>%s</domain>"""
HOSTDEV = """<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x%s' bus='0x%s'
slot='0x%s' function='0x%s'/></source></hostdev>"""


def _domain_xml(name, running, addresses):
    hostdevs = ''.join(HOSTDEV % tuple(address.replace('.', ':').split(':')) for address in addresses)
    return DOMAIN % (name, hostdevs, '' if running else '<test:runstate>5</test:runstate>')


def _usage(guests):
    return domain_usage.usage_from_domains([
        {'name': name, 'live_xml': _domain_xml(name, True, addresses) if running else None,
         'config_xml': _domain_xml(name, True, addresses)} for name, running, addresses in guests])


def _report(capsys, root, guests, tmp_path):
    """host_devices_info's entries by address; its libvirt view comes from a test-driver state."""
    params = {'root': root, 'libvirt': False}
    if guests:
        state = tmp_path / 'libvirt.xml'
        state.write_text("<node xmlns:test='http://libvirt.org/schemas/domain/test/1.0'>%s</node>"
                         % ''.join(_domain_xml(*guest) for guest in guests))
        params = {'root': root, 'uri': 'test://%s' % state}
    result = run_module(capsys, host_devices_info, **params)
    assert result['rc'] == 0, result
    return result, {entry['address']: entry for entry in result['pci_devices']}


def _guards(entry):
    if entry['verdict'] == R:
        return {reason['guard'] for reason in entry['reasons']}
    return {guard for guard in ('host_input', 'host_mounted', 'group_held_config')
            if any(_WARNING_WORDS[guard] in warning for warning in entry['warnings'])}


_WARNING_WORDS = {'host_input': "the host's input devices", 'host_mounted': 'mounted filesystem',
                  'group_held_config': 'cannot run at the same time'}


@pytest.mark.parametrize('name', sorted(LAYOUTS))
def test_verdicts_guards_and_plans_agree(capsys, tmp_path, monkeypatch, name):
    guests, expected = LAYOUTS[name]
    if guests and not _libvirt_available():
        pytest.skip('libvirt-python is not installed')
    root, kernel = machine(tmp_path, monkeypatch, name)
    host = sysfs_source.read_host(root)
    result, report = _report(capsys, root, guests, tmp_path)
    assert result['problems'] == []
    usage = _usage(guests)
    bridges = {address for address, dev in host.pci.items() if dev.role == model.BRIDGE}
    assert set(report) == set(expected) | bridges
    for address in sorted(bridges):
        assert report[address]['verdict'] == R and 'endpoint' in _guards(report[address])
    for address, (verdict, guards) in sorted(expected.items()):
        entry = report[address]
        assert (entry['verdict'], _guards(entry)) == (verdict, guards), (address, entry)
        # the guards of domain_devices, for the guest that has the device (re-applying its own definition) or a
        # new one asking for it; a group peer left on a host driver is the 'group' error (the verdict's step)
        owner = [guest for guest, _running, addresses in guests if address in addresses]
        check = preflight.check_assignment(host, [{'type': 'pci', 'address': address}],
                                           owner[0] if owner else 'new-guest', usage)
        errors = {finding['guard'] for finding in check.findings if finding['severity'] == 'error'}
        if verdict == R:
            assert errors - {'group'} >= {guard for guard in guards
                                          if host_guards.GUARDS[guard].assignment == host_guards.ERROR}, (address, errors)
        else:
            peer_steps = [step for step in entry['steps'] if step.get('address') != address]
            assert errors == ({'group'} if peer_steps else set()), (address, check.errors)
        # vfio_bind's plan: what it would bind, never a bridge or host bridge
        together = [address] + host.bindable_peers(address)
        planned = run_module(capsys, vfio_bind, check=True, root=root, addresses=[address], whole_group=True)
        already_bound = entry['driver'] == 'vfio-pci' and entry['driver_override'] == 'vfio-pci'
        if verdict == R and not (already_bound and guards <= {'group_held_live', 'group_open'}):
            assert planned['rc'] == 1, (address, planned)
            refused = expect_refused(capsys, vfio_bind, root, kernel, addresses=[address], whole_group=True)
            for guard in guards:
                if host_guards.GUARDS[guard].assignment == host_guards.ERROR:
                    # with whole_group the critical peer is in the plan itself: refused as host_critical
                    shown = 'host_critical' if guard == 'group_critical' else guard
                    assert '[guard %s' % shown in refused['msg'], (address, refused['msg'])
            for member in host.group_members(address):
                assert member in refused['msg'], (address, member, refused['msg'])
        else:
            assert planned['rc'] == 0, (address, planned)
            assert [device['address'] for device in planned['devices']] == together
            assert planned['changed'] is (not already_bound)
    assert kernel.writes == []


def _libvirt_available():
    from ansible_collections.virtdev.libvirt.plugins.module_utils import _libvirt
    return _libvirt.HAS_LIBVIRT


def test_dummy_host_bridge_is_never_bound_even_forced(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'b450_apu')
    result = run_module(capsys, vfio_bind, root=root, addresses=['0000:04:00.0'], whole_group=True, timeout=0)
    assert result['rc'] == 0, result
    assert [device['address'] for device in result['devices']] == ['0000:04:00.0', '0000:04:00.3']
    assert (kernel.driver('0000:04:00.0'), kernel.driver('0000:04:00.3'), kernel.driver('0000:00:07.0')) == \
        ('vfio-pci', 'vfio-pci', None)
    # forced onto the group of the root NVMe: the NIC and NVMe are planned, the dummy host bridge and the
    # GPP bridges are not
    forced = run_module(capsys, vfio_bind, check=True, root=root, addresses=['0000:02:00.0'], whole_group=True,
                        force=True)
    assert forced['rc'] == 0 and [device['address'] for device in forced['devices']] == \
        ['0000:02:00.0', '0000:01:00.0']


def test_shared_group_defined_elsewhere_is_a_warning_naming_both_guests(tmp_path):
    root = machine_root(tmp_path, 'epyc_gpu', no_processes=True)
    host = sysfs_source.read_host(root)
    usage = _usage([('train-1', False, ['0000:43:00.0'])])
    check = preflight.check_assignment(host, [{'type': 'pci', 'address': '0000:44:00.0'}], 'train-2', usage)
    assert check.errors == []
    assert any('guest train-1: guest train-2 and train-1 cannot run at the same time' in warning and
               '[guard group_held_config]' in warning for warning in check.warnings), check.warnings
    facts = host_facts.host_facts(host, usage)
    group = [entry for entry in facts['iommu_groups'] if entry['group'] == 10][0]
    assert group['held_by'] == [{'domain': 'train-1', 'live': False}]
    # running: refused, naming both guests; train-1 itself may keep its own device
    usage = _usage([('train-1', True, ['0000:43:00.0'])])
    check = preflight.check_assignment(host, [{'type': 'pci', 'address': '0000:44:00.0'}], 'train-2', usage)
    assert len(check.errors) == 1 and 'running guest train-1 holds' in check.errors[0] and \
        'start guest train-2' in check.errors[0] and '[guard group_held_live]' in check.errors[0]
    assert preflight.check_assignment(host, [{'type': 'pci', 'address': '0000:43:00.0'}], 'train-1', usage).ok
    facts = host_facts.host_facts(host, usage)
    group = [entry for entry in facts['iommu_groups'] if entry['group'] == 10][0]
    assert group['held_by'] == [{'domain': 'train-1', 'live': True}]


def machine_root(tmp_path, name, no_processes=False):
    from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import build

    def mutate(spec):
        if no_processes:
            spec['processes'] = []
    return build(name, tmp_path, mutate)


def test_busy_vgpu_parent_is_refused_before_any_write(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'xeon_acs_sriov')
    result = expect_refused(capsys, vfio_bind, root, kernel, addresses=['0000:3b:00.0'])
    assert 'its mediated device 8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e is held by guest vdi-1' in result['msg']
    assert 'the unbind would block' in result['msg'] and '[guard group_open]' in result['msg']
    # the vGPU itself cannot be removed either, and the VF count of a PF whose VF db holds cannot change
    result = expect_refused(capsys, mdev, root, kernel, uuid='8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e', state='absent')
    assert 'guest vdi-1 (pid 6200' in result['msg']
    result = expect_refused(capsys, sriov_vfs, root, kernel, pf='0000:18:00.0', num_vfs=4)
    assert 'VF 0000:18:02.0 is in use' in result['msg'] and 'guest db (pid 6100' in result['msg']


def test_unresolved_zfs_root_is_a_reported_problem(capsys, tmp_path):
    def mutate(spec):
        spec['udev'] = {}
    from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import build
    root = build('proxmox_zfs_ovs', tmp_path, mutate)
    result = run_module(capsys, host_devices_info, root=root, libvirt=False)
    assert any('the block devices behind / (zfs on rpool/ROOT/pve-1) were not found' in problem
               for problem in result['problems']), result['problems']


def test_ovs_bridge_without_ports_is_a_reported_problem(capsys, tmp_path):
    def mutate(spec):
        spec['net'] = [nic for nic in spec['net'] if nic['iface'] != 'ovs-system'] + [{'iface': 'ovs-system'}]
    from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import build
    root = build('proxmox_zfs_ovs', tmp_path, mutate)
    result = run_module(capsys, host_devices_info, root=root, libvirt=False)
    assert any('the default route goes through vmbr0, which leads to no PCI network device' in problem
               for problem in result['problems']), result['problems']
    assert os.path.isdir(root)


def test_btrfs_multi_device_root_and_a_swap_file(tmp_path):
    """/ on a btrfs RAID1 over two NVMe drives: both controllers are refused, although /proc/mounts names one;
    a swap file on the third drive's filesystem refuses that controller too."""
    from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import build

    def mutate(spec):
        spec['udev'] = {}
        spec['mounts'] = ['/dev/nvme0n1p3 / btrfs rw', '/dev/nvme2n1p1 /srv ext4 rw']
        spec['btrfs'] = {'0e5c4a7d-1111-2222-3333-444455556666': ['nvme0n1p3', 'nvme1n1p3']}
        spec['swaps'] = ['/srv/swapfile']
    host = sysfs_source.read_host(build('proxmox_zfs_ovs', tmp_path, mutate))
    assert host.problems == []
    assert host.critical['0000:01:00.0'] == ['the controller of / (btrfs on /dev/nvme0n1p3)']
    assert host.critical['0000:02:00.0'] == ['the controller of / (btrfs on /dev/nvme0n1p3)']
    assert host.critical['0000:03:00.0'] == ['the controller of swap file /srv/swapfile (ext4 on /dev/nvme2n1p1)']
    assert host.mounted['0000:03:00.0'] == ['the controller of /srv (ext4 on /dev/nvme2n1p1)']
    # refused outright, so the mount warning is not repeated
    fired = [finding.guard for finding in host_guards.assess_pci(host, '0000:03:00.0')]
    assert 'host_critical' in fired and 'host_mounted' not in fired


def test_multipath_root_protects_every_path(tmp_path):
    """/ on a multipath device over two HBAs (dm-multipath, like LVM, md and dm-crypt, lists its paths as
    slaves): both controllers are refused."""
    from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import build

    def mutate(spec):
        spec['pci'].append({'address': '0000:5f:00.0', 'class': '0x010700', 'vendor': '0x1000', 'device': '0x0097',
                            'group': 27, 'driver': 'mpt3sas'})
        spec['block'].append({'name': 'sdb', 'device': '0000:5f:00.0', 'subpath': 'host1/target1:0:0/1:0:0:0'})
        spec['dm'] = [{'name': 'dm-0', 'dm_name': 'mpatha', 'slaves': ['sda', 'sdb']}]
        spec['mounts'] = ['/dev/mapper/mpatha / xfs rw']
    host = sysfs_source.read_host(build('xeon_acs_sriov', tmp_path, mutate))
    assert host.problems == []
    assert host.critical['0000:5e:00.0'] == host.critical['0000:5f:00.0'] == \
        ['the controller of / (xfs on /dev/mapper/mpatha)']
