# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host model, verdicts and passthrough guards, on fixture trees written by tests/unit/sysfs_trees.py."""

from __future__ import annotations

import os

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import facts as host_facts
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import guards
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import model
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import node_device_xml
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import preflight
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import sysfs_source
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import below_root
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import domain_usage
from ansible_collections.virtdev.libvirt.plugins.module_utils import _pci_ids
from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import FIXTURES, Tree, build

GPU, GPU_AUDIO, IGPU = '0000:01:00.0', '0000:01:00.1', '0000:00:02.0'
XHCI, SATA, NVME, NIC_VFIO, ONBOARD_NIC = '0000:00:14.0', '0000:00:17.0', '0000:02:00.0', '0000:03:00.0', '0000:00:1f.6'
PF0, PF1, VF0, VF1, VF2, VF3 = ('0000:41:00.0', '0000:41:00.1', '0000:41:02.0', '0000:41:02.1', '0000:41:02.2',
                                '0000:41:02.3')
GVT_MDEV, VGPU_MDEV = 'a297db4a-f4c2-11e6-90f6-d3b88d6c9525', '8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e'


def host_of(name, tmp_path, mutate=None, names=False):
    root = build(name, tmp_path, mutate)
    ids = _pci_ids.PciIds.load(_pci_ids.find_pci_ids(root)) if names else None
    return sysfs_source.read_host(root, ids)


@pytest.fixture(scope='module')
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp('trees')
    return {name: host_of(name, base, names=True)
            for name in ('desktop', 'server', 'sriov', 'mdev', 'iommu_off', 'malformed')}


def guard_names(result):
    return sorted(reason['guard'] for reason in result['reasons'])


# -- normalize_pci_address -----------------------------------------------------------------------------

@pytest.mark.parametrize('text, expected', [
    ('0000:01:00.0', '0000:01:00.0'),
    ('0000:0A:1F.7', '0000:0a:1f.7'),
    ('01:00.0', '0000:01:00.0'),
    ('  0000:00:02.0\n', '0000:00:02.0'),
    ('10000:01:00.0', '10000:01:00.0'),
    ('1D0000:e3:00.1', '1d0000:e3:00.1'),
    ('ffffffff:ff:1f.7', 'ffffffff:ff:1f.7'),
    ('0000:1:2.3', '0000:01:02.3'),
])
def test_normalize_pci_address_accepts(text, expected):
    assert _ids.pci_text(text, None) == expected


@pytest.mark.parametrize('text, reason', [
    ('01:00', 'is not a PCI address'),
    ('0000:01:20.0', 'slot 20 is greater than 1f'),
    ('0000:01:00.8', 'function 8 is greater than 7'),
    ('../x', 'is not a PCI address'),
    ('0000:100:00.0', 'bus 100 is greater than ff'),
    ('000:01:00.0', "domain '000' must have 4 to 8 hex digits"),
    ('123456789:01:00.0', 'must have 4 to 8 hex digits'),
    ('0000:01:00.0/../../etc', 'is not a PCI address'),
    ('', 'is not a PCI address'),
    ('pci_0000_01_00_0', 'is not a PCI address'),
])
def test_normalize_pci_address_rejects_naming_the_value(text, reason):
    with pytest.raises(ValueError) as caught:
        _ids.pci_text(text, None)
    assert repr(text) in str(caught.value)
    assert reason in str(caught.value)


@pytest.mark.parametrize('value', [None, 1, ['0000:01:00.0']])
def test_normalize_pci_address_rejects_non_strings(value):
    with pytest.raises(ValueError, match='is not a string'):
        _ids.pci_text(value, None)


@pytest.mark.parametrize('value, expected', [('0x8086', '0x8086'), ('8086', '0x8086'), ('0X10DE', '0x10de'),
                                             ('1b', '0x001b'), (0x10de, '0x10de'), (None, None)])
def test_normalize_id(value, expected):
    assert _ids.hex_id(value, 'vendor') == expected


@pytest.mark.parametrize('value', ['xyz', '0x12345', -1, 0x10000, True, '80 86'])
def test_normalize_id_rejects(value):
    with pytest.raises(ValueError, match='vendor'):
        _ids.hex_id(value, 'vendor')


# -- the model -------------------------------------------------------------------------------------------

def test_desktop_model(trees):
    host = trees['desktop']
    gpu = host.pci[GPU]
    ids = (gpu.vendor, gpu.device, gpu.subsystem_vendor, gpu.subsystem_device)
    assert ids == ('0x10de', '0x1b80', '0x1043', '0x8591')
    assert gpu.class_code == '0x030000' and gpu.role == model.DISPLAY
    assert gpu.driver == 'nouveau' and gpu.iommu_group == 1 and gpu.numa_node == 0
    assert gpu.boot_vga is False and gpu.reset_methods == ['bus']
    assert gpu.parent == '0000:00:01.0' and gpu.endpoint
    assert gpu.names == {'vendor': 'NVIDIA Corporation', 'device': 'GP104 [GeForce GTX 1080]',
                         'subsystem': 'GeForce GTX 1080 Founders Edition', 'class': 'VGA compatible controller'}
    assert host.pci['0000:00:01.0'].children == [GPU, GPU_AUDIO]
    assert not host.pci['0000:00:01.0'].endpoint
    assert host.groups[1] == ['0000:00:01.0', GPU, GPU_AUDIO]
    assert host.group_types[1] == 'identity'
    assert host.pci[IGPU].boot_vga is True
    assert host.pci['0000:00:1f.3'].reset_methods == []
    assert host.pci['0000:00:1f.0'].driver is None
    assert host.problems == []


def test_desktop_iommu_facts(trees):
    iommu = trees['desktop'].iommu
    assert iommu['enabled'] is True and iommu['groups'] == 9
    assert iommu['kind'] == 'intel' and iommu['units'] == ['dmar0', 'dmar1'] and iommu['firmware_table'] == 'DMAR'
    assert iommu['interrupt_remapping'] is True and iommu['allow_unsafe_interrupts'] is False
    assert iommu['vfio_device'] is True and iommu['vfio_pci_driver'] is True and iommu['iommufd_device'] is False
    assert iommu['passthrough_mode'] is True
    assert iommu['cmdline'] == {'intel_iommu': 'on', 'iommu': 'pt'}
    assert iommu['modules']['vfio_pci'] is True and iommu['modules']['kvm_amd'] is False


