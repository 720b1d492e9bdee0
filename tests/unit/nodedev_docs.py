# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Node device XML documents as libvirt's node device driver formats them (https://libvirt.org/formatnode.html),
for hosts this machine is not: SR-IOV PFs with VFs, IOMMU groups of several devices, mediated devices.

Used by the unit tests of the node-device reader and, as the mocked data source, by the functional tests that
run domain_devices over a remote URI (tests/functional/test_remote_guards.py).
"""

from __future__ import annotations


def _nodedev_name(address):
    return 'pci_' + address.replace(':', '_').replace('.', '_')


def _address(address):
    domain, bus, rest = address.split(':')
    slot, function = rest.split('.')
    return "<address domain='0x%s' bus='0x%s' slot='0x%s' function='0x%s'/>" % (domain, bus, slot, function)


def pci(address, vendor, product, class_code, driver=None, group=None, group_members=(), parent=None, vfs=None,
        max_vfs=None, physfn=None, mdev_types=()):
    """One PCI device; ``group_members`` are the other addresses of its IOMMU group."""
    domain, bus, rest = address.split(':')
    slot, function = rest.split('.')
    parts = ['<device>', '<name>%s</name>' % _nodedev_name(address),
             '<path>/sys/devices/pci0000:00/%s</path>' % address,
             '<parent>%s</parent>' % (_nodedev_name(parent) if parent else 'computer')]
    if driver:
        parts.append('<driver><name>%s</name></driver>' % driver)
    parts += ["<capability type='pci'>", '<class>%s</class>' % class_code,
              '<domain>%d</domain><bus>%d</bus><slot>%d</slot><function>%d</function>'
              % (int(domain, 16), int(bus, 16), int(slot, 16), int(function, 16)),
              "<product id='%s'>device %s</product>" % (product, product),
              "<vendor id='%s'>vendor %s</vendor>" % (vendor, vendor)]
    if physfn:
        parts.append("<capability type='phys_function'>%s</capability>" % _address(physfn))
    if vfs is not None:
        parts.append("<capability type='virt_functions' maxCount='%d'>%s</capability>"
                     % (max_vfs or len(vfs), ''.join(_address(vf) for vf in vfs)))
    if mdev_types:
        parts.append("<capability type='mdev_types'>%s</capability>" % ''.join(
            "<type id='%s'><name>%s</name><deviceAPI>vfio-pci</deviceAPI><availableInstances>%d</availableInstances>"
            "</type>" % (type_id, type_id.upper(), available) for type_id, available in mdev_types))
    if group is not None:
        parts.append("<iommuGroup number='%d'>%s</iommuGroup>"
                     % (group, ''.join(_address(member) for member in sorted(set(group_members) | {address}))))
    parts += ["<numa node='0'/>", '</capability>', '</device>']
    return '\n'.join(parts)


def mdev(uuid, parent, type_id, group):
    return ("<device><name>mdev_%s_%s</name><path>/sys/devices/pci0000:00/%s/%s</path><parent>%s</parent>"
            "<driver><name>vfio_mdev</name></driver><capability type='mdev'><type id='%s'/><uuid>%s</uuid>"
            "<iommuGroup number='%d'/></capability></device>"
            % (uuid.replace('-', '_'), _nodedev_name(parent)[4:], parent, uuid, _nodedev_name(parent), type_id, uuid,
               group))


def usb_device(name, controller, bus, device, vendor, product, parent='computer'):
    path = '/sys/devices/pci0000:00/%s/%s' % (controller, name)
    return ("<device><name>usb_%s</name><path>%s</path><parent>%s</parent><driver><name>usb</name></driver>"
            "<capability type='usb_device'><bus>%d</bus><device>%d</device><product id='%s'>product</product>"
            "<vendor id='%s'>vendor</vendor></capability></device>"
            % (name.replace('-', '_'), path, parent, bus, device, product, vendor))


def usb_interface(device_name, number, class_number):
    return ("<device><name>usb_%s_1_%d</name><parent>usb_%s</parent><capability type='usb'><number>%d</number>"
            "<class>%d</class><subclass>0</subclass><protocol>0</protocol></capability></device>"
            % (device_name.replace('-', '_'), number, device_name.replace('-', '_'), number, class_number))


PF, VF0, VF4 = '0000:01:00.0', '0000:01:10.0', '0000:01:10.4'
SHARED_A, SHARED_B = '0000:04:00.0', '0000:04:00.1'
GPU, MDEV_PARENT = '0000:02:00.0', '0000:05:00.0'
MDEV_UUID = '4b20d080-1b54-4048-85b3-a6a62d165c01'


def sriov_host():
    """A host with an SR-IOV PF and two VFs, two NICs sharing one IOMMU group, a GPU on vfio-pci, an mdev
    parent with one mediated device, a USB root hub with a keyboard behind it."""
    return [
        pci('0000:00:00.0', '0x8086', '0x3e30', '0x060000', group=0),
        pci('0000:00:1c.0', '0x8086', '0xa33c', '0x060400', driver='pcieport', group=1),
        pci('0000:00:14.0', '0x8086', '0xa36d', '0x0c0330', driver='xhci_hcd', group=7),
        pci(PF, '0x8086', '0x1521', '0x020000', driver='igb', group=2, parent='0000:00:1c.0', vfs=[VF0, VF4],
            max_vfs=7),
        pci(VF0, '0x8086', '0x1520', '0x020000', driver='vfio-pci', group=3, parent='0000:00:1c.0', physfn=PF),
        pci(VF4, '0x8086', '0x1520', '0x020000', driver='igbvf', group=4, parent='0000:00:1c.0', physfn=PF),
        pci(GPU, '0x10de', '0x1eb8', '0x030200', driver='vfio-pci', group=5),
        pci(SHARED_A, '0x8086', '0x10d3', '0x020000', driver='e1000e', group=6, group_members=[SHARED_B]),
        pci(SHARED_B, '0x8086', '0x10d3', '0x020000', driver='e1000e', group=6, group_members=[SHARED_A]),
        pci(MDEV_PARENT, '0x10de', '0x1db4', '0x030200', driver='nvidia', group=8,
            mdev_types=[('nvidia-63', 3), ('nvidia-64', 0)]),
        mdev(MDEV_UUID, MDEV_PARENT, 'nvidia-63', 9),
        usb_device('usb1', '0000:00:14.0', 1, 1, '0x1d6b', '0x0002'),
        usb_interface('usb1', 0, 9),
        usb_device('1-1', '0000:00:14.0', 1, 2, '0x046d', '0xc31c', parent='usb_usb1'),
        usb_interface('1-1', 0, 3),
    ]
