# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The device model every layer shares: PCI functions, USB devices, mdev types and devices, and the
``Host`` holding them with its IOMMU groups, IOMMU state and the host-critical marks. Plain objects
filled by a data source (``source``); nothing here reads or writes anything.
"""

from __future__ import annotations


# roles of PCI class codes; the longest matching prefix of the 6-digit class code wins
BRIDGE, HOST_BRIDGE, CHIPSET, DISPLAY, AUDIO, NETWORK, STORAGE, USB_CONTROLLER, OTHER = (
    'bridge', 'host_bridge', 'chipset', 'display', 'audio', 'network', 'storage', 'usb_controller', 'other')


PCI_CLASSES = {
    '0600': (HOST_BRIDGE, 'host bridge'),
    '0601': (CHIPSET, 'ISA bridge'),
    '0604': (BRIDGE, 'PCI-to-PCI bridge'),
    '0607': (BRIDGE, 'CardBus bridge'),
    '0609': (BRIDGE, 'semi-transparent PCI-to-PCI bridge'),
    '0c05': (CHIPSET, 'SMBus controller'),
    '0806': (CHIPSET, 'IOMMU'),
    '01': (STORAGE, 'storage controller'),
    '02': (NETWORK, 'network controller'),
    '03': (DISPLAY, 'display controller'),
    '0401': (AUDIO, 'audio device'),
    '0403': (AUDIO, 'HD audio device'),
    '0c03': (USB_CONTROLLER, 'USB controller'),
}


# roles that are never endpoints; roles that are host-critical by class
NOT_ENDPOINT_ROLES = frozenset((BRIDGE,))


CRITICAL_ROLES = frozenset((HOST_BRIDGE, CHIPSET))


# USB interface classes of the devices a person uses the host with (HID: keyboards, mice)
INPUT_INTERFACE_CLASSES = ('03',)


# drivers a device may be bound to and still belong to a viable group
VFIO_DRIVERS = ('vfio-pci',)


STUB_DRIVERS = ('pci-stub',)


def _class_role(class_code):
    """(role, label) for a class code such as '0x030000'."""
    text = (class_code or '').lower()
    if text.startswith('0x'):
        text = text[2:]
    for length in (6, 4, 2):
        row = PCI_CLASSES.get(text[:length])
        if row is not None:
            return row
    return OTHER, 'device'


def is_vfio_driver(driver):
    """Whether ``driver`` is vfio-pci or a vfio-pci variant driver (``mlx5_vfio_pci``)."""
    return driver is not None and (driver in VFIO_DRIVERS or driver.endswith('_vfio_pci')
                                   or driver.endswith('-vfio-pci'))


def group_member_viable(driver):
    """Whether a group member with this driver keeps a vfio group viable."""
    return driver is None or is_vfio_driver(driver) or driver in STUB_DRIVERS


class PciDevice:
    """One PCI function as sysfs shows it."""

    def __init__(self, address, path):
        self.address = address
        self.path = path  # real directory relative to root, e.g. sys/devices/pci0000:00/0000:00:01.0
        self.vendor = self.device = self.subsystem_vendor = self.subsystem_device = None
        self.class_code = self.revision = None
        self.driver = None
        self.driver_override = None
        self.iommu_group = None
        self.numa_node = None
        self.boot_vga = None
        self.reset_methods = None  # list, [] when the device has no reset, None when unknown
        self.sriov_totalvfs = self.sriov_numvfs = None
        self.vfs = []
        self.physfn = None
        self.parent = None  # address of the upstream bridge
        self.children = []  # addresses of the devices behind it (it is a bridge then)
        self.mdev_types = []
        self.problems = []
        self.names = {}

    @property
    def role(self):
        return _class_role(self.class_code)[0]

    @property
    def class_label(self):
        return _class_role(self.class_code)[1]

    @property
    def endpoint(self):
        return self.role not in NOT_ENDPOINT_ROLES and not self.children

    @property
    def slot(self):
        return self.address.rsplit('.', 1)[0]


class MdevType:
    def __init__(self, type_id, parent):
        self.type_id = type_id
        self.parent = parent
        self.name = self.device_api = self.description = None
        self.available_instances = None
        self.devices = []

    def as_dict(self):
        return {'type': self.type_id, 'parent': self.parent, 'name': self.name,
                'available_instances': self.available_instances, 'device_api': self.device_api,
                'description': self.description, 'devices': list(self.devices)}


class MdevDevice:
    def __init__(self, uuid, parent, type_id, iommu_group=None):
        self.uuid = uuid
        self.parent = parent
        self.type_id = type_id
        self.iommu_group = iommu_group  # a mediated device has an IOMMU group of its own

    def as_dict(self):
        return {'uuid': self.uuid, 'parent': self.parent, 'type': self.type_id}


class UsbDevice:
    def __init__(self, name, path):
        self.name = name
        self.path = path
        self.vendor = self.product = None
        self.bus = self.device = None
        self.manufacturer = self.product_name = self.serial = None
        self.device_class = None
        self.speed = None
        self.controller = None  # PCI address of the host controller
        self.interface_classes = []
        self.problems = []

    @property
    def input_device(self):
        return any(cls in INPUT_INTERFACE_CLASSES for cls in self.interface_classes)

    @property
    def root_hub(self):
        return self.name.startswith('usb')

    @property
    def hub(self):
        return self.root_hub or self.device_class == '09'

    def as_dict(self):
        return {'name': self.name, 'vendor': self.vendor, 'product': self.product, 'bus': self.bus,
                'device': self.device, 'manufacturer': self.manufacturer, 'product_name': self.product_name,
                'serial': self.serial, 'device_class': self.device_class, 'speed': self.speed,
                'hub': self.hub, 'controller': self.controller, 'problems': list(self.problems)}


class Host:
    """Everything ``read_host`` found below a root."""

    def __init__(self, root):
        self.root = root
        self.pci = {}
        self.usb = {}
        self.groups = {}  # number -> sorted member addresses
        self.group_types = {}
        self.mdevs = {}
        self.iommu = {}
        self.cmdline = ''
        self.critical = {}  # PCI address -> reasons (refused: host_critical)
        self.mounted = {}  # PCI address -> reasons (warned: host_mounted)
        self.inputs = {}  # PCI address of a USB controller -> the host's input devices behind it
        self.critical_usb = {}  # USB device name -> reasons
        self.group_users = {}  # IOMMU group number (str) -> processes holding /dev/vfio/N open
        self.problems = []
        self.pci_listing = 'under /sys/bus/pci/devices'   # where a PCI device that exists would be listed
        self.unavailable_ids = {}  # PciDevice attribute -> why this source cannot tell it

    def device(self, address):
        return self.pci.get(address)

    def group_members(self, address):
        dev = self.pci.get(address)
        if dev is None or dev.iommu_group is None:
            return []
        return list(self.groups.get(dev.iommu_group, []))

    @property
    def iommu_enabled(self):
        return bool(self.groups)

    def usb_by_address(self, bus, device):
        for usb in self.usb.values():
            if usb.bus == bus and usb.device == device:
                return usb
        return None

    def mdevs_of(self, address):
        return sorted(uuid for uuid, mdev in self.mdevs.items() if mdev.parent == address)

    def bindable_peers(self, address):
        """The other members of ``address``'s IOMMU group that the kernel needs on vfio-pci/pci-stub or
        unbound for the group to be viable: endpoints. PCI bridges (any driver is fine for them) and host
        bridges (no driver; libvirt and the kernel never bind them) are left out."""
        peers = []
        for member in self.group_members(address):
            dev = self.pci.get(member)
            if member != address and dev is not None and dev.endpoint and dev.role != HOST_BRIDGE:
                peers.append(member)
        return peers

    def open_by(self, group):
        """Processes holding ``/dev/vfio/<group>`` open (a running guest), as dicts (pid, comm, guest)."""
        return list(self.group_users.get(str(group), [])) if group is not None else []


def describe_users(users):
    """'guest web (pid 4242 qemu-system-x86)' for each user."""
    return ', '.join(('guest %s (pid %d %s)' % (user['guest'], user['pid'], user['comm'])) if user.get('guest')
                     else 'pid %d (%s)' % (user['pid'], user['comm']) for user in users)