def test_desktop_usb(trees):
    usb = trees['desktop'].usb
    assert sorted(usb) == ['1-1', '1-2', '1-3', '1-4', '1-4.1', 'usb1']
    keyboard = usb['1-1']
    assert (keyboard.vendor, keyboard.product, keyboard.bus, keyboard.device) == ('0x046d', '0xc31c', 1, 2)
    assert keyboard.controller == XHCI and keyboard.manufacturer == 'Logitech'
    assert usb['usb1'].root_hub and usb['1-4'].hub and not keyboard.hub
    assert trees['desktop'].critical_usb == {'1-3': ['the USB device holding /boot/efi (/dev/sdb1)']}


def test_host_critical_detection(trees):
    critical = trees['desktop'].critical
    assert critical[NVME] == ['the controller of / (ext4 on /dev/mapper/vg-root)',
                              'the controller of /boot (ext4 on /dev/nvme0n1p1)']
    assert critical[ONBOARD_NIC] == ['the network device of the default route (br0)']
    assert critical[IGPU] == ['the boot VGA device (boot_vga=1): the host console']
    assert critical[XHCI] == ['the controller of /boot/efi (vfat on /dev/sdb1)']
    assert critical['0000:00:00.0'] == ['a chipset function (host bridge, class 0x060000)']
    assert critical['0000:00:1f.0'] == ['a chipset function (ISA bridge, class 0x060100)']
    assert critical['0000:00:1f.4'] == ['a chipset function (SMBus controller, class 0x0c0500)']
    assert SATA not in critical and '0000:00:1d.0' not in critical  # /home is not critical; bridges are skipped
    server = trees['server'].critical
    assert server['0000:01:00.0'] == server['0000:01:00.1'] == ['the network device of the default route (bond0.42)']
    assert server['10000:01:00.0'][0] == 'the controller of / (xfs on /dev/nvme0n1p2)'
    assert server['0000:00:0e.0'][0] == 'upstream of the controller of / (xfs on /dev/nvme0n1p2)'
    sriov = trees['sriov'].critical
    assert sriov['0000:42:00.0'] == ['the controller of / (ext4 on /dev/root)']
    assert sriov['0000:00:00.2'] == ['a chipset function (IOMMU, class 0x080600)']
    assert sriov[PF1] == ['the network device of the default route (ens2f1)']
    assert PF0 not in sriov


def test_root_on_dm_found_by_name_without_dev_link(tmp_path):
    """/dev/mapper/NAME missing in the tree: the dm device is found through sys/class/block/*/dm/name."""
    root = build('desktop', tmp_path)
    os.unlink(os.path.join(root, 'dev/mapper/vg-root'))
    host = sysfs_source.read_host(root)
    assert host.critical[NVME][0] == 'the controller of / (ext4 on /dev/mapper/vg-root)'


def test_unknown_root_block_device_is_reported(tmp_path):
    def mutate(spec):
        spec['mounts'] = ['/dev/sdz1 / ext4 rw', 'rpool/ROOT /usr zfs rw']
    host = host_of('iommu_off', tmp_path, mutate)
    # a root whose backing devices cannot be found is a reported problem, ZFS included (issue: never silence)
    assert host.problems == [
        'the block devices behind / (ext4 on /dev/sdz1) were not found; their controllers are not known and not '
        'protected',
        'the block devices behind /usr (zfs on rpool/ROOT) were not found (no block device with udev '
        'ID_FS_TYPE=zfs_member and ID_FS_LABEL=rpool under run/udev/data); their controllers are not known and not '
        'protected']
    assert '0000:00:17.0' not in host.critical


def test_sriov_model(trees):
    host = trees['sriov']
    pf = host.pci[PF0]
    assert (pf.sriov_totalvfs, pf.sriov_numvfs, pf.vfs) == (64, 4, [VF0, VF1, VF2, VF3])
    assert host.pci[VF2].physfn == PF0 and host.pci[VF2].numa_node == 1
    assert host.pci[PF1].vfs == [] and host.pci[PF1].sriov_numvfs == 0
    assert host.iommu['kind'] == 'amd' and host.iommu['firmware_table'] == 'IVRS'


def test_mdev_model(trees):
    host = trees['mdev']
    types = {(t.parent, t.type_id): t for dev in host.pci.values() for t in dev.mdev_types}
    gvt = types[(IGPU, 'i915-GVTg_V5_4')]
    assert (gvt.name, gvt.available_instances, gvt.device_api, gvt.devices) == ('GVTg_V5_4', 1, 'vfio-pci', [GVT_MDEV])
    assert types[('0000:01:00.0', 'nvidia-223')].available_instances == 0
    assert host.mdevs[VGPU_MDEV].as_dict() == {'uuid': VGPU_MDEV, 'parent': '0000:01:00.0', 'type': 'nvidia-222'}
    assert host.mdevs_of(IGPU) == [GVT_MDEV]


def test_malformed_tree_is_reported_not_raised(trees):
    host = trees['malformed']
    assert sorted(host.problems) == sorted([
        "IOMMU group 4: member 'platform-thing' is not a PCI device; ignored",
        'sys/kernel/iommu_groups/abc: an IOMMU group directory whose name is not a number; ignored',
        'sys/bus/pci/devices/0000:00:06.0: a dangling link (../../../devices/pci0000:00/0000:00:06.0); ignored',
        'sys/bus/pci/devices/README: not a PCI address; ignored',
        'IOMMU group 4 lists 0000:00:09.0, which is not a PCI device on this host',
        '0000:00:03.0: the driver link points to ../../../bus/pci/drivers/ghost, which does not exist '
        '(dangling link)',
        "0000:00:04.0: the class file is missing or not a hex number ('garbage')",
    ])
    assert sorted(host.pci) == ['0000:00:02.0', '0000:00:03.0', '0000:00:04.0', '0000:00:05.0']
    assert host.pci['0000:00:03.0'].driver is None
    assert host.groups == {1: ['0000:00:02.0'], 2: ['0000:00:03.0'], 3: ['0000:00:04.0'],
                           4: ['0000:00:05.0', '0000:00:09.0']}
    assert host.critical == {}  # no /proc/mounts, no routes


def test_empty_root_does_not_raise(tmp_path):
    host = sysfs_source.read_host(str(tmp_path))
    assert host.pci == {} and host.iommu['enabled'] is False
    assert host.problems == ['%s has no sys/bus/pci: not a Linux sysfs' % os.path.join(str(tmp_path), 'sys')]
    assert host_facts.host_facts(host)['summary'] == {'ready': 0, 'needs_preparation': 0, 'refused': 0}


