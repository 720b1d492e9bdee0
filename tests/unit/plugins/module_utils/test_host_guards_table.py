# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guard table: every row has a check, and each check function, called alone on a model built in
memory (no sysfs), fires for the case it guards and stays silent for a device that is fine."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import guards, model

GPU, AUDIO, PEER, BRIDGE, PF, VF = '0000:01:00.0', '0000:01:00.1', '0000:02:00.0', '0000:00:01.0', '0000:03:00.0', '0000:03:10.0'
MDEV = '8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e'


def pci(host, address, class_code='0x030000', driver='vfio-pci', group=1, **fields):
    dev = model.PciDevice(address, 'sys/devices/pci0000:00/%s/%s' % (BRIDGE, address))
    dev.vendor, dev.device, dev.class_code, dev.driver, dev.iommu_group = '0x10de', '0x1b80', class_code, driver, group
    dev.parent = BRIDGE
    dev.reset_methods = ['flr']
    for name, value in fields.items():
        setattr(dev, name, value)
    host.pci[address] = dev
    if group is not None:
        host.groups.setdefault(group, []).append(address)
        host.groups[group].sort()
    return dev


def fine_host():
    """One GPU alone in its group, on vfio-pci, the IOMMU on with interrupt remapping: nothing fires."""
    host = model.Host('/')
    pci(host, GPU)
    host.iommu = {'vfio_device': True, 'interrupt_remapping': True, 'acs_override': False}
    return host


def usb(host, name='1-2', vendor='0x046d', product='0xc31c', bus=1, device=3):
    dev = model.UsbDevice(name, 'sys/devices/pci0000:00/0000:00:14.0/usb1/' + name)
    dev.vendor, dev.product, dev.bus, dev.device, dev.device_class = vendor, product, bus, device, '00'
    host.usb[name] = dev
    return dev


def run(guard, subject):
    return guards.GUARDS[guard].checks[subject.kind](subject)


def subject(host, address=None, request=None, **kwargs):
    """A PCI subject: the request's device, else ``address`` (the GPU when neither is given)."""
    if address is None and request is None:
        address = GPU
    return guards.Subject(host, 'pci', address, request=request, **kwargs)


def test_every_guard_has_a_check_and_every_check_a_known_kind():
    for name, guard in guards.GUARDS.items():
        assert guard.checks, name
        assert set(guard.checks) <= {'pci', 'usb', 'mdev', 'path', 'request', 'requests'}, name
        assert guard.name == name


def test_a_fine_device_fires_no_guard():
    assert guards.assess_pci(fine_host(), GPU) == []
    assert guards.verdict(fine_host(), GPU)['verdict'] == guards.READY


# (guard, how to break the fine host) for every PCI device check: it fires then, and only then
def _missing(host):
    del host.pci[GPU]


def _bridge(host):
    host.pci[GPU].class_code = '0x060400'


def _peer_on_host_driver(host):
    pci(host, PEER, class_code='0x020000', driver='e1000e', group=1)


def _critical_peer(host):
    pci(host, PEER, class_code='0x020000', driver='e1000e', group=1)
    host.critical[PEER] = ['the network device of the default route (eno1)']


def _companion(host):
    pci(host, AUDIO, class_code='0x040300', driver='snd_hda_intel', group=2)


PCI_CASES = {
    'exists': _missing,
    'sysfs': lambda host: host.pci[GPU].problems.append('%s: the driver link points nowhere' % GPU),
    'endpoint': _bridge,
    'host_critical': lambda host: host.critical.setdefault(GPU, []).append('the boot VGA device (boot_vga=1)'),
    'bind': lambda host: setattr(host.pci[GPU], 'driver', 'nouveau'),
    'iommu': lambda host: host.groups.clear(),
    'group_critical': _critical_peer,
    'group': _peer_on_host_driver,
    'vfio': lambda host: host.iommu.update(vfio_device=False),
    'sriov_pf': lambda host: setattr(host.pci[GPU], 'sriov_numvfs', 2),
    'reset': lambda host: setattr(host.pci[GPU], 'reset_methods', []),
    'companion': _companion,
    'interrupt_remapping': lambda host: host.iommu.update(interrupt_remapping=False),
    'acs_override': lambda host: host.iommu.update(acs_override=True),
    'host_mounted': lambda host: host.mounted.setdefault(GPU, []).append('the controller of /srv (ext4 on /dev/sdb1)'),
    'host_input': lambda host: host.inputs.setdefault(GPU, []).append('1-2 (Logitech keyboard)'),
    'group_open': lambda host: host.group_users.setdefault('1', []).append({'pid': 42, 'comm': 'qemu', 'guest': 'db'}),
}


