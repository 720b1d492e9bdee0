# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vfio_bind as Ansible runs it, on fixture trees whose sysfs writes a FakeKernel answers.

Every assertion about the result of a bind is made from the simulated kernel's own view (the driver
link, driver_override, /dev/vfio/<group>), not only from what the module returned.
"""

from __future__ import annotations

import os

import pytest

from ansible_collections.virtdev.libvirt.plugins.modules import vfio_bind
from ansible_collections.virtdev.libvirt.tests.unit.prepare_helpers import cycle, expect_refused, machine, read, run_module, warnings

GPU, GPU_AUDIO, BRIDGE, IGPU = '0000:01:00.0', '0000:01:00.1', '0000:00:01.0', '0000:00:02.0'
NVME, XHCI, NIC_VFIO, CHIPSET_AUDIO, ONBOARD_NIC = '0000:02:00.0', '0000:00:14.0', '0000:03:00.0', '0000:00:1f.3', \
    '0000:00:1f.6'
RULES = '/etc/udev/rules.d/40-virtdev-vfio-pci.rules'
MODPROBE = '/etc/modprobe.d/virtdev-vfio.conf'
HOOK = '/etc/initramfs-tools/hooks/virtdev-vfio'
DRACUT = '/etc/dracut.conf.d/virtdev-vfio.conf'


def run(capsys, **params):
    return run_module(capsys, vfio_bind, **params)


def vfio_node(root, group):
    return os.path.exists(os.path.join(root, 'dev/vfio/%s' % group))


def refused(capsys, root, kernel, **params):
    """Run, expect a failure, and check that nothing at all was written."""
    result = expect_refused(capsys, vfio_bind, root, kernel, **params)
    assert result['failed'] is True and result.get('changed', False) is False
    return result


# -- binding ------------------------------------------------------------------------------------------

def test_whole_group_cycle_binds_gpu_and_audio(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    assert (kernel.driver(GPU), kernel.driver(GPU_AUDIO), vfio_node(root, 1)) == ('nouveau', 'snd_hda_intel', False)
    checked, applied = cycle(capsys, vfio_bind, root, kernel, addresses=['01:00.0'], whole_group=True, timeout=0)
    # the kernel's view: both functions on vfio-pci by driver_override, the group's node exists
    assert (kernel.driver(GPU), kernel.override(GPU)) == ('vfio-pci', 'vfio-pci')
    assert (kernel.driver(GPU_AUDIO), kernel.override(GPU_AUDIO)) == ('vfio-pci', 'vfio-pci')
    assert vfio_node(root, 1)
    # the bridge of the group keeps pcieport, the rest of the machine is untouched
    assert kernel.driver(BRIDGE) == 'pcieport' and kernel.driver(IGPU) == 'i915'
    assert [(d['address'], d['requested'], d['before']['driver'], d['after']['driver']) for d in applied['devices']] \
        == [(GPU, True, 'nouveau', 'vfio-pci'), (GPU_AUDIO, False, 'snd_hda_intel', 'vfio-pci')]
    assert [w['path'] for w in applied['writes']] == [
        '/sys/bus/pci/devices/%s/driver_override' % GPU, '/sys/bus/pci/drivers/nouveau/unbind',
        '/sys/bus/pci/drivers_probe',
        '/sys/bus/pci/devices/%s/driver_override' % GPU_AUDIO, '/sys/bus/pci/drivers/snd_hda_intel/unbind',
        '/sys/bus/pci/drivers_probe']
    assert applied['iommu_groups'] == [{'group': 1, 'node': '/dev/vfio/1', 'exists': True}]
    assert checked['devices'] == applied['devices'] and applied['files'] == [] and applied['commands'] == []
    gpu_diff = checked['diff'][0]
    assert gpu_diff['before_header'] == 'pci %s' % GPU
    assert 'driver: nouveau' in gpu_diff['before'] and 'driver: vfio-pci' in gpu_diff['after']


def test_listing_every_member_is_the_same_as_whole_group(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    result = run(capsys, root=root, addresses=[GPU, GPU_AUDIO], timeout=0)
    assert result['rc'] == 0 and result['changed'] is True
    assert [d['requested'] for d in result['devices']] == [True, True]
    assert kernel.driver(GPU) == kernel.driver(GPU_AUDIO) == 'vfio-pci'


def test_device_on_vfio_pci_without_override_gets_one(capsys, tmp_path, monkeypatch):
    # 03:00.0 is already on vfio-pci (bound by ids at boot, say): only driver_override is missing
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    result = run(capsys, root=root, addresses=[NIC_VFIO])
    assert result['rc'] == 0 and result['changed'] is True
    assert [(w['path'], w['value']) for w in result['writes']] == [
        ('/sys/bus/pci/devices/%s/driver_override' % NIC_VFIO, 'vfio-pci')]
    assert (kernel.driver(NIC_VFIO), kernel.override(NIC_VFIO)) == ('vfio-pci', 'vfio-pci')


# -- bad input: a clear error and nothing changed -------------------------------------------------------

@pytest.mark.parametrize('address, words', [
    ('zz:00.0', ["addresses[0]", "'zz:00.0' is not a PCI address"]),
    ('0000:00:20.0', ["addresses[0]", 'slot 20 is greater than 1f']),
    ('0000:00:1f.8', ["addresses[0]", "'0000:00:1f.8' is not a PCI address"]),
    ('', ["addresses[0]", "'' is not a PCI address"]),
])
def test_malformed_address(capsys, tmp_path, monkeypatch, address, words):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    result = refused(capsys, root, kernel, addresses=[GPU, address])
    for word in words:
        assert word.replace('addresses[0]', 'addresses[1]') in result['msg']
    assert 'nothing was changed' in result['msg']


def test_nonexistent_address_second_in_list_changes_nothing(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    result = refused(capsys, root, kernel, addresses=[NIC_VFIO, ONBOARD_NIC, '0000:09:00.0'], force=True)
    assert result['errors'] == ['addresses[2] (0000:09:00.0): there is no PCI device 0000:09:00.0 on this host '
                                '(not under /sys/bus/pci/devices) [guard exists]']
    assert kernel.driver(ONBOARD_NIC) == 'e1000e'


def test_bridge_is_refused_even_with_force(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    result = refused(capsys, root, kernel, addresses=[BRIDGE], force=True, whole_group=True)
    assert any('addresses[0] (0000:00:01.0): is a PCI-to-PCI bridge (class 0x060400) with 0000:01:00.0, '
               '0000:01:00.1 behind it, not an endpoint [guard endpoint]' == error for error in result['errors'])
    assert kernel.driver(BRIDGE) == 'pcieport'


def test_partial_group_is_refused(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    result = refused(capsys, root, kernel, addresses=[GPU])
    assert result['errors'] == [
        'addresses[0] (0000:01:00.0): shares IOMMU group 1 with 0000:01:00.1 (HD audio device, driver snd_hda_intel), '
        'which is still bound to a host driver [guard group] (force: true overrides it)']
    assert kernel.driver(GPU) == 'nouveau'


def test_partial_group_with_force_binds_only_that_device(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    result = run(capsys, root=root, addresses=[GPU], force=True, timeout=0)
    assert result['rc'] == 0 and result['changed'] is True
    assert any('[guard group, overridden by force]' in warning for warning in warnings(result))
    assert (kernel.driver(GPU), kernel.driver(GPU_AUDIO)) == ('vfio-pci', 'snd_hda_intel')


@pytest.mark.parametrize('address, guard, reason', [
    (NVME, 'host_critical', 'the controller of / (ext4 on /dev/mapper/vg-root)'),
    (IGPU, 'host_critical', 'the boot VGA device (boot_vga=1)'),
    (CHIPSET_AUDIO, 'group_critical', 'shares IOMMU group 6 with 0000:00:1f.0 (ISA bridge, driver none), which is '
                                      'host-critical'),
    (ONBOARD_NIC, 'host_critical', 'the network device of the default route (br0)'),
])
def test_host_critical_devices_are_refused(capsys, tmp_path, monkeypatch, address, guard, reason):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    result = refused(capsys, root, kernel, addresses=[address])
    assert any(reason in error and '[guard %s] (force: true overrides it)' % guard in error
               for error in result['errors']), result['errors']


def test_host_critical_device_with_force(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    result = run(capsys, root=root, addresses=[IGPU], force=True, timeout=0)
    assert result['rc'] == 0 and kernel.driver(IGPU) == 'vfio-pci'
    assert any('boot VGA' in warning and 'overridden by force' in warning for warning in warnings(result))


def test_whole_group_with_a_critical_member_is_refused(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    result = refused(capsys, root, kernel, addresses=[CHIPSET_AUDIO], whole_group=True)
    assert any('whole_group member 0000:00:1f.0: is host-critical: a chipset function (ISA bridge' in error
               for error in result['errors']), result['errors']
    assert any('whole_group member 0000:00:1f.4: is host-critical: a chipset function (SMBus' in error
               for error in result['errors'])
    assert {kernel.driver(address) for address in ('0000:00:1f.3', '0000:00:1f.4')} == {'snd_hda_intel', 'i801_smbus'}


def test_iommu_off_is_refused(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'iommu_off')
    result = refused(capsys, root, kernel, addresses=[XHCI])
    assert result['errors'] == [
        'addresses[0] (0000:00:14.0): the IOMMU is off: no groups under /sys/kernel/iommu_groups (the firmware has an '
        'ACPI DMAR table); add intel_iommu=on to the kernel command line [guard iommu] (force: true overrides it)']


def test_iommu_off_forced_probe_fails_and_is_rolled_back(capsys, tmp_path, monkeypatch):
    # with vfio-pci loaded but no IOMMU, vfio-pci refuses the device: drivers_probe "succeeds" and the
    # device is left without a driver; the module sees it in the driver link and gives it back to xhci_hcd
    def with_vfio(spec):
        spec['iommu']['modules'].append('vfio_pci')
    root, kernel = machine(tmp_path, monkeypatch, 'iommu_off', with_vfio)
    result = run(capsys, root=root, addresses=[XHCI], force=True, timeout=0)
    assert result['rc'] == 1
    assert 'after driver_override=vfio-pci and drivers_probe the device has no driver at all' in result['msg']
    assert result['rolled_back'] == [XHCI]
    assert (kernel.driver(XHCI), kernel.override(XHCI)) == ('xhci_hcd', None)
    assert ('sys/bus/pci/drivers/xhci_hcd/bind', XHCI) in kernel.writes


def test_driverless_after_probe_rolls_back_the_whole_list(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    kernel.swallow_probe.add(GPU_AUDIO)  # drivers_probe returns success and binds nothing
    result = run(capsys, root=root, addresses=[GPU, GPU_AUDIO], timeout=0)
    assert result['rc'] == 1
    assert result['msg'].startswith('addresses[1] (0000:01:00.1): after driver_override=vfio-pci and drivers_probe '
                                    'the device has no driver at all')
    assert result['rolled_back'] == [GPU_AUDIO, GPU]
    assert 'rolled back: 0000:01:00.1, 0000:01:00.0' in result['msg']
    # the kernel's view: both back on their host drivers, no override left, no vfio node
    assert (kernel.driver(GPU), kernel.override(GPU)) == ('nouveau', None)
    assert (kernel.driver(GPU_AUDIO), kernel.override(GPU_AUDIO)) == ('snd_hda_intel', None)
    assert not vfio_node(root, 1)


def test_probe_failure_of_a_variant_driver_is_reported(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    kernel.fail_probe.add(GPU)
    result = run(capsys, root=root, addresses=[GPU, GPU_AUDIO], timeout=0)
    assert result['rc'] == 1 and result['rolled_back'] == [GPU]
    assert kernel.driver(GPU) == 'nouveau' and kernel.driver(GPU_AUDIO) == 'snd_hda_intel'


def test_duplicate_addresses(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    result = refused(capsys, root, kernel, addresses=[GPU, '01:00.0'], whole_group=True)
    assert result['errors'] == ['addresses[1] (0000:01:00.0): the same device as addresses[0] [guard duplicate]']


@pytest.mark.parametrize('params, words', [
    ({'driver': 'nouveau'}, "driver: 'nouveau' is not vfio-pci, pci-stub or a vfio-pci variant driver"),
    ({'driver': 'vfio pci'}, "driver: 'vfio pci' is not a kernel driver name"),
    ({'host_driver': '../x', 'state': 'unbound'}, "host_driver: '../x' is not a kernel driver name"),
    ({'timeout': -1}, 'timeout: -1.0 must not be negative'),
    ({'addresses': []}, 'addresses: give at least one PCI address'),
])
def test_bad_options(capsys, tmp_path, monkeypatch, params, words):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    params.setdefault('addresses', [GPU])
    result = refused(capsys, root, kernel, **params)
    assert words in result['msg']


def test_root_must_exist(capsys, tmp_path):
    result = run(capsys, root=str(tmp_path / 'missing'), addresses=[GPU])
    assert result['rc'] == 1 and 'root:' in result['msg']


def test_driver_not_loaded_under_a_fixture_root(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'mdev', lambda spec: spec['iommu']['modules'].remove('vfio_pci'))
    result = refused(capsys, root, kernel, addresses=['0000:00:17.0'], force=True)
    assert 'driver: vfio-pci is not loaded under' in result['msg'] and 'modprobe vfio_pci' in result['msg']


def test_pci_stub(capsys, tmp_path, monkeypatch):
    def with_stub(spec):
        spec['iommu']['modules'].append('pci_stub')
    root, kernel = machine(tmp_path, monkeypatch, 'desktop', with_stub)
    result = run(capsys, root=root, addresses=['0000:00:17.0'], driver='pci-stub', timeout=0)
    assert result['rc'] == 0 and kernel.driver('0000:00:17.0') == 'pci-stub'
    assert result['iommu_groups'] == []  # pci-stub creates no vfio group node


# -- unbinding -----------------------------------------------------------------------------------------

def bound_gpu(capsys, tmp_path, monkeypatch, mutate=None):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop', mutate)
    result = run(capsys, root=root, addresses=[GPU], whole_group=True, timeout=0)
    assert result['rc'] == 0
    kernel.writes.clear()
    return root, kernel


def test_unbound_cycle_gives_devices_back(capsys, tmp_path, monkeypatch):
    root, kernel = bound_gpu(capsys, tmp_path, monkeypatch)
    _checked, applied = cycle(capsys, vfio_bind, root, kernel, addresses=[GPU], whole_group=True, state='unbound',
                              timeout=0)
    assert (kernel.driver(GPU), kernel.override(GPU)) == ('nouveau', None)
    assert (kernel.driver(GPU_AUDIO), kernel.override(GPU_AUDIO)) == ('snd_hda_intel', None)
    assert not vfio_node(root, 1)
    assert [d['after'] for d in applied['devices']] == [{'driver': 'nouveau', 'driver_override': None},
                                                        {'driver': 'snd_hda_intel', 'driver_override': None}]


def test_unbound_leaves_devices_of_other_drivers_alone(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    result = run(capsys, root=root, addresses=[GPU, ONBOARD_NIC], state='unbound')
    assert result['rc'] == 0 and result['changed'] is False and kernel.writes == []


def test_unbound_refused_while_a_guest_holds_the_group(capsys, tmp_path, monkeypatch):
    root, kernel = bound_gpu(capsys, tmp_path, monkeypatch)
    kernel.open_group(1, pid=4242, comm='qemu-system-x86', guest='win10')
    result = refused(capsys, root, kernel, addresses=[GPU_AUDIO], state='unbound')
    assert result['errors'] == [
        'addresses[0] (0000:01:00.1): IOMMU group 1 is held open by guest win10 (pid 4242 qemu-system-x86): a running '
        'guest uses it; stop it first (unbinding now would hang in the kernel) [guard group_open]']
    assert kernel.driver(GPU_AUDIO) == 'vfio-pci'
    kernel.close_group(4242)
    result = run(capsys, root=root, addresses=[GPU_AUDIO, GPU], state='unbound', timeout=0)
    assert result['rc'] == 0 and kernel.driver(GPU_AUDIO) == 'snd_hda_intel'


def test_unbound_to_a_wrong_host_driver_rolls_back(capsys, tmp_path, monkeypatch):
    root, kernel = bound_gpu(capsys, tmp_path, monkeypatch)
    result = run(capsys, root=root, addresses=[GPU], state='unbound', host_driver='nvidia', timeout=0)
    assert result['rc'] == 1
    assert 'the device is bound to nouveau, not nvidia' in result['msg']
    assert result['rolled_back'] == [GPU]
    assert (kernel.driver(GPU), kernel.override(GPU)) == ('vfio-pci', 'vfio-pci')
    assert vfio_node(root, 1)


def test_unbound_without_a_host_driver_warns(capsys, tmp_path, monkeypatch):
    # 03:00.0 was bound to vfio-pci at boot and its host driver (igb) is not loaded
    root, kernel = machine(tmp_path, monkeypatch, 'desktop')
    result = run(capsys, root=root, addresses=[NIC_VFIO], state='unbound', timeout=0)
    assert result['rc'] == 0 and result['changed'] is True
    assert kernel.driver(NIC_VFIO) is None
    assert any('no host driver claimed the device' in warning for warning in warnings(result))


# -- persistence --------------------------------------------------------------------------------------

def debian(spec, releases=('6.1.0-18-amd64',), virqfd=True):
    spec['initramfs'] = ['initramfs-tools']
    spec['kernels'] = {}
    for release in releases:
        modules = ['drivers/vfio/vfio', 'drivers/vfio/vfio_iommu_type1', 'drivers/vfio/pci/vfio-pci',
                   'drivers/vfio/pci/vfio-pci-core']
        if virqfd and release.startswith('6.1.'):
            modules.append('drivers/vfio/vfio_virqfd')
        spec['kernels'][release] = {'modules': modules}


def test_persistent_udev_cycle_and_files(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop', debian)
    checked, applied = cycle(capsys, vfio_bind, root, kernel, addresses=[GPU], whole_group=True, persistent=True,
                             timeout=0)
    assert applied['files'] == [os.path.join(root, RULES.lstrip('/')), os.path.join(root, HOOK.lstrip('/'))]
    rules = read(root, RULES)
    lines = [line for line in rules.splitlines() if line.startswith('ACTION')]
    assert len(lines) == 2
    assert lines[0].startswith('ACTION=="add", SUBSYSTEM=="pci", KERNEL=="0000:01:00.0", ATTR{vendor}=="0x10de", '
                               'ATTR{device}=="0x1b80", ATTR{driver_override}="vfio-pci", '
                               'RUN{builtin}+="kmod load vfio-pci"')
    assert 'echo 0000:01:00.0 > /sys/bus/pci/drivers_probe' in lines[0]
    assert 'KERNEL=="0000:01:00.1", ATTR{vendor}=="0x10de", ATTR{device}=="0x10f0"' in lines[1]
    assert '$' not in ''.join(lines)  # no udev substitutions, nothing a value could inject
    hook = read(root, HOOK)
    assert 'manual_add_modules vfio vfio_iommu_type1 vfio_virqfd vfio_pci\n' in hook
    assert 'cp -p %s "${DESTDIR}%s"' % (RULES, RULES) in hook
    assert os.stat(os.path.join(root, HOOK.lstrip('/'))).st_mode & 0o777 == 0o755
    assert read(root, MODPROBE) is None and read(root, DRACUT) is None
    assert {d['before_header'] for d in checked['diff']} >= {os.path.join(root, RULES.lstrip('/'))}
    # root is not /: no initramfs regeneration, said so
    assert applied['commands'] == []
    assert any('regenerate the initramfs' in warning for warning in warnings(applied))

    # giving the devices back removes them from the boot configuration, and our files with them
    _checked, gone = cycle(capsys, vfio_bind, root, kernel, addresses=[GPU], whole_group=True, persistent=True,
                           state='unbound', timeout=0)
    assert read(root, RULES) is None and read(root, HOOK) is None
    assert sorted(gone['files']) == sorted(applied['files'])
    assert kernel.driver(GPU) == 'nouveau'


def test_persistent_entries_accumulate_across_runs(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop', debian)
    assert run(capsys, root=root, addresses=[NIC_VFIO], persistent=True)['rc'] == 0
    assert run(capsys, root=root, addresses=[GPU, GPU_AUDIO], persistent=True, timeout=0)['rc'] == 0
    rules = read(root, RULES)
    assert [line.split()[2] for line in rules.splitlines() if line.startswith('# virtdev-vfio')] == \
        [GPU, GPU_AUDIO, NIC_VFIO]
    assert run(capsys, root=root, addresses=[NIC_VFIO], persistent=True, state='unbound', timeout=0)['rc'] == 0
    assert NIC_VFIO not in read(root, RULES) and GPU in read(root, RULES)


def test_vfio_virqfd_only_for_kernels_that_ship_it(capsys, tmp_path, monkeypatch):
    root, _kernel = machine(tmp_path, monkeypatch, 'desktop',
                            lambda spec: debian(spec, releases=('6.1.0-18-amd64', '6.8.0-1-amd64')))
    result = run(capsys, root=root, addresses=[NIC_VFIO], persistent=True)
    assert result['rc'] == 0
    assert 'manual_add_modules vfio vfio_iommu_type1 vfio_pci\n' in read(root, HOOK)
    assert 'vfio_virqfd' not in read(root, HOOK)


def test_dracut_configuration(capsys, tmp_path, monkeypatch):
    def fedora(spec):
        spec['initramfs'] = ['dracut']
        spec['kernels'] = {'6.8.5-301.fc40.x86_64': {'modules': ['drivers/vfio/vfio', 'drivers/vfio/pci/vfio-pci'],
                                                     'builtin': ['drivers/vfio/vfio_iommu_type1']}}
    root, _kernel = machine(tmp_path, monkeypatch, 'desktop', fedora)
    result = run(capsys, root=root, addresses=[NIC_VFIO], persistent=True)
    assert result['rc'] == 0
    assert read(root, DRACUT) == (
        '# Managed by virtdev.libvirt (vfio_bind, persistent: true). Do not edit: the module rewrites this file.\n'
        'add_drivers+=" vfio vfio_pci "\n'
        'install_items+=" %s "\n' % RULES)
    assert read(root, HOOK) is None


def test_persistent_modprobe(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'desktop', debian)
    _checked, applied = cycle(capsys, vfio_bind, root, kernel, addresses=[GPU], whole_group=True, persistent=True,
                              persist_method='modprobe', timeout=0)
    text = read(root, MODPROBE)
    assert 'options vfio_pci ids=10de:10f0,10de:1b80\n' in text
    assert 'softdep nouveau pre: vfio_pci\n' in text and 'softdep snd_hda_intel pre: vfio_pci\n' in text
    assert read(root, RULES) is None
    assert applied['files'] == [os.path.join(root, MODPROBE.lstrip('/')), os.path.join(root, HOOK.lstrip('/'))]
    # switching the method moves the entries
    result = run(capsys, root=root, addresses=[GPU], whole_group=True, persistent=True, timeout=0)
    assert result['changed'] is True and read(root, MODPROBE) is None and GPU in read(root, RULES)


def test_persistent_modprobe_refused_for_shared_ids(capsys, tmp_path, monkeypatch):
    # the four VFs of the X710 share 8086:154c: ids= would take all of them at boot
    root, kernel = machine(tmp_path, monkeypatch, 'sriov')
    result = refused(capsys, root, kernel, addresses=['0000:41:02.0'], persistent=True, persist_method='modprobe')
    assert 'would write "options vfio-pci ids=8086:154c"' in result['msg']
    assert 'also binds 0000:41:02.1' in result['msg'] and 'persist_method: udev' in result['msg']