def test_sysroot_never_leaves_the_root(tmp_path):
    tree = Tree(str(tmp_path))
    tree.write('etc/target', 'inside')
    os.makedirs(str(tmp_path / 'a'))
    os.symlink('/etc/target', str(tmp_path / 'a' / 'absolute'))
    os.symlink('../../../../../../etc/target', str(tmp_path / 'a' / 'climbing'))
    os.symlink('loop2', str(tmp_path / 'a' / 'loop1'))
    os.symlink('loop1', str(tmp_path / 'a' / 'loop2'))
    sysroot = below_root.SysRoot(str(tmp_path))
    assert sysroot.resolve('a/absolute') == 'etc/target'
    assert sysroot.resolve('a/climbing') == 'etc/target'
    assert sysroot.read('a/absolute') == 'inside'  # the tree's /etc/target, not the machine's
    assert sysroot.read('a/climbing') == 'inside'
    assert sysroot.listdir('a') == ['absolute', 'climbing', 'loop1', 'loop2']
    assert sysroot.read('a/loop1') is None and sysroot.listdir('a/loop1') == []
    assert sysroot.resolve('a/loop1') is None
    assert sysroot.resolve('a/missing') is None


# -- verdicts ----------------------------------------------------------------------------------------

VERDICTS = {
    'desktop': {
        '0000:00:00.0': (guards.REFUSED, ['host_critical']),
        '0000:00:01.0': (guards.REFUSED, ['endpoint']),
        IGPU: (guards.REFUSED, ['host_critical']),
        XHCI: (guards.REFUSED, ['host_critical']),
        SATA: (guards.NEEDS_PREPARATION, []),
        '0000:00:1c.0': (guards.REFUSED, ['endpoint']),
        '0000:00:1d.0': (guards.REFUSED, ['endpoint', 'group_critical']),
        '0000:00:1f.0': (guards.REFUSED, ['group_critical', 'host_critical']),
        '0000:00:1f.3': (guards.REFUSED, ['group_critical', 'group_critical']),
        '0000:00:1f.4': (guards.REFUSED, ['group_critical', 'host_critical']),
        ONBOARD_NIC: (guards.REFUSED, ['host_critical']),
        GPU: (guards.NEEDS_PREPARATION, []),
        GPU_AUDIO: (guards.NEEDS_PREPARATION, []),
        NVME: (guards.REFUSED, ['host_critical', 'host_critical']),
        NIC_VFIO: (guards.READY, []),
    },
    'server': {
        '0000:00:00.0': (guards.REFUSED, ['host_critical']),
        '0000:00:01.0': (guards.REFUSED, ['endpoint']),
        '0000:00:0e.0': (guards.REFUSED, ['host_critical', 'host_critical']),
        '0000:00:1c.0': (guards.REFUSED, ['endpoint']),
        '0000:01:00.0': (guards.REFUSED, ['host_critical']),
        '0000:01:00.1': (guards.REFUSED, ['host_critical']),
        '0000:02:00.0': (guards.REFUSED, ['endpoint']),
        '0000:03:01.0': (guards.NEEDS_PREPARATION, []),
        '0000:03:02.0': (guards.NEEDS_PREPARATION, []),
        '10000:00:02.0': (guards.REFUSED, ['endpoint', 'iommu']),
        '10000:01:00.0': (guards.REFUSED, ['host_critical', 'host_critical', 'iommu']),
    },
    'sriov': {
        '0000:00:00.0': (guards.REFUSED, ['host_critical']),
        '0000:00:00.2': (guards.REFUSED, ['host_critical']),
        '0000:40:03.1': (guards.REFUSED, ['endpoint']),
        PF0: (guards.NEEDS_PREPARATION, []),
        PF1: (guards.REFUSED, ['host_critical']),
        VF0: (guards.NEEDS_PREPARATION, []),
        VF1: (guards.READY, []),
        VF2: (guards.READY, []),
        VF3: (guards.READY, []),
        '0000:42:00.0': (guards.REFUSED, ['host_critical']),
    },
    'mdev': {
        '0000:00:00.0': (guards.REFUSED, ['host_critical']),
        '0000:00:01.0': (guards.REFUSED, ['endpoint']),
        IGPU: (guards.REFUSED, ['host_critical']),
        '0000:00:17.0': (guards.REFUSED, ['host_critical']),
        '0000:01:00.0': (guards.NEEDS_PREPARATION, []),
    },
    'iommu_off': {
        '0000:00:00.0': (guards.REFUSED, ['host_critical', 'iommu']),
        IGPU: (guards.REFUSED, ['host_critical', 'iommu']),
        XHCI: (guards.REFUSED, ['iommu']),
        SATA: (guards.REFUSED, ['host_critical', 'iommu']),
    },
    'malformed': {
        '0000:00:02.0': (guards.NEEDS_PREPARATION, []),
        '0000:00:03.0': (guards.REFUSED, ['sysfs']),
        '0000:00:04.0': (guards.REFUSED, ['sysfs']),
        '0000:00:05.0': (guards.READY, []),
    },
}


@pytest.mark.parametrize('machine', sorted(VERDICTS))
def test_every_verdict(trees, machine):
    host = trees[machine]
    assert sorted(host.pci) == sorted(VERDICTS[machine])  # every device of the fixture is judged
    for address, (status, expected_guards) in VERDICTS[machine].items():
        result = guards.verdict(host, address)
        assert (address, result['verdict'], guard_names(result)) == (address, status, expected_guards)
        if status == guards.REFUSED:
            assert result['steps'] == []
        elif status == guards.NEEDS_PREPARATION:
            assert result['steps']
        else:
            assert result['steps'] == [] and result['reasons'] == []


def messages(result):
    return [reason['message'] for reason in result['reasons']]


def test_refusal_reasons_name_the_cause(trees):
    desktop = trees['desktop']
    assert messages(guards.verdict(desktop, IGPU)) == ['is host-critical: the boot VGA device (boot_vga=1): the host console']
    assert messages(guards.verdict(desktop, NVME)) == [
        'is host-critical: the controller of / (ext4 on /dev/mapper/vg-root)',
        'is host-critical: the controller of /boot (ext4 on /dev/nvme0n1p1)']
    assert messages(guards.verdict(desktop, ONBOARD_NIC)) == [
        'is host-critical: the network device of the default route (br0)']
    assert messages(guards.verdict(desktop, '0000:00:01.0')) == [
        'is a PCI-to-PCI bridge (class 0x060400) with 0000:01:00.0, 0000:01:00.1 behind it, not an endpoint']
    assert messages(guards.verdict(desktop, '0000:00:1f.3')) == [
        'shares IOMMU group 6 with 0000:00:1f.0 (ISA bridge, driver none), which is host-critical: a chipset '
        'function (ISA bridge, class 0x060100)',
        'shares IOMMU group 6 with 0000:00:1f.4 (SMBus controller, driver i801_smbus), which is host-critical: '
        'a chipset function (SMBus controller, class 0x0c0500)']
    assert messages(guards.verdict(desktop, '0000:00:1d.0'))[1].startswith(
        'shares IOMMU group 5 with 0000:02:00.0 (storage controller, driver nvme), which is host-critical: the '
        'controller of /')
    assert messages(guards.verdict(trees['server'], '10000:01:00.0'))[2] == \
        'has no IOMMU group although the IOMMU is on'
    assert messages(guards.verdict(trees['malformed'], '0000:00:03.0')) == [
        '0000:00:03.0: the driver link points to ../../../bus/pci/drivers/ghost, which does not exist '
        '(dangling link)']