@pytest.mark.parametrize('guard', sorted(PCI_CASES))
def test_each_pci_device_check_alone(guard):
    assert run(guard, subject(fine_host())) == []
    host = fine_host()
    PCI_CASES[guard](host)
    fired = run(guard, subject(host))
    assert [finding.guard for finding in fired] == [guard] * len(fired) and fired, guard
    assert all(finding.message for finding in fired)


def test_every_pci_device_guard_is_covered():
    device_guards = {name for name, guard in guards.GUARDS.items() if 'pci' in guard.checks}
    request_guards = {'ids', 'sriov', 'in_use_live', 'in_use_config', 'pf_vf', 'mdev_parent'}
    held = {'group_held_live', 'group_held_config'}
    assert device_guards == set(PCI_CASES) | request_guards | held


@pytest.mark.parametrize('live, guard', [(True, 'group_held_live'), (False, 'group_held_config')])
def test_group_held_by_another_guest(live, guard):
    host = fine_host()
    pci(host, PEER, class_code='0x020000', driver='vfio-pci', group=1)
    usage = {('pci', PEER): [{'domain': 'db', 'live': live, 'config': True}]}
    fired = run(guard, subject(host, usage=usage, domain_name='web'))
    assert [finding.guard for finding in fired] == [guard] and 'guest db' in fired[0].message
    other = 'group_held_config' if live else 'group_held_live'
    assert run(other, subject(host, usage=usage, domain_name='web')) == []
    # the peer going along with the device is no conflict; nor is the guest's own use
    assert run(guard, subject(host, usage=usage, domain_name='web', together=[PEER])) == []
    assert run(guard, subject(host, usage=usage, domain_name='db')) == []


def test_group_open_by_the_guest_that_gets_the_device_is_no_finding():
    host = fine_host()
    host.group_users['1'] = [{'pid': 42, 'comm': 'qemu', 'guest': 'web'}]
    assert run('group_open', subject(host, domain_name='web')) == []
    assert run('group_open', subject(host, domain_name='db'))[0].guard == 'group_open'


def test_request_guards_need_a_request():
    host = fine_host()
    pci(host, PF, class_code='0x020000', group=3, vfs=[VF])
    pci(host, VF, class_code='0x020000', group=4, physfn=PF)
    usage = {('pci', GPU): [{'domain': 'db', 'live': True, 'config': True}],
             ('pci', PF): [{'domain': 'db', 'live': False, 'config': True}]}
    for guard in ('ids', 'sriov', 'in_use_live', 'in_use_config', 'pf_vf', 'mdev_parent'):
        assert run(guard, subject(host, VF, usage=usage)) == [], guard  # judged alone: no request, no finding
    request = {'type': 'sriov_vf', 'address': GPU, 'vendor': '0x8086'}
    assert [f.guard for f in run('ids', subject(host, request=request))] == ['ids']
    assert [f.guard for f in run('sriov', subject(host, request=request))] == ['sriov']
    assert run('sriov', subject(host, request=dict(request, address=VF))) == []
    assert [f.guard for f in run('in_use_live', subject(host, request=request, usage=usage))] == ['in_use_live']
    assert run('in_use_config', subject(host, request=request, usage=usage)) == []
    vf_request = {'type': 'pci', 'address': VF}
    assert [f.message for f in run('pf_vf', subject(host, request=vf_request, usage=usage))] == \
        ['its PF %s is assigned to domain db' % PF]
    assert [f.guard for f in run('pf_vf', subject(host, request=vf_request, together=[PF]))] == ['pf_vf']
    assert [f.guard for f in run('mdev_parent', subject(host, request=request, mdev_parents={GPU: {MDEV}}))] == \
        ['mdev_parent']


