# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host as libvirt's node devices describe it: the data source of the passthrough guards when libvirt runs
on another machine (a ``qemu+ssh://`` or ``qemu+tls://`` URI), where this machine's sysfs says nothing.

``read_host(documents)`` turns node device XML documents (https://libvirt.org/formatnode.html) into the same
``model.Host`` the sysfs source builds, so the guards that judge a device are the very same code;
``NodeDeviceSource(connection)`` is the ``source.HostSource`` that reads them over a libvirt connection.
libvirt's node device driver reads the remote host's sysfs for us: existence, vendor/product ids, class,
driver, IOMMU group and its members, NUMA node, SR-IOV PF/VF links, mdev types and instances, USB devices
and their interfaces. What it does not carry is listed in ``NOT_CHECKED`` (the guards) and
``UNAVAILABLE_FACTS`` (the inventory fields): results name them per device, never silently.
"""

from __future__ import annotations

import posixpath

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import ConnectionLost, LibvirtFailure
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import model, source

SOURCE = 'libvirt node devices'

# (guard, what was not checked, why) per kind of device: the guards whose facts are not in node device XML
_NO_MOUNTS = "libvirt's node devices do not tell which filesystems (/, /boot, swap, ...) live on which disks"
_NO_ROUTES = "node devices name a NIC's interfaces but not the host's routes, bridges or bonds"
_NO_SUBSYSTEM_IDS = "libvirt's node devices do not carry subsystem ids"
_NO_BOOT_VGA = 'node devices do not carry the boot_vga flag of a display device'
_NO_DEV_NODES = "node devices do not show the host's /dev, /proc or kernel command line"
NOT_CHECKED = {
    'pci': (
        ('host_critical', "the root disk's controller (behind /, /boot, /usr, /var, swap)", _NO_MOUNTS),
        ('host_critical', 'the default-route NIC', _NO_ROUTES),
        ('host_critical', 'the boot VGA device', _NO_BOOT_VGA),
        ('group_critical', 'the same three for the other members of its IOMMU group',
         'node devices carry no mounts, routes or boot_vga flag'),
        ('host_mounted', 'other mounted filesystems on it', _NO_MOUNTS),
        ('group_open', 'processes other than libvirt guests holding /dev/vfio/N open', _NO_DEV_NODES),
        ('vfio', '/dev/vfio/vfio (the vfio modules loaded)', _NO_DEV_NODES),
        ('reset', 'its reset method', 'node devices do not carry reset_method'),
        ('interrupt_remapping', 'interrupt remapping', _NO_DEV_NODES),
        ('acs_override', 'pcie_acs_override on the kernel command line', _NO_DEV_NODES),
    ),
    'usb': (
        ('host_critical', 'a USB disk holding /, /boot, /boot/efi, /usr, /var or swap', _NO_MOUNTS),
    ),
    'mdev': (
        ('group_open', 'processes other than libvirt guests holding its /dev/vfio/N open', _NO_DEV_NODES),
    ),
}
NOT_CHECKED['sriov_vf'] = NOT_CHECKED['pci']
# inventory fields (host_devices_info's pci_devices[]) that node device XML does not carry
# the source contract (``source``): what a source cannot see, it says in Host.problems
NOT_VISIBLE = ("libvirt's node devices do not show the host's mounts, routes, boot VGA flag, /dev/vfio, processes or "
               'kernel command line: the guards that need them were not checked (not_checked, per device)')
UNAVAILABLE_FACTS = ('subsystem_vendor', 'subsystem_device', 'revision', 'driver_override', 'boot_vga',
                     'reset_methods', 'host_critical (only chipset functions are known)')


def not_checked(kind):
    """[{'guard', 'what', 'why'}] for a request type (pci, sriov_vf, usb, mdev) judged from node devices."""
    return [{'guard': guard, 'what': what, 'why': why} for guard, what, why in NOT_CHECKED.get(kind, ())]


class NodeDevicesUnavailable(Exception):
    """libvirt at that URI gives no node devices (a driver without them, such as the embedded one, or a host
    whose node device daemon is not running)."""


class NodeDeviceSource(source.HostSource):
    """The host libvirt at ``connection`` (a ``_libvirt.Connection``) runs on, from its node devices."""

    name = SOURCE

    def __init__(self, connection):
        self.connection = connection

    def read_host(self):
        return read_host(self.documents())

    def documents(self):
        """Every node device's XML. NodeDevicesUnavailable when libvirt lists none it could give (a lost
        connection stays ConnectionLost); a device that vanished between the list and its read is skipped."""
        try:
            devices = self.connection.node_devices()
        except ConnectionLost:
            raise
        except LibvirtFailure as exc:
            raise NodeDevicesUnavailable('%s gives no node devices: %s' % (self.connection.uri, exc)) from exc
        documents = []
        for device in devices:
            try:
                documents.append(self.connection.node_device_xml(device))
            except ConnectionLost:
                raise
            except LibvirtFailure:
                continue  # unplugged (or an mdev stopped) since the list was read: it is not there
        return documents


# -- reading one document ------------------------------------------------------------------------------

def _text(element, path):
    found = element.find(path)
    return (found.text or '').strip() if found is not None and found.text else None


def _int(text, base=10):
    try:
        return int(text, base)
    except (TypeError, ValueError):
        return None


def _address(element):
    """'dddd:bb:ss.f' from an <address domain= bus= slot= function=/> element; None when incomplete."""
    parts = [_int(element.get(part), 0) for part in ('domain', 'bus', 'slot', 'function')]
    if any(part is None for part in parts):
        return None
    return '%04x:%02x:%02x.%x' % tuple(parts)


def _pci_address(capability):
    parts = [_int(_text(capability, part), 0) for part in ('domain', 'bus', 'slot', 'function')]
    if any(part is None for part in parts):
        return None
    return '%04x:%02x:%02x.%x' % tuple(parts)


def _hex_id(element):
    if element is None or not element.get('id'):
        return None
    try:
        return _ids.hex_id(element.get('id'), element.tag)
    except ValueError:
        return None


class _Document:
    """One parsed node device: name, parent name, sysfs path, driver and its (first) capability element."""

    def __init__(self, text):
        root = _xml.parse(text, 'node device XML')
        self.name = _text(root, 'name') or ''
        self.parent = _text(root, 'parent')
        self.path = _text(root, 'path')
        self.driver = _text(root, 'driver/name')
        self.capability = root.find('capability')
        self.kind = self.capability.get('type') if self.capability is not None else None


def _mdev_uuid(doc):
    """An mdev's UUID, lower case; older libvirt gives it only in the name mdev_<uuid with underscores>[_parent].
    None when neither holds one."""
    uuid = (_text(doc.capability, 'uuid') or '').lower()
    if not uuid:
        uuid = doc.name[len('mdev_'):len('mdev_') + 36].replace('_', '-')
    return uuid if _ids.CANONICAL_UUID_RE.match(uuid) else None


def summary(text):
    """The parts of one node device document that host_devices_info and the mdev module use, as a dict:
    {'name', 'parent', 'type' (the first capability), 'address' (PCI), 'iommu_group', 'vendor', 'product',
    'uuid' and 'mdev_type' (mdev), 'bus' and 'device' (usb_device)}; missing parts are None.
    Unreadable XML raises ValueError."""
    doc = _Document(text)
    cap = doc.capability
    result = {'name': doc.name, 'parent': doc.parent, 'type': doc.kind, 'address': None, 'iommu_group': None,
              'vendor': None, 'product': None, 'uuid': None, 'mdev_type': None, 'bus': None, 'device': None}
    if doc.kind == 'pci':
        result['address'] = _pci_address(cap)
        group = cap.find('iommuGroup')
        result['iommu_group'] = _int(group.get('number')) if group is not None else None
    if doc.kind in ('pci', 'usb_device'):
        result['vendor'], result['product'] = _hex_id(cap.find('vendor')), _hex_id(cap.find('product'))
    if doc.kind == 'usb_device':
        result['bus'], result['device'] = _int(_text(cap, 'bus')), _int(_text(cap, 'device'))
    if doc.kind == 'mdev':
        mdev_type = cap.find('type')
        result['mdev_type'] = mdev_type.get('id') if mdev_type is not None else None
        result['uuid'] = _mdev_uuid(doc)
    return result


def _pci_device(doc, host):
    cap = doc.capability
    address = _pci_address(cap)
    if address is None:
        host.problems.append('node device %s: no complete PCI address; ignored' % doc.name)
        return
    dev = model.PciDevice(address, doc.path)
    dev.vendor, dev.device = _hex_id(cap.find('vendor')), _hex_id(cap.find('product'))
    dev.class_code = (_text(cap, 'class') or '').lower() or None
    dev.driver = doc.driver
    dev.names = {'vendor': _text(cap, 'vendor'), 'device': _text(cap, 'product')}
    group = cap.find('iommuGroup')
    if group is not None and _int(group.get('number')) is not None:
        dev.iommu_group = _int(group.get('number'))
        members = host.groups.setdefault(dev.iommu_group, [])
        for member in [address] + [_address(element) for element in group.iterfind('address')]:
            if member and member not in members:
                members.append(member)
    numa = cap.find('numa')
    dev.numa_node = _int(numa.get('node')) if numa is not None else None
    for sub in cap.iterfind('capability'):
        kind = sub.get('type')
        if kind == 'phys_function':
            found = sub.find('address')
            dev.physfn = _address(found) if found is not None else None
        elif kind == 'virt_functions':
            dev.sriov_totalvfs = _int(sub.get('maxCount'))
            dev.vfs = [vf for vf in (_address(element) for element in sub.iterfind('address')) if vf]
            dev.sriov_numvfs = len(dev.vfs)
        elif kind == 'mdev_types':
            for element in sub.iterfind('type'):
                mdev_type = model.MdevType(element.get('id'), address)
                mdev_type.name = _text(element, 'name')
                mdev_type.device_api = _text(element, 'deviceAPI')
                mdev_type.available_instances = _int(_text(element, 'availableInstances'))
                dev.mdev_types.append(mdev_type)
    dev.parent = _ids.pci_of_nodedev_name(doc.parent)
    if dev.role in model.CRITICAL_ROLES:  # the same rule as for sysfs: chipset functions by class
        host.critical.setdefault(address, []).append('a chipset function (%s, class %s)'
                                                     % (dev.class_label, dev.class_code))
    host.pci[address] = dev


def _mdev_device(doc, host):
    cap = doc.capability
    uuid = _mdev_uuid(doc)
    if uuid is None:
        host.problems.append('node device %s: a mediated device without a UUID; ignored' % doc.name)
        return
    mdev_type = cap.find('type')
    group = cap.find('iommuGroup')
    host.mdevs[uuid] = model.MdevDevice(uuid, _ids.pci_of_nodedev_name(doc.parent) or doc.parent,
                                        mdev_type.get('id') if mdev_type is not None else None,
                                        _int(group.get('number')) if group is not None else None)


def _usb_device(doc, host, by_nodedev_name):
    cap = doc.capability
    name = posixpath.basename(doc.path) if doc.path else doc.name
    usb = model.UsbDevice(name, doc.path)
    usb.vendor, usb.product = _hex_id(cap.find('vendor')), _hex_id(cap.find('product'))
    usb.manufacturer, usb.product_name = _text(cap, 'vendor'), _text(cap, 'product')
    usb.bus, usb.device = _int(_text(cap, 'bus')), _int(_text(cap, 'device'))
    usb.controller = _nearest_pci(doc.path)
    by_nodedev_name[doc.name] = usb
    host.usb[name] = usb


def _nearest_pci(path):
    for part in reversed((path or '').split('/')):
        if _ids.PCI_NAME_RE.match(part):
            return part
    return None


def _usb_interface(doc, by_nodedev_name):
    """A USB interface gives its device's class: hubs (09) are not endpoints, HID (03) are the host's input."""
    usb = by_nodedev_name.get(doc.parent)
    number = _int(_text(doc.capability, 'class'))
    if usb is None or number is None:
        return
    usb.interface_classes.append('%02x' % number)
    if number == 9:
        usb.device_class = '09'


def read_host(documents):
    """A ``model.Host`` from node device XML documents (strings); unreadable ones become problems."""
    host = model.Host(SOURCE)
    host.problems.append(NOT_VISIBLE)
    host.pci_listing = "among libvirt's node devices"
    host.unavailable_ids = {'subsystem_vendor': _NO_SUBSYSTEM_IDS, 'subsystem_device': _NO_SUBSYSTEM_IDS}
    docs = []
    for text in documents:
        try:
            docs.append(_Document(text))
        except ValueError as exc:
            host.problems.append('a node device could not be read: %s' % exc)
    usb_by_name = {}
    for doc in docs:  # PCI and USB devices first: interfaces and mdevs refer to them
        if doc.kind == 'pci':
            _pci_device(doc, host)
        elif doc.kind == 'usb_device':
            _usb_device(doc, host, usb_by_name)
    for doc in docs:
        if doc.kind == 'usb':
            _usb_interface(doc, usb_by_name)
        elif doc.kind == 'mdev':
            _mdev_device(doc, host)
    for dev in host.pci.values():
        if dev.parent in host.pci:
            host.pci[dev.parent].children.append(dev.address)
        if dev.physfn and dev.physfn in host.pci and dev.address not in host.pci[dev.physfn].vfs:
            host.pci[dev.physfn].vfs.append(dev.address)  # an older PF document may not list its VFs
    for dev in host.pci.values():
        dev.children.sort()
        for mdev_type in dev.mdev_types:
            mdev_type.devices = sorted(uuid for uuid, mdev in host.mdevs.items()
                                       if mdev.parent == dev.address and mdev.type_id == mdev_type.type_id)
    for members in host.groups.values():
        members.sort()
    for name in sorted(host.usb):
        usb = host.usb[name]
        if usb.input_device and usb.controller:
            label = ' '.join(part for part in (usb.manufacturer, usb.product_name) if part) or 'input device'
            host.inputs.setdefault(usb.controller, []).append('%s (%s)' % (name, label))
    vfio_bound = any(model.is_vfio_driver(dev.driver) for dev in host.pci.values())
    host.iommu = {
        'enabled': bool(host.groups),
        'groups': len(host.groups),
        # a device on vfio-pci proves the vfio modules are loaded; otherwise it is not known (None: no finding)
        'vfio_device': True if vfio_bound else None,
        'interrupt_remapping': None,
        'acs_override': None,
        'source': SOURCE,
    }
    return host