def test_iommu_off_reason(trees):
    result = guards.verdict(trees['iommu_off'], XHCI)
    assert result['reasons'] == [{
        'guard': 'iommu', 'overridable': True,
        'message': 'the IOMMU is off: no groups under /sys/kernel/iommu_groups (the firmware has an ACPI DMAR '
                   'table); add intel_iommu=on to the kernel command line'}]
    iommu = trees['iommu_off'].iommu
    assert (iommu['enabled'], iommu['kind'], iommu['vfio_device'], iommu['interrupt_remapping']) == \
        (False, 'intel', False, False)
    assert iommu['cmdline'] == {'intel_iommu': 'off'}


def test_preparation_steps(trees):
    gpu = guards.verdict(trees['desktop'], GPU)
    assert [step['message'] for step in gpu['steps']] == [
        'bind 0000:01:00.0 (now nouveau) to vfio-pci', 'bind group member 0000:01:00.1 (now snd_hda_intel) to vfio-pci']
    assert [(step['action'], step['address'], step['current_driver']) for step in gpu['steps']] == [
        ('bind_vfio', GPU, 'nouveau'), ('bind_vfio', GPU_AUDIO, 'snd_hda_intel')]
    nic = guards.verdict(trees['server'], '0000:03:01.0')
    assert [step['address'] for step in nic['steps']] == ['0000:03:01.0', '0000:03:02.0']
    assert nic['warnings'] == ['has no reset method: the guest may find it in a dirty state after a reboot']
    pf = guards.verdict(trees['sriov'], PF0)
    assert [step['action'] for step in pf['steps']] == ['bind_vfio', 'disable_sriov']
    assert pf['steps'][1]['message'] == 'set sriov_numvfs of 0000:41:00.0 to 0'
    assert guards.verdict(trees['sriov'], VF0)['steps'] == [
        {'action': 'bind_vfio', 'address': VF0, 'current_driver': 'iavf',
         'message': 'bind 0000:41:02.0 (now iavf) to vfio-pci'}]


def test_group_members_on_vfio_or_stub_or_unbound_are_viable(tmp_path):
    def mutate(spec):
        for entry in spec['pci']:
            if entry['address'] == GPU_AUDIO:
                entry['driver'] = 'pci-stub'
            if entry['address'] == GPU:
                entry['driver'] = 'vfio-pci'
    host = host_of('desktop', tmp_path, mutate)
    assert guards.verdict(host, GPU)['verdict'] == guards.READY
    assert guards.verdict(host, GPU_AUDIO)['verdict'] == guards.NEEDS_PREPARATION  # pci-stub: viable, not assignable


def test_warnings_interrupt_remapping_acs_and_missing_vfio(tmp_path):
    def mutate(spec):
        spec['interrupts'] = 'plain'
        spec['cmdline'] += ' pcie_acs_override=downstream,multifunction'
        spec['iommu']['vfio_device'] = False
    host = host_of('desktop', tmp_path, mutate)
    result = guards.verdict(host, NIC_VFIO)
    assert result['verdict'] == guards.NEEDS_PREPARATION
    assert result['steps'] == [{'action': 'load_module', 'module': 'vfio-pci', 'message': 'load the vfio-pci module'}]
    assert result['warnings'] == [
        'the host has no interrupt remapping: vfio refuses the device unless '
        'vfio_iommu_type1.allow_unsafe_interrupts=1',
        'pcie_acs_override is on the kernel command line: the IOMMU groups do not show the real isolation']
    assert host.iommu['acs_override'] is True and host.iommu['interrupt_remapping'] is False


def test_companion_function_on_an_add_in_card(tmp_path):
    """A GPU whose audio function sits in another group (ACS on the card): the audio is a companion."""
    def mutate(spec):
        for entry in spec['pci']:
            if entry['address'] == GPU_AUDIO:
                entry['group'] = 9
    host = host_of('desktop', tmp_path, mutate)
    result = guards.verdict(host, GPU)
    assert result['verdict'] == guards.NEEDS_PREPARATION and len(result['steps']) == 1
    assert result['warnings'] == ['0000:01:00.1 (HD audio device, driver snd_hda_intel) is another function of the '
                                  'same device; guests usually need it too']


def test_every_guard_has_a_complete_row():
    for name, guard in guards.GUARDS.items():
        assert guard.name == name and guard.description
        assert guard.verdict in (guards.REFUSE, guards.PREPARE, guards.WARN, None)
        assert guard.assignment in (guards.ERROR, guards.WARNING, guards.IGNORE, guards.UNMANAGED_ERROR)
    never = sorted(name for name, guard in guards.GUARDS.items() if not guard.overridable)
    assert never == ['address', 'ambiguous', 'duplicate', 'endpoint', 'exists', 'group_held_live', 'group_open',
                     'ids', 'in_use_live', 'mdev_parent', 'pf_vf', 'source_exists', 'sriov', 'sysfs']
    with pytest.raises(KeyError):
        guards.Finding('no-such-guard', 'x')


# -- domain usage --------------------------------------------------------------------------------------

DOMAIN_XML = """<domain type='kvm'><name>%s</name><devices>
  <hostdev mode='subsystem' type='pci' managed='yes'>
    <source><address domain='0x0000' bus='0x41' slot='0x02' function='0x3'/></source>
  </hostdev>
  <hostdev mode='subsystem' type='usb'>
    <source><vendor id='0x046d'/><product id='0xC31C'/></source>
  </hostdev>
  <hostdev mode='subsystem' type='usb'>
    <source><address bus='1' device='6'/></source>
  </hostdev>
  <hostdev mode='subsystem' type='mdev' model='vfio-pci'>
    <source><address uuid='8C1BD7F6-5C0F-4C8B-9B7E-2F2A3B4C5D6E'/></source>
  </hostdev>
  <interface type='hostdev' managed='yes'>
    <source><address type='pci' domain='0x10000' bus='0x01' slot='0x00' function='0x0'/></source>
  </interface>
  <interface type='network'><source network='default'/></interface>
  <hostdev mode='capabilities' type='storage'><source><block>/dev/sdf</block></source></hostdev>
</devices></domain>"""