def test_usb_checks_alone():
    host = fine_host()
    keyboard = usb(host)
    by_ids = {'type': 'usb', 'vendor': '0x046d', 'product': '0xc31c', 'bus': None, 'device': None}
    by_bus = {'type': 'usb', 'vendor': '0x1234', 'product': '0x5678', 'bus': 1, 'device': 3}

    def usb_subject(request, **kwargs):
        return guards.Subject(host, 'usb', request=request, **kwargs)
    for guard in ('usb_present', 'ambiguous', 'sysfs', 'endpoint', 'host_critical', 'in_use_live', 'in_use_config'):
        assert run(guard, usb_subject(by_ids)) == [], guard
    assert [f.guard for f in run('ids', usb_subject(by_bus))] == ['ids']
    assert run('usb_present', usb_subject(dict(by_bus, device=9)))[0].message == 'no USB device at bus 1 device 9'
    keyboard.device_class = '09'
    assert run('endpoint', usb_subject(by_ids))[0].guard == 'endpoint'
    host.critical_usb['1-2'] = ['the USB device holding / (/dev/sdb1)']
    assert run('host_critical', usb_subject(by_ids))[0].guard == 'host_critical'
    usage = {('usb-address', '1.3'): [{'domain': 'desk', 'live': False, 'config': True}]}
    assert run('in_use_config', usb_subject(by_ids, usage=usage))[0].message.startswith('USB device 1-2 (bus 1 device 3)')
    usb(host, name='1-3', device=4)
    assert run('ambiguous', usb_subject(by_ids))[0].guard == 'ambiguous'
    # settled: an ambiguous request is judged no further
    assert [f.guard for f in guards.findings(usb_subject(by_ids))] == ['ambiguous']


def test_mdev_checks_alone():
    host = fine_host()
    request = {'type': 'mdev', 'uuid': MDEV, 'model': 'nvidia-222'}

    def mdev_subject(**kwargs):
        return guards.Subject(host, 'mdev', request=request, **kwargs)
    assert run('mdev_exists', mdev_subject())[0].guard == 'mdev_exists'
    assert run('ids', mdev_subject()) == [] and run('mdev_parent', mdev_subject()) == []
    host.mdevs[MDEV] = model.MdevDevice(MDEV, GPU, 'nvidia-223')
    assert run('mdev_exists', mdev_subject()) == []
    assert run('ids', mdev_subject())[0].message == \
        'mediated device %s is of type nvidia-223, not nvidia-222 as configured' % MDEV
    assert run('mdev_parent', mdev_subject(together=[GPU]))[0].guard == 'mdev_parent'
    usage = {('pci', GPU): [{'domain': 'db', 'live': True, 'config': True}]}
    assert run('mdev_parent', mdev_subject(usage=usage))[0].message == 'its parent %s is passed through to domain db' % GPU


def test_request_list_guards():
    host = fine_host()
    normalize = guards.GUARDS['address'].checks['request']
    with pytest.raises(ValueError, match="'01:00' is not a PCI address"):
        normalize({'type': 'pci', 'address': '01:00'})
    one = normalize({'type': 'pci', 'address': '01:00.0'})
    assert one['address'] == GPU
    duplicates = guards.GUARDS['duplicate'].checks['requests']
    assert duplicates(host, [('a', one)]) == []
    found = duplicates(host, [('a', one), ('b', normalize({'type': 'pci', 'address': GPU}))])
    assert [(label, finding.guard, finding.message) for label, finding in found] == [('b', 'duplicate', 'the same device as a')]


def test_a_settling_guard_ends_the_run():
    host = fine_host()
    assert [f.guard for f in guards.assess_pci(host, '0000:09:00.0')] == ['exists']
