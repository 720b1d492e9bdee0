# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The sysfs data source: a ``model.Host`` read from sysfs and procfs below a root.

``read_host(root)`` (or ``SysfsSource(root).read_host()``) reads PCI devices (ids, class, driver, IOMMU
group, NUMA node, ``boot_vga``, reset methods, SR-IOV PF/VF links, mdev types), USB devices, IOMMU groups,
mediated devices, the IOMMU/vfio state of the kernel, the processes holding vfio groups open, and marks
the host-critical devices (``critical``). Everything is read below ``root`` with symlinks resolved inside
it, so tests (and ``vfio_bind``) can point it at a fixture tree. Nothing here writes. A tree that is not
what the kernel would write is reported in ``Host.problems``, never an exception.
"""

from __future__ import annotations

import os
import re

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import below_root, critical, model, source


USB_DEVICE_RE = re.compile(r'^(?:usb\d+|\d+-\d+(?:\.\d+)*)$')


# kernel modules reported in the host facts
VFIO_MODULES = ('vfio', 'vfio_pci', 'vfio_pci_core', 'vfio_iommu_type1', 'vfio_virqfd', 'iommufd', 'mdev',
                'kvm', 'kvm_intel', 'kvm_amd')


# kernel command line parameters that matter for passthrough
CMDLINE_KEYS = ('intel_iommu', 'amd_iommu', 'iommu', 'iommu.passthrough', 'intremap', 'vfio-pci.ids',
                'vfio_pci.ids', 'vfio_iommu_type1.allow_unsafe_interrupts', 'pcie_acs_override', 'rd.driver.pre')


# /sys/class/iommu entry name prefix -> IOMMU kind; then ACPI tables -> kind
IOMMU_UNIT_KINDS = (('dmar', 'intel'), ('ivhd', 'amd'), ('smmu', 'arm-smmu'), ('virtio', 'virtio'))


IOMMU_FIRMWARE_TABLES = (('DMAR', 'intel'), ('IVRS', 'amd'), ('IORT', 'arm-smmu'), ('VIOT', 'virtio'))


def _read_pci_device(sysroot, address, path):
    dev = model.PciDevice(address, path)
    for attribute in ('vendor', 'device', 'subsystem_vendor', 'subsystem_device', 'class', 'revision'):
        value = sysroot.read(path + '/' + attribute)
        if value is not None:
            value = value.lower()
        setattr(dev, 'class_code' if attribute == 'class' else attribute, value)
    for attribute in ('vendor', 'device', 'class'):
        value = getattr(dev, 'class_code' if attribute == 'class' else attribute)
        if value is None or below_root.int_or_none(value, 16) is None:
            dev.problems.append('%s: the %s file is missing or not a hex number (%r)' % (address, attribute, value))
    if sysroot.islink(path + '/driver'):
        target = sysroot.readlink(path + '/driver') or ''
        if sysroot.resolve(path + '/driver') is None:
            dev.problems.append('%s: the driver link points to %s, which does not exist (dangling link)'
                                % (address, target))
        else:
            dev.driver = os.path.basename(target.rstrip('/'))
    override = sysroot.read(path + '/driver_override')
    dev.driver_override = None if override in (None, '', '(null)') else override
    if sysroot.islink(path + '/iommu_group'):
        resolved = sysroot.resolve(path + '/iommu_group')
        name = os.path.basename(resolved) if resolved else None
        if name is None:
            dev.problems.append('%s: the iommu_group link points to %s, which does not exist'
                                % (address, sysroot.readlink(path + '/iommu_group')))
        elif not name.isdigit():
            dev.problems.append('%s: the iommu_group link points to %r, which is not a group number'
                                % (address, name))
        else:
            dev.iommu_group = int(name)
    dev.numa_node = below_root.int_or_none(sysroot.read(path + '/numa_node'))
    boot_vga = sysroot.read(path + '/boot_vga')
    dev.boot_vga = None if boot_vga is None else boot_vga == '1'
    reset_method = sysroot.read(path + '/reset_method')
    if reset_method is not None:
        dev.reset_methods = reset_method.split()
    elif sysroot.exists(path + '/reset'):
        dev.reset_methods = ['reset']
    elif sysroot.exists(path + '/config'):
        dev.reset_methods = []  # a real device directory without reset support
    dev.sriov_totalvfs = below_root.int_or_none(sysroot.read(path + '/sriov_totalvfs'))
    dev.sriov_numvfs = below_root.int_or_none(sysroot.read(path + '/sriov_numvfs'))
    virtfns = []
    for entry in sysroot.listdir(path):
        if entry.startswith('virtfn') and entry[6:].isdigit():
            resolved = sysroot.resolve(path + '/' + entry)
            if resolved is None:
                dev.problems.append('%s: %s points to %s, which does not exist'
                                    % (address, entry, sysroot.readlink(path + '/' + entry)))
            else:
                virtfns.append((int(entry[6:]), os.path.basename(resolved)))
        elif _ids.PCI_NAME_RE.match(entry) and sysroot.isdir(path + '/' + entry) \
                and not sysroot.islink(path + '/' + entry):
            dev.children.append(entry)
    dev.vfs = [name for _index, name in sorted(virtfns)]
    if sysroot.islink(path + '/physfn'):
        resolved = sysroot.resolve(path + '/physfn')
        if resolved is None:
            dev.problems.append('%s: physfn points to %s, which does not exist'
                                % (address, sysroot.readlink(path + '/physfn')))
        else:
            dev.physfn = os.path.basename(resolved)
    parent = os.path.basename(os.path.dirname(path))
    dev.parent = parent if _ids.PCI_NAME_RE.match(parent) else None
    dev.mdev_types = _read_mdev_types(sysroot, path, address)
    return dev


def _read_mdev_types(sysroot, path, parent):
    types = []
    base = path + '/mdev_supported_types'
    for type_id in sysroot.listdir(base):
        mdev_type = model.MdevType(type_id, parent)
        mdev_type.name = sysroot.read('%s/%s/name' % (base, type_id))
        mdev_type.available_instances = below_root.int_or_none(sysroot.read('%s/%s/available_instances' % (base, type_id)))
        mdev_type.device_api = sysroot.read('%s/%s/device_api' % (base, type_id))
        mdev_type.description = sysroot.read('%s/%s/description' % (base, type_id))
        mdev_type.devices = [name for name in sysroot.listdir('%s/%s/devices' % (base, type_id))
                             if _ids.CANONICAL_UUID_RE.match(name)]
        types.append(mdev_type)
    return types


def _read_groups(sysroot, host):
    base = 'sys/kernel/iommu_groups'
    for name in sysroot.listdir(base):
        if not name.isdigit():
            host.problems.append('%s/%s: an IOMMU group directory whose name is not a number; ignored'
                                 % (base, name))
            continue
        members = []
        for member in sysroot.listdir('%s/%s/devices' % (base, name)):
            if _ids.PCI_NAME_RE.match(member):
                members.append(member)
            elif _ids.CANONICAL_UUID_RE.match(member):
                continue  # a mediated device: its group is its own (see model.MdevDevice.iommu_group)
            else:
                host.problems.append('IOMMU group %s: member %r is not a PCI device; ignored' % (name, member))
        host.groups[int(name)] = sorted(members)
        group_type = sysroot.read('%s/%s/type' % (base, name))
        if group_type:
            host.group_types[int(name)] = group_type


def _read_pci(sysroot, host):
    base = 'sys/bus/pci/devices'
    for name in sysroot.listdir(base):
        if not _ids.PCI_NAME_RE.match(name):
            host.problems.append('%s/%s: not a PCI address; ignored' % (base, name))
            continue
        path = sysroot.resolve('%s/%s' % (base, name))
        if path is None:
            target = sysroot.readlink('%s/%s' % (base, name))
            host.problems.append('%s/%s: a dangling link (%s); ignored' % (base, name, target))
            continue
        host.pci[name] = _read_pci_device(sysroot, name, path)
    for number, members in host.groups.items():
        for member in members:
            dev = host.pci.get(member)
            if dev is None:
                host.problems.append('IOMMU group %d lists %s, which is not a PCI device on this host'
                                     % (number, member))
            elif dev.iommu_group is None and not any(member in p for p in dev.problems):
                dev.iommu_group = number
            elif dev.iommu_group is not None and dev.iommu_group != number:
                dev.problems.append('%s: its iommu_group link says %d but group %d lists it'
                                    % (member, dev.iommu_group, number))
    for dev in host.pci.values():
        if dev.iommu_group is not None and dev.iommu_group not in host.groups and host.groups:
            dev.problems.append('%s: its IOMMU group %d is not under sys/kernel/iommu_groups'
                                % (dev.address, dev.iommu_group))
        host.problems.extend(dev.problems)


def _read_mdevs(sysroot, host):
    base = 'sys/bus/mdev/devices'
    for uuid in sysroot.listdir(base):
        path = sysroot.resolve('%s/%s' % (base, uuid))
        if path is None or not _ids.CANONICAL_UUID_RE.match(uuid):
            host.problems.append('%s/%s: not a mediated device (dangling link or not a UUID); ignored'
                                 % (base, uuid))
            continue
        type_path = sysroot.resolve(path + '/mdev_type')
        group = os.path.basename((sysroot.readlink(path + '/iommu_group') or '').rstrip('/')) or None
        parent = os.path.basename(os.path.dirname(path))
        host.mdevs[uuid] = model.MdevDevice(uuid, parent, os.path.basename(type_path) if type_path else None,
                                            int(group) if group and group.isdigit() else None)


def _read_usb(sysroot, host):
    base = 'sys/bus/usb/devices'
    for name in sysroot.listdir(base):
        if not USB_DEVICE_RE.match(name):
            continue  # interfaces (1-1:1.0) and anything else
        path = sysroot.resolve('%s/%s' % (base, name))
        if path is None:
            host.problems.append('%s/%s: a dangling link; ignored' % (base, name))
            continue
        usb = model.UsbDevice(name, path)
        for attribute, field in (('idVendor', 'vendor'), ('idProduct', 'product'), ('manufacturer', 'manufacturer'),
                                 ('product', 'product_name'), ('serial', 'serial'), ('bDeviceClass', 'device_class'),
                                 ('speed', 'speed')):
            setattr(usb, field, sysroot.read(path + '/' + attribute))
        for field in ('vendor', 'product'):
            value = getattr(usb, field)
            if value is None or below_root.int_or_none(value, 16) is None:
                usb.problems.append('USB %s: id%s is missing or not hex (%r)' % (name, field.capitalize(), value))
                setattr(usb, field, None)
            else:
                setattr(usb, field, '0x%04x' % below_root.int_or_none(value, 16))
        usb.bus = below_root.int_or_none(sysroot.read(path + '/busnum'))
        usb.device = below_root.int_or_none(sysroot.read(path + '/devnum'))
        usb.controller = below_root.nearest(path, _ids.PCI_NAME_RE)
        usb.interface_classes = [sysroot.read('%s/%s/bInterfaceClass' % (path, entry)) or ''
                                 for entry in sysroot.listdir(path) if entry.startswith(name + ':')]
        host.problems.extend(usb.problems)
        host.usb[name] = usb


def _read_iommu(sysroot, host):
    params = below_root.parse_cmdline(host.cmdline)
    units = sysroot.listdir('sys/class/iommu')
    kind = None
    for unit in units:
        for prefix, unit_kind in IOMMU_UNIT_KINDS:
            if unit.startswith(prefix):
                kind = unit_kind
        if kind is None:
            for sub, sub_kind in (('intel-iommu', 'intel'), ('amd-iommu', 'amd')):
                if sysroot.isdir('sys/class/iommu/%s/%s' % (unit, sub)):
                    kind = sub_kind
    firmware = None
    for table, table_kind in IOMMU_FIRMWARE_TABLES:
        if sysroot.exists('sys/firmware/acpi/tables/' + table):
            firmware = table
            kind = kind or table_kind
            break
    interrupts = sysroot.read('proc/interrupts')
    if interrupts is None:
        remapping = None
    elif 'IR-' in interrupts:
        remapping = True
    elif 'PCI-MSI' in interrupts or 'IO-APIC' in interrupts:
        remapping = False
    else:
        remapping = None
    unsafe = sysroot.read('sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts')
    passthrough = params.get('iommu') == 'pt' or params.get('iommu.passthrough') in ('1', 'on') or \
        any(value == 'identity' for value in host.group_types.values())
    host.iommu = {
        'enabled': bool(host.groups),
        'kind': kind,
        'units': units,
        'firmware_table': firmware,
        'groups': len(host.groups),
        'passthrough_mode': bool(passthrough),
        'vfio_device': sysroot.exists('dev/vfio/vfio'),
        'iommufd_device': sysroot.exists('dev/iommu'),
        'vfio_pci_driver': sysroot.isdir('sys/bus/pci/drivers/vfio-pci'),
        'interrupt_remapping': remapping,
        'allow_unsafe_interrupts': None if unsafe is None else unsafe.upper() in ('Y', '1'),
        'acs_override': 'pcie_acs_override' in params,
        'modules': {module: sysroot.isdir('sys/module/' + module) for module in VFIO_MODULES},
        'cmdline': {key: params[key] for key in CMDLINE_KEYS if key in params},
    }


def _guest_name(arguments):
    """The guest name QEMU was started with (``-name guest=NAME,...`` as libvirt writes it, or ``-name NAME``)."""
    for index, argument in enumerate(arguments[:-1]):
        if argument == '-name':
            value = arguments[index + 1]
            for part in value.split(','):
                if part.startswith('guest='):
                    return part[len('guest='):]
            return value.split(',', 1)[0] or None
    return None


def read_group_users(sysroot):
    """{group (str): [{'pid', 'comm', 'guest'}]} for every ``/dev/vfio/N`` some process holds open, from
    ``proc/*/fd`` below root. ``guest`` is the QEMU guest name (None when the process is not a named guest)."""
    users = {}
    for pid in sysroot.listdir('proc'):
        if not pid.isdigit():
            continue
        groups = set()
        for fd in sysroot.listdir('proc/%s/fd' % pid):
            target = sysroot.readlink('proc/%s/fd/%s' % (pid, fd)) or ''
            if target.startswith('/dev/vfio/') and target[len('/dev/vfio/'):].isdigit():
                groups.add(target[len('/dev/vfio/'):])
        if not groups:
            continue
        arguments = (sysroot.read('proc/%s/cmdline' % pid) or '').split('\0')
        user = {'pid': int(pid), 'comm': sysroot.read('proc/%s/comm' % pid) or '?', 'guest': _guest_name(arguments)}
        for group in groups:
            users.setdefault(group, []).append(user)
    for group in users:
        users[group].sort(key=lambda user: user['pid'])
    return users


class SysfsSource(source.HostSource):
    """The host below ``root`` as sysfs and procfs show it. ``pci_ids`` (a ``_pci_ids.PciIds``) adds names."""

    name = 'sysfs'

    def __init__(self, root='/', pci_ids=None):
        self.root = root
        self.pci_ids = pci_ids

    def read_host(self):
        sysroot = below_root.SysRoot(self.root)
        host = model.Host(sysroot.root)
        host.cmdline = sysroot.read('proc/cmdline') or ''
        if not sysroot.isdir('sys/bus/pci'):
            host.problems.append('%s has no sys/bus/pci: not a Linux sysfs' % sysroot.path('sys'))
        _read_groups(sysroot, host)
        _read_pci(sysroot, host)
        _read_mdevs(sysroot, host)
        _read_usb(sysroot, host)
        _read_iommu(sysroot, host)
        host.group_users = read_group_users(sysroot)
        critical.mark_critical(sysroot, host)
        if self.pci_ids is not None:
            for dev in host.pci.values():
                vendor, device, subsystem = self.pci_ids.names(dev.vendor, dev.device, dev.subsystem_vendor,
                                                               dev.subsystem_device)
                dev.names = {'vendor': vendor, 'device': device, 'subsystem': subsystem,
                             'class': self.pci_ids.class_name(dev.class_code)}
        return host


def read_host(root='/', pci_ids=None):
    """Read the host below ``root`` (``SysfsSource``)."""
    return SysfsSource(root, pci_ids).read_host()