def test_usage_from_domains_live_and_config():
    usage = domain_usage.usage_from_domains([
        {'name': 'web', 'live_xml': DOMAIN_XML % 'web', 'config_xml': DOMAIN_XML % 'web'},
        {'name': 'db', 'live_xml': None, 'config_xml': DOMAIN_XML % 'db'},
        {'name': 'tmp', 'live_xml': "<domain><name>tmp</name><devices/></domain>", 'config_xml': None},
    ])
    both = [{'domain': 'web', 'live': True, 'config': True}, {'domain': 'db', 'live': False, 'config': True}]
    assert usage == {
        ('pci', '0000:41:02.3'): both,
        ('usb', '0x046d:0xc31c'): both,
        ('usb-address', '1.6'): both,
        ('mdev', VGPU_MDEV): both,
        ('pci', '10000:01:00.0'): both,
    }
    assert domain_usage.used_by(usage, ('pci', '0000:41:02.3'), exclude='web') == [both[1]]


def test_usage_counts_live_only_hotplug():
    live = DOMAIN_XML % 'web'
    config = "<domain><name>web</name><devices/></domain>"
    usage = domain_usage.usage_from_domains([{'name': 'web', 'live_xml': live, 'config_xml': config}])
    assert usage[('pci', '0000:41:02.3')] == [{'domain': 'web', 'live': True, 'config': False}]


def test_usage_rejects_broken_xml_naming_the_domain():
    with pytest.raises(ValueError, match='the config XML of domain bad'):
        domain_usage.usage_from_domains([{'name': 'bad', 'config_xml': '<domain>'}])


# -- check_assignment -----------------------------------------------------------------------------------

def check(host, requests, usage=None, force=False, domain='guest'):
    return preflight.check_assignment(host, requests, domain, usage or {}, force=force)


def test_gpu_with_its_audio_passes(trees):
    result = check(trees['desktop'], [{'type': 'pci', 'address': GPU, 'vendor': '0x10de', 'product': '1b80'},
                                      {'type': 'pci', 'address': '01:00.1'}])
    assert result.errors == [] and result.warnings == [] and result.ok


def test_gpu_alone_leaves_the_group_unviable(trees):
    result = check(trees['desktop'], [{'type': 'pci', 'address': GPU}])
    assert result.errors == [
        'requests[0] (pci 0000:01:00.0): shares IOMMU group 1 with 0000:01:00.1 (HD audio device, driver '
        'snd_hda_intel), which is still bound to a host driver [guard group] (force: true overrides it)']
    forced = check(trees['desktop'], [{'type': 'pci', 'address': GPU}], force=True)
    assert forced.errors == []
    assert forced.warnings == [
        'requests[0] (pci 0000:01:00.0): shares IOMMU group 1 with 0000:01:00.1 (HD audio device, driver '
        'snd_hda_intel), which is still bound to a host driver [guard group, overridden by force]']
    assert forced.findings[0]['overridden'] is True


def test_unmanaged_device_must_already_be_on_vfio(trees):
    result = check(trees['desktop'], [{'type': 'pci', 'address': SATA, 'managed': False}])
    assert result.errors == ['requests[0] (pci 0000:00:17.0): is bound to ahci, not to vfio-pci [guard bind] '
                             '(force: true overrides it)']
    assert check(trees['desktop'], [{'type': 'pci', 'address': SATA}]).errors == []
    assert check(trees['desktop'], [{'type': 'pci', 'address': NIC_VFIO, 'managed': False}]).errors == []


@pytest.mark.parametrize('address, message', [
    ('01:00', "'01:00' is not a PCI address"),
    ('0000:01:20.0', 'slot 20 is greater than 1f'),
    ('0000:01:00.8', 'function 8 is greater than 7'),
    ('0000:100:00.0', 'bus 100 is greater than ff'),
    ('../x', "'../x' is not a PCI address"),
])
def test_malformed_addresses_are_refused_even_with_force(trees, address, message):
    result = check(trees['desktop'], [{'type': 'pci', 'address': address, 'where': 'config[2]'}], force=True)
    assert len(result.errors) == 1
    assert result.errors[0].startswith('config[2] (pci %s): ' % address)
    assert message in result.errors[0] and result.errors[0].endswith('[guard address]')


def test_five_digit_domain_is_accepted_and_checked(trees):
    result = check(trees['server'], [{'type': 'pci', 'address': '10000:01:00.0'}])
    assert [finding['guard'] for finding in result.findings] == ['host_critical', 'host_critical', 'iommu']
    assert all('(pci 10000:01:00.0)' in error for error in result.errors)


def test_nonexistent_device(trees):
    result = check(trees['desktop'], [{'type': 'pci', 'address': '0000:09:00.0'}], force=True)
    assert result.errors == ['requests[0] (pci 0000:09:00.0): there is no PCI device 0000:09:00.0 on this host '
                             '(not under /sys/bus/pci/devices) [guard exists]']


def test_bridge_is_refused_even_with_force(trees):
    result = check(trees['server'], [{'type': 'pci', 'address': '0000:02:00.0'}], force=True)
    assert [finding['guard'] for finding in result.findings if finding['severity'] == 'error'] == ['endpoint']


def test_host_critical_needs_force_and_says_so(trees):
    plain = check(trees['desktop'], [{'type': 'pci', 'address': IGPU}])
    assert plain.errors == ['requests[0] (pci 0000:00:02.0): is host-critical: the boot VGA device (boot_vga=1): '
                            'the host console [guard host_critical] (force: true overrides it)']
    forced = check(trees['desktop'], [{'type': 'pci', 'address': IGPU}], force=True)
    assert forced.errors == [] and forced.warnings == [
        'requests[0] (pci 0000:00:02.0): is host-critical: the boot VGA device (boot_vga=1): the host console '
        '[guard host_critical, overridden by force]']


def test_iommu_off_is_overridable(trees):
    result = check(trees['iommu_off'], [{'type': 'pci', 'address': XHCI}])
    assert [finding['guard'] for finding in result.findings] == ['iommu']
    assert check(trees['iommu_off'], [{'type': 'pci', 'address': XHCI}], force=True).ok


def test_pinned_ids_must_match(trees):
    result = check(trees['desktop'], [{'type': 'pci', 'address': GPU, 'vendor': '0x8086', 'product': '0x1b80',
                                       'subsystem_vendor': '0x1043', 'subsystem_product': '0x0001'},
                                      {'type': 'pci', 'address': GPU_AUDIO}], force=True)
    assert result.errors == [
        'requests[0] (pci 0000:01:00.0): the vendor id is 0x10de on this host, not 0x8086 as configured [guard ids]',
        'requests[0] (pci 0000:01:00.0): the subsystem product id is 0x8591 on this host, not 0x0001 as configured '
        '[guard ids]']
    bad = check(trees['desktop'], [{'type': 'pci', 'address': GPU, 'vendor': 'nvidia'}])
    assert bad.errors == ["requests[0] (pci 0000:01:00.0): vendor: 'nvidia' is not a hex id like 0x8086 "
                          "[guard address]"]


def test_device_used_by_a_running_domain(trees):
    usage = {('pci', VF1): [{'domain': 'other', 'live': True, 'config': True}]}
    result = check(trees['sriov'], [{'type': 'pci', 'address': VF1}], usage, force=True)
    assert result.errors == ['requests[0] (pci 0000:41:02.1): it is assigned to running domain other '
                             '[guard in_use_live]']


def test_device_in_another_persistent_definition_needs_force(trees):
    usage = {('pci', VF1): [{'domain': 'other', 'live': False, 'config': True}]}
    result = check(trees['sriov'], [{'type': 'pci', 'address': VF1}], usage)
    assert result.errors == ['requests[0] (pci 0000:41:02.1): it is in the persistent definition of domain other '
                             '[guard in_use_config] (force: true overrides it)']
    assert check(trees['sriov'], [{'type': 'pci', 'address': VF1}], usage, force=True).ok


def test_own_usage_does_not_count(trees):
    usage = {('pci', VF1): [{'domain': 'guest', 'live': True, 'config': True}]}
    assert check(trees['sriov'], [{'type': 'pci', 'address': VF1}], usage).ok


def test_usage_built_from_domain_xml_refuses(trees):
    usage = domain_usage.usage_from_domains([{'name': 'web', 'live_xml': DOMAIN_XML % 'web', 'config_xml': None}])
    result = check(trees['sriov'], [{'type': 'sriov_vf', 'address': VF3}], usage)
    assert result.errors == ['requests[0] (sriov_vf 0000:41:02.3): it is assigned to running domain web '
                             '[guard in_use_live]']


def test_same_device_twice(trees):
    result = check(trees['sriov'], [{'type': 'pci', 'address': VF1}, {'type': 'sriov_vf', 'address': '41:02.1'}])
    assert result.errors == ['requests[1] (sriov_vf 41:02.1): the same device as requests[0] (pci 0000:41:02.1) '
                             '[guard duplicate]']


def test_pf_and_its_own_vf_together(trees):
    result = check(trees['sriov'], [{'type': 'pci', 'address': PF0}, {'type': 'sriov_vf', 'address': VF1}],
                   force=True)
    assert result.errors == ['requests[1] (sriov_vf 0000:41:02.1): is a VF of 0000:41:00.0, which is requested '
                             'too: a PF and its VFs are exclusive [guard pf_vf]']
    assert 'requests[0] (pci 0000:41:00.0): is an SR-IOV PF with 4 VFs enabled (0000:41:02.0, 0000:41:02.1, ' \
           '0000:41:02.2, 0000:41:02.3); they disappear when it leaves its driver [guard sriov_pf]' in result.warnings


def test_pf_while_a_vf_is_used_and_vf_while_the_pf_is_used(trees):
    usage = {('pci', VF2): [{'domain': 'db', 'live': False, 'config': True}],
             ('pci', PF0): [{'domain': 'router', 'live': True, 'config': True}]}
    pf = check(trees['sriov'], [{'type': 'pci', 'address': PF0}], usage, force=True)
    assert pf.errors == ['requests[0] (pci 0000:41:00.0): it is assigned to running domain router '
                         '[guard in_use_live]',
                         'requests[0] (pci 0000:41:00.0): its VF 0000:41:02.2 is assigned to domain db [guard pf_vf]']
    vf = check(trees['sriov'], [{'type': 'sriov_vf', 'address': VF1}], usage)
    assert vf.errors == ['requests[0] (sriov_vf 0000:41:02.1): its PF 0000:41:00.0 is assigned to domain router '
                         '[guard pf_vf]']


def test_sriov_interface_source_must_be_a_vf(trees):
    result = check(trees['sriov'], [{'type': 'sriov_vf', 'address': PF0}])
    assert 'requests[0] (sriov_vf 0000:41:00.0): is not an SR-IOV virtual function (it has no physfn link) ' \
           '[guard sriov]' in result.errors


def test_usb_requests(trees):
    host = trees['desktop']
    assert check(host, [{'type': 'usb', 'vendor': '0x046d', 'product': '0xc31c'}]).ok
    ambiguous = check(host, [{'type': 'usb', 'vendor': '1050', 'product': '0407'}], force=True)
    assert ambiguous.errors == ['requests[0] (usb 1050:0407): 2 USB devices are 0x1050:0x0407 (bus 1 device 3, '
                                'bus 1 device 6); give bus and device too [guard ambiguous]']
    assert check(host, [{'type': 'usb', 'vendor': '1050', 'product': '0407', 'bus': 1, 'device': 6}]).ok
    mismatch = check(host, [{'type': 'usb', 'vendor': '1050', 'product': '0407', 'bus': 1, 'device': 2}])
    assert mismatch.errors == ['requests[0] (usb 1050:0407): the device at bus 1 device 2 is 0x046d:0xc31c, not '
                               '0x1050:0x0407 as configured [guard ids]']
    absent = check(host, [{'type': 'usb', 'vendor': '0x1234', 'product': '0x5678'}])
    assert absent.errors == ['requests[0] (usb 0x1234:0x5678): no USB device 0x1234:0x5678 is plugged in '
                             '[guard usb_present] (force: true overrides it)']
    assert check(host, [{'type': 'usb', 'vendor': '0x1234', 'product': '0x5678'}], force=True).ok
    hub = check(host, [{'type': 'usb', 'bus': 1, 'device': 5}], force=True)
    assert hub.errors == ['requests[0] (usb): USB 1-4 is a hub, not a device to pass through [guard endpoint]']
    stick = check(host, [{'type': 'usb', 'vendor': '0781', 'product': '5581'}])
    assert stick.errors == ['requests[0] (usb 0781:5581): is host-critical: the USB device holding /boot/efi '
                            '(/dev/sdb1) [guard host_critical] (force: true overrides it)']
    half = check(host, [{'type': 'usb', 'vendor': '0781'}])
    assert half.errors == ["requests[0] (usb 0781): USB vendor and product go together (vendor '0781', product "
                           "None) [guard address]"]


def test_usb_in_use_and_twice(trees):
    usage = {('usb', '0x046d:0xc31c'): [{'domain': 'desk', 'live': True, 'config': False}]}
    result = check(trees['desktop'], [{'type': 'usb', 'vendor': '046d', 'product': 'c31c'},
                                      {'type': 'usb', 'bus': '1', 'device': '2'}], usage)
    assert result.errors == [
        'requests[1] (usb): the same device as requests[0] (usb 046d:c31c) [guard duplicate]',
        'requests[0] (usb 046d:c31c): USB device 1-1 (bus 1 device 2) is assigned to running domain desk '
        '[guard in_use_live]',
        'requests[1] (usb): USB device 1-1 (bus 1 device 2) is assigned to running domain desk [guard in_use_live]']


def test_mdev_requests(trees):
    host = trees['mdev']
    assert check(host, [{'type': 'mdev', 'uuid': VGPU_MDEV.upper(), 'model': 'nvidia-222'}]).ok
    wrong = check(host, [{'type': 'mdev', 'uuid': VGPU_MDEV, 'model': 'nvidia-223'}])
    assert wrong.errors == ['requests[0] (mdev %s): mediated device %s is of type nvidia-222, not nvidia-223 as '
                            'configured [guard ids]' % (VGPU_MDEV, VGPU_MDEV)]
    missing = check(host, [{'type': 'mdev', 'uuid': '11111111-2222-3333-4444-555555555555', 'model': 'nvidia-222'}])
    assert missing.errors == ['requests[0] (mdev 11111111-2222-3333-4444-555555555555): mediated device '
                              '11111111-2222-3333-4444-555555555555 does not exist; it can be created from nvidia-222 '
                              'on 0000:01:00.0 (15 available) [guard mdev_exists] (force: true overrides it)']
    full = check(host, [{'type': 'mdev', 'uuid': '11111111-2222-3333-4444-555555555555', 'model': 'nvidia-223'}])
    assert 'no parent device offers type nvidia-223' in full.errors[0]
    bad = check(host, [{'type': 'mdev', 'uuid': 'not-a-uuid'}])
    assert bad.errors == ["requests[0] (mdev not-a-uuid): mdev uuid: 'not-a-uuid' is not a UUID like 8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e [guard address]"]


def test_mdev_and_its_parent_are_exclusive(trees):
    host = trees['mdev']
    together = check(host, [{'type': 'mdev', 'uuid': VGPU_MDEV}, {'type': 'pci', 'address': '0000:01:00.0'}])
    assert [finding['guard'] for finding in together.findings] == ['mdev_parent', 'mdev_parent']
    usage = {('mdev', VGPU_MDEV): [{'domain': 'vdi', 'live': True, 'config': True}],
             ('pci', IGPU): [{'domain': 'gfx', 'live': False, 'config': True}]}
    parent = check(host, [{'type': 'pci', 'address': '0000:01:00.0'}], usage, force=True)
    assert parent.errors == ['requests[0] (pci 0000:01:00.0): its mediated device %s is used by domain vdi '
                             '[guard mdev_parent]' % VGPU_MDEV]
    child = check(host, [{'type': 'mdev', 'uuid': GVT_MDEV}], usage, force=True)
    assert child.errors == ['requests[0] (mdev %s): its parent 0000:00:02.0 is passed through to domain gfx '
                            '[guard mdev_parent]' % GVT_MDEV]


def test_unknown_request_type(trees):
    result = check(trees['desktop'], [{'type': 'scsi', 'address': 'x'}])
    assert result.errors == ["requests[0] (scsi x): request type 'scsi' is not one of pci, usb, mdev, sriov_vf "
                             "[guard address]"]


def test_check_warns_about_interrupt_remapping(tmp_path):
    host = host_of('desktop', tmp_path, lambda spec: spec.update(interrupts='plain'))
    result = check(host, [{'type': 'pci', 'address': NIC_VFIO}])
    assert result.ok and result.warnings == [
        'requests[0] (pci 0000:03:00.0): the host has no interrupt remapping: vfio refuses the device unless '
        'vfio_iommu_type1.allow_unsafe_interrupts=1 [guard interrupt_remapping]']


# -- facts ---------------------------------------------------------------------------------------------

def test_host_facts(trees):
    usage = {('pci', NIC_VFIO): [{'domain': 'fw', 'live': True, 'config': True}]}
    facts = host_facts.host_facts(trees['desktop'], usage)
    assert facts['summary'] == {'ready': 1, 'needs_preparation': 3, 'refused': 11}
    by_address = {entry['address']: entry for entry in facts['pci_devices']}
    assert by_address[NIC_VFIO]['used_by'] == usage[('pci', NIC_VFIO)]
    gpu = by_address[GPU]
    assert gpu['iommu_group_members'] == ['0000:00:01.0', GPU, GPU_AUDIO]
    assert (gpu['vendor_name'], gpu['class_name'], gpu['verdict']) == \
        ('NVIDIA Corporation', 'VGA compatible controller', 'needs_preparation')
    assert facts['iommu_groups'][1] == {
        'group': 1, 'type': 'identity', 'devices': ['0000:00:01.0', GPU, GPU_AUDIO], 'held_by': []}
    usb = {entry['name']: entry for entry in facts['usb_devices']}
    assert usb['1-3']['verdict'] == 'refused' and usb['usb1']['verdict'] == 'refused' and \
        usb['1-1']['verdict'] == 'ready'
    sriov = {entry['address']: entry for entry in host_facts.host_facts(trees['sriov'])['pci_devices']}
    assert sriov[PF0]['sriov'] == {'totalvfs': 64, 'numvfs': 4, 'vfs': [VF0, VF1, VF2, VF3]}
    assert sriov[VF0]['physfn'] == PF0 and sriov[VF0]['sriov'] is None
    mdev = host_facts.host_facts(trees['mdev'])
    types = [entry['type'] for entry in mdev['mdev_types']]
    assert types == ['i915-GVTg_V5_4', 'i915-GVTg_V5_8', 'nvidia-222', 'nvidia-223']
    assert [entry['uuid'] for entry in mdev['mdev_devices']] == [VGPU_MDEV, GVT_MDEV]


# -- pci.ids ---------------------------------------------------------------------------------------------

def test_pci_ids_fixture():
    ids = _pci_ids.PciIds.load(os.path.join(FIXTURES, 'pci.ids'))
    assert ids.names('0x10de', '0x1b80', '0x1043', '0x8591') == (
        'NVIDIA Corporation', 'GP104 [GeForce GTX 1080]', 'GeForce GTX 1080 Founders Edition')
    assert ids.names('10de', '1b80', '1043', '0000') == ('NVIDIA Corporation', 'GP104 [GeForce GTX 1080]', None)
    assert ids.names('10de', 'ffff') == ('NVIDIA Corporation', None, None)
    assert ids.names('abcd', '0001') == (None, None, None)
    assert ids.class_name('0x030000') == 'VGA compatible controller'
    assert ids.class_name('0x030000', prog_if=True) == 'VGA controller'
    assert ids.class_name('0x0c0330') is None
    assert ids.class_name('0x060480') == 'PCI bridge'
    only = _pci_ids.PciIds.load(os.path.join(FIXTURES, 'pci.ids'), vendors=['8086'], classes=['02'])
    assert sorted(only.vendors) == ['8086'] and sorted(only.classes) == ['02']
    assert _pci_ids.PciIds.load('/nonexistent/pci.ids') is None


@pytest.mark.skipif(not os.path.isfile('/usr/share/misc/pci.ids'), reason='no system pci.ids')
def test_pci_ids_system_file():
    ids = _pci_ids.PciIds.load('/usr/share/misc/pci.ids', vendors=['8086', '10de'])
    assert ids.names('8086')[0] == 'Intel Corporation'
    assert ids.names('10de')[0] == 'NVIDIA Corporation'
    assert ids.names('1022') == (None, None, None)  # a vendor not asked for
    assert ids.class_name('0x020000') == 'Ethernet controller'  # all classes when none are named
    assert ids.class_name('0x0c0330') == 'USB controller'


# -- libvirt node devices ------------------------------------------------------------------------------

NODEDEV_PCI = """<device><name>pci_0000_01_00_0</name><parent>pci_0000_00_01_0</parent>
  <capability type='pci'><class>0x030000</class><domain>0</domain><bus>1</bus><slot>0</slot><function>0</function>
  <product id='0x1b80'>GP104</product><vendor id='0x10de'>NVIDIA</vendor>
  <iommuGroup number='7'><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></iommuGroup>
  </capability></device>"""
NODEDEV_OLD_MDEV = """<device><name>mdev_a297db4a_f4c2_11e6_90f6_d3b88d6c9525</name><parent>pci_0000_00_02_0</parent>
  <capability type='mdev'><type id='i915-GVTg_V5_4'/><iommuGroup number='0'/></capability></device>"""


def test_parse_node_device():
    assert node_device_xml.parse_node_device(NODEDEV_PCI) == {
        'name': 'pci_0000_01_00_0', 'parent': 'pci_0000_00_01_0', 'type': 'pci', 'address': GPU, 'iommu_group': 7,
        'vendor': '0x10de', 'product': '0x1b80', 'uuid': None, 'mdev_type': None, 'bus': None, 'device': None}
    old = node_device_xml.parse_node_device(NODEDEV_OLD_MDEV)
    assert (old['type'], old['uuid'], old['mdev_type']) == ('mdev', GVT_MDEV, 'i915-GVTg_V5_4')
    assert node_device_xml.parse_node_device('<device><name>computer</name></device>')['type'] is None
    assert _ids.pci_of_nodedev_name('pci_10000_e1_1f_7') == '10000:e1:1f.7'
    assert _ids.pci_of_nodedev_name('usb_1_2') is None
    with pytest.raises(ValueError, match='node device XML'):
        node_device_xml.parse_node_device('<device>')


def test_merge_node_devices_compares_groups_on_the_same_host(trees):
    facts = host_facts.host_facts(trees['desktop'])
    summary = node_device_xml.merge_node_devices(facts, [node_device_xml.parse_node_device(NODEDEV_PCI)], compare_groups=True)
    assert summary == {'node_devices': {'pci': 1}, 'only_in_libvirt': []}
    assert facts['problems'] == ['libvirt puts 0000:01:00.0 in IOMMU group 7, sysfs in group 1']
    assert {entry['address']: entry for entry in facts['pci_devices']}[GPU]['libvirt_name'] == 'pci_0000_01_00_0'
    quiet = host_facts.host_facts(trees['desktop'])
    node_device_xml.merge_node_devices(quiet, [node_device_xml.parse_node_device(NODEDEV_PCI)], compare_groups=False)
    assert quiet['problems'] == []


def test_usage_given_as_domain_names_is_taken_as_running(trees):
    usage = {('pci', VF1): ['other', 'guest']}
    result = check(trees['sriov'], [{'type': 'pci', 'address': VF1}], usage, force=True)
    assert result.errors == ['requests[0] (pci 0000:41:02.1): it is assigned to running domain other '
                             '[guard in_use_live]']


@pytest.mark.parametrize('device_xml, requests', [
    ("<hostdev mode='subsystem' type='pci' managed='yes'><source><address slot='037' function='6'/></source></hostdev>",
     [{'type': 'pci', 'address': '0000:00:1f.6', 'managed': True, 'where': 'config[0]'}]),
    ("<hostdev mode='subsystem' type='pci'><source><address bus='2'/></source></hostdev>",   # libvirt: unmanaged
     [{'type': 'pci', 'address': '0000:02:00.0', 'managed': False, 'where': 'config[0]'}]),
    ("<interface type='hostdev' managed='yes'><source><address type='pci' bus='0x41' slot='2' function='1'/>"
     "</source></interface>", [{'type': 'sriov_vf', 'address': '0000:41:02.1', 'managed': True, 'where': 'config[0]'}]),
    ("<hostdev mode='subsystem' type='usb'><source><vendor id='1133'/><product id='0xc31c'/></source></hostdev>",
     [{'type': 'usb', 'vendor': '0x046d', 'product': '0xc31c', 'bus': None, 'device': None, 'where': 'config[0]'}]),
    ("<hostdev mode='subsystem' type='usb'><source><address bus='010' device='6'/></source></hostdev>",
     [{'type': 'usb', 'vendor': None, 'product': None, 'bus': 8, 'device': 6, 'where': 'config[0]'}]),
    ("<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source><address uuid='8C1BD7F65C0F4C8B9B7E2F2A3B4C5D6E'/>"
     "</source></hostdev>", [{'type': 'mdev', 'uuid': '8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e', 'where': 'config[0]'}]),
    ("<watchdog model='i6300esb'/>", []),
])
def test_host_device_requests_read_addresses_as_libvirt_does(device_xml, requests):
    from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml
    assert _ids.host_device_requests(_xml.parse(device_xml), 'config[0]') == requests


def test_usage_from_domains_refuses_what_it_cannot_read_naming_the_domain():
    xml = ("<domain><name>odd</name><devices><hostdev mode='subsystem' type='pci'><source><address bus='08'/>"
           "</source></hostdev></devices></domain>")
    with pytest.raises(ValueError, match=r"the config XML of domain odd: <hostdev> #1 <source><address>@bus: '08'"):
        domain_usage.usage_from_domains([{'name': 'odd', 'config_xml': xml}])
