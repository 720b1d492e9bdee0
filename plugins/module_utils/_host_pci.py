# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host's passthrough-relevant hardware, read from sysfs under a root (pure: no libvirt, no Ansible).

``read_host(root)`` builds a ``Host``: PCI devices (ids, class, driver, IOMMU group, NUMA node,
``boot_vga``, reset methods, SR-IOV PF/VF links, mdev types), USB devices, IOMMU groups, mediated
devices, the IOMMU/vfio state of the kernel and the host-critical devices (the controller behind ``/``,
the NIC of the default route, the boot VGA, chipset functions). Everything is read below ``root`` and
symlinks are resolved inside it, so tests (and ``vfio_bind``) can point it at a fixture tree. Nothing
here writes anything. A tree that is not what the kernel would write is reported in ``Host.problems``,
never an exception.

On top of the model:

- ``normalize_pci_address(text)``: ``DDDD:BB:SS.F`` (or ``BB:SS.F``), lower case, or ValueError.
- ``verdict(host, address)``: ``ready`` / ``needs_preparation`` (+ steps) / ``refused`` (+ reasons).
- ``usage_from_domains(domains)``: which domains use which host device, from their XML.
- ``check_assignment(host, requests, domain_name, usage, force=False)``: the guards of a set of
  hostdev / SR-IOV requests for one domain, as error and warning messages.

Every guard is a row of ``GUARDS``: what it does to a verdict, what it does to an assignment and whether
``force`` may turn its error into a warning.
"""

from __future__ import annotations

import os
import re

from ansible_collections.virtdev.libvirt.plugins.module_utils import _host_root, _ids, _xml

# identifiers are read in one place, the way libvirt reads them (_ids); the names stay for callers
PCI_NAME_RE = _ids.PCI_NAME_RE
USB_DEVICE_RE = re.compile(r'^(?:usb\d+|\d+-\d+(?:\.\d+)*)$')
UUID_RE = _ids.CANONICAL_UUID_RE  # how sysfs names a mediated device

PCI_HINT = _ids.PCI_HINT

# -- data tables -------------------------------------------------------------------------------------

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

# mounts whose block device's controller the host cannot lose: refused (host_critical); every other mounted
# filesystem on a local block device gives a warning (host_mounted); active swap is refused (pages the kernel
# swapped out would be lost)
CRITICAL_MOUNTS = ('/', '/boot', '/boot/efi', '/efi', '/usr', '/var')
# filesystems without a local block device (nothing to protect, nothing to report)
NON_BLOCK_FILESYSTEMS = ('tmpfs', 'overlay', 'rootfs', 'ramfs', 'nfs', 'nfs4', 'cifs', 'smb3', 'virtiofs', '9p',
                         'fuse', 'squashfs', 'proc', 'sysfs', 'devtmpfs', 'devpts', 'cgroup', 'cgroup2', 'securityfs',
                         'pstore', 'efivarfs', 'bpf', 'debugfs', 'tracefs', 'configfs', 'fusectl', 'mqueue',
                         'hugetlbfs', 'autofs', 'binfmt_misc', 'rpc_pipefs', 'nsfs', 'ceph', 'glusterfs')
# USB interface classes of the devices a person uses the host with (HID: keyboards, mice)
INPUT_INTERFACE_CLASSES = ('03',)
# the kernel datapath device every Open vSwitch port hangs under (lower_* links)
OVS_DATAPATH = 'ovs-system'

# drivers a device may be bound to and still belong to a viable group
VFIO_DRIVERS = ('vfio-pci',)
STUB_DRIVERS = ('pci-stub',)
# kernel modules reported in the host facts
VFIO_MODULES = ('vfio', 'vfio_pci', 'vfio_pci_core', 'vfio_iommu_type1', 'vfio_virqfd', 'iommufd', 'mdev',
                'kvm', 'kvm_intel', 'kvm_amd')
# kernel command line parameters that matter for passthrough
CMDLINE_KEYS = ('intel_iommu', 'amd_iommu', 'iommu', 'iommu.passthrough', 'intremap', 'vfio-pci.ids',
                'vfio_pci.ids', 'vfio_iommu_type1.allow_unsafe_interrupts', 'pcie_acs_override', 'rd.driver.pre')
# /sys/class/iommu entry name prefix -> IOMMU kind; then ACPI tables -> kind
IOMMU_UNIT_KINDS = (('dmar', 'intel'), ('ivhd', 'amd'), ('smmu', 'arm-smmu'), ('virtio', 'virtio'))
IOMMU_FIRMWARE_TABLES = (('DMAR', 'intel'), ('IVRS', 'amd'), ('IORT', 'arm-smmu'), ('VIOT', 'virtio'))
IOMMU_ENABLE_HINT = {
    'intel': 'add intel_iommu=on to the kernel command line',
    'amd': 'check that amd_iommu is not off on the kernel command line and the IOMMU is enabled in firmware',
}

# verdicts
READY, NEEDS_PREPARATION, REFUSED = 'ready', 'needs_preparation', 'refused'
# what a guard finding does to a verdict / to an assignment
REFUSE, PREPARE, WARN = 'refuse', 'prepare', 'warn'
ERROR, WARNING, IGNORE, UNMANAGED_ERROR = 'error', 'warning', 'ignore', 'unmanaged_error'


class Guard:
    """One host-side safety guard. ``overridable``: ``force`` turns its error into a warning."""

    def __init__(self, name, verdict, assignment, overridable, description):
        self.name = name
        self.verdict = verdict
        self.assignment = assignment
        self.overridable = overridable
        self.description = description


GUARDS = {guard.name: guard for guard in (
    Guard('address', REFUSE, ERROR, False, 'the PCI address, USB ids or mdev UUID are well formed'),
    Guard('exists', REFUSE, ERROR, False, 'the PCI device exists on the host'),
    Guard('sysfs', REFUSE, ERROR, False, "the device's sysfs entries are consistent (no dangling links)"),
    Guard('ids', REFUSE, ERROR, False, 'the vendor/product ids the user pinned match the device'),
    Guard('endpoint', REFUSE, ERROR, False, 'only endpoints are assigned: no PCI bridges, no USB hubs'),
    Guard('iommu', REFUSE, ERROR, True,
          'the IOMMU is on and the device has an IOMMU group (forced: the definition is written, the guest '
          'starts once the IOMMU is enabled)'),
    Guard('host_critical', REFUSE, ERROR, True,
          'not host-critical: the controller behind /, the default-route NIC, the boot VGA, host bridge, '
          'ISA bridge, SMBus, IOMMU'),
    Guard('group_critical', REFUSE, ERROR, True, 'the IOMMU group holds no host-critical device'),
    Guard('group', PREPARE, ERROR, True,
          'every other endpoint of the IOMMU group is bound to vfio-pci/pci-stub or unbound (forced: the '
          'guest cannot start until the group is made viable)'),
    Guard('vfio', PREPARE, WARNING, True, '/dev/vfio/vfio exists (the vfio modules are loaded)'),
    Guard('bind', PREPARE, UNMANAGED_ERROR, True,
          'the device is bound to vfio-pci (libvirt does it for managed hostdevs)'),
    Guard('sriov_pf', PREPARE, WARNING, True, 'an SR-IOV PF given to a guest has no VFs enabled'),
    Guard('group_open', REFUSE, ERROR, False,
          'no running guest holds the IOMMU group of the device or of one of its mediated devices open '
          '(/dev/vfio/N): unbinding it would block in the kernel until that guest stops'),
    Guard('group_held_live', REFUSE, ERROR, False,
          'no other endpoint of its IOMMU group is assigned to another running guest (libvirt refuses to share '
          'a group across guests)'),
    Guard('group_held_config', WARN, WARNING, True,
          "no other endpoint of its IOMMU group is in another guest's definition (only one of the two guests can "
          'run at a time)'),
    Guard('host_mounted', WARN, WARNING, True,
          'it holds no mounted filesystem other than the critical ones (unmount it before it leaves the host)'),
    Guard('host_input', WARN, WARNING, True, "it carries none of the host's keyboards and mice (USB HID devices)"),
    Guard('in_use_live', None, ERROR, False, 'not assigned to another running domain'),
    Guard('in_use_config', None, ERROR, True,
          "not in another domain's persistent definition (forced: only one of them can run at a time)"),
    Guard('duplicate', None, ERROR, False, 'the same device is not requested twice'),
    Guard('pf_vf', None, ERROR, False, 'a PF and its own VFs are never assigned at the same time'),
    Guard('sriov', None, ERROR, False, 'an SR-IOV interface source is a virtual function'),
    Guard('mdev_parent', None, ERROR, False,
          'a device is not passed through while its mediated devices are in use, nor with them'),
    Guard('mdev_exists', REFUSE, ERROR, True,
          'the mediated device exists (forced: the guest starts once it has been created)'),
    Guard('usb_present', REFUSE, ERROR, True,
          'the USB device is plugged in (forced: the guest starts once it is plugged in)'),
    Guard('ambiguous', None, ERROR, False, 'USB vendor:product ids name a single device, else bus and device'),
    Guard('companion', WARN, WARNING, True, "the device's other functions (a GPU's audio) go along with it"),
    Guard('reset', WARN, WARNING, True, 'the device has a reset method'),
    Guard('interrupt_remapping', WARN, WARNING, True, 'interrupt remapping is enabled'),
    Guard('acs_override', WARN, WARNING, True, 'IOMMU groups are not faked by pcie_acs_override'),
)}


class Finding:
    """A guard that fired for a device; ``step`` is the preparation that would satisfy it."""

    def __init__(self, guard, message, step=None):
        if guard not in GUARDS:
            raise KeyError('unknown guard %r' % guard)
        self.guard = guard
        self.message = message
        self.step = step

    def as_dict(self):
        return {'guard': self.guard, 'message': self.message, 'overridable': GUARDS[self.guard].overridable}

    def __repr__(self):
        return 'Finding(%r, %r)' % (self.guard, self.message)


# -- addresses -------------------------------------------------------------------------------------------

def normalize_pci_address(text):
    """'DDDD:BB:SS.F' or 'BB:SS.F' (domain 0000) -> canonical lower-case 'dddd:bb:ss.f'; ValueError naming
    the value otherwise (``_ids.parse_pci``)."""
    return _ids.pci_text(text, None)


def normalize_id(value, what):
    """'0x8086' / '8086' / 32902 -> '0x8086' (libvirt's spelling); ValueError naming ``what`` otherwise."""
    return _ids.hex_id(value, what)


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


def _is_vfio_driver(driver):
    return driver is not None and (driver in VFIO_DRIVERS or driver.endswith('_vfio_pci')
                                   or driver.endswith('-vfio-pci'))


def is_vfio_driver(driver):
    """Whether ``driver`` is vfio-pci or a vfio-pci variant driver (``mlx5_vfio_pci``)."""
    return _is_vfio_driver(driver)


def group_member_viable(driver):
    """Whether a group member with this driver keeps a vfio group viable."""
    return driver is None or _is_vfio_driver(driver) or driver in STUB_DRIVERS


# -- reading below a root ------------------------------------------------------------------------------

class SysRoot:
    """Read-only access to files below ``root``; symlinks are resolved without leaving it."""

    def __init__(self, root='/'):
        self.root = os.path.abspath(root)

    def path(self, relative):
        return os.path.join(self.root, relative.lstrip('/'))

    def _real(self, relative):
        """The full path to open: below another root, links are resolved inside it first."""
        if self.root == '/':
            return self.path(relative)
        resolved = self.resolve(relative)
        return None if resolved is None else os.path.join(self.root, resolved)

    def read(self, relative):
        """The stripped text of a file, or None when it is missing or unreadable."""
        full = self._real(relative)
        if full is None:
            return None
        try:
            with open(full, 'rb') as handle:
                return handle.read(65536).decode('utf-8', 'replace').strip()
        except (OSError, ValueError):
            return None

    def lines(self, relative):
        text = self.read(relative)
        return text.splitlines() if text else []

    def exists(self, relative):
        return os.path.lexists(self.path(relative))

    def isdir(self, relative):
        full = self._real(relative)
        return full is not None and os.path.isdir(full)

    def listdir(self, relative):
        full = self._real(relative)
        if full is None:
            return []
        try:
            return sorted(os.listdir(full))
        except OSError:
            return []

    def readlink(self, relative):
        try:
            return os.readlink(self.path(relative))
        except OSError:
            return None

    def islink(self, relative):
        return os.path.islink(self.path(relative))

    def resolve(self, relative):
        """The real path (relative to root, no leading slash) of ``relative``; None when dangling.

        Absolute link targets are taken relative to the root and ``..`` stops at the root, so a fixture
        tree (or a chroot) is never left (``_host_root``, the same rule as for writes).
        """
        return _host_root.resolve(self.root, relative)


# -- the model ---------------------------------------------------------------------------------------

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


def _int(text, base=10):
    try:
        return int(text, base)
    except (TypeError, ValueError):
        return None


def _nearest(path, pattern):
    """The last component of ``path`` matching ``pattern`` (the nearest ancestor of that kind)."""
    for part in reversed(path.split('/')):
        if pattern.match(part):
            return part
    return None


def _read_pci_device(sysroot, host, address, path):
    dev = PciDevice(address, path)
    for attribute in ('vendor', 'device', 'subsystem_vendor', 'subsystem_device', 'class', 'revision'):
        value = sysroot.read(path + '/' + attribute)
        if value is not None:
            value = value.lower()
        setattr(dev, 'class_code' if attribute == 'class' else attribute, value)
    for attribute in ('vendor', 'device', 'class'):
        value = getattr(dev, 'class_code' if attribute == 'class' else attribute)
        if value is None or _int(value, 16) is None:
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
    dev.numa_node = _int(sysroot.read(path + '/numa_node'))
    boot_vga = sysroot.read(path + '/boot_vga')
    dev.boot_vga = None if boot_vga is None else boot_vga == '1'
    reset_method = sysroot.read(path + '/reset_method')
    if reset_method is not None:
        dev.reset_methods = reset_method.split()
    elif sysroot.exists(path + '/reset'):
        dev.reset_methods = ['reset']
    elif sysroot.exists(path + '/config'):
        dev.reset_methods = []  # a real device directory without reset support
    dev.sriov_totalvfs = _int(sysroot.read(path + '/sriov_totalvfs'))
    dev.sriov_numvfs = _int(sysroot.read(path + '/sriov_numvfs'))
    virtfns = []
    for entry in sysroot.listdir(path):
        if entry.startswith('virtfn') and entry[6:].isdigit():
            resolved = sysroot.resolve(path + '/' + entry)
            if resolved is None:
                dev.problems.append('%s: %s points to %s, which does not exist'
                                    % (address, entry, sysroot.readlink(path + '/' + entry)))
            else:
                virtfns.append((int(entry[6:]), os.path.basename(resolved)))
        elif PCI_NAME_RE.match(entry) and sysroot.isdir(path + '/' + entry) \
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
    dev.parent = parent if PCI_NAME_RE.match(parent) else None
    dev.mdev_types = _read_mdev_types(sysroot, path, address)
    return dev


def _read_mdev_types(sysroot, path, parent):
    types = []
    base = path + '/mdev_supported_types'
    for type_id in sysroot.listdir(base):
        mdev_type = MdevType(type_id, parent)
        mdev_type.name = sysroot.read('%s/%s/name' % (base, type_id))
        mdev_type.available_instances = _int(sysroot.read('%s/%s/available_instances' % (base, type_id)))
        mdev_type.device_api = sysroot.read('%s/%s/device_api' % (base, type_id))
        mdev_type.description = sysroot.read('%s/%s/description' % (base, type_id))
        mdev_type.devices = [name for name in sysroot.listdir('%s/%s/devices' % (base, type_id))
                             if UUID_RE.match(name)]
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
            if PCI_NAME_RE.match(member):
                members.append(member)
            elif UUID_RE.match(member):
                continue  # a mediated device: its group is its own (see MdevDevice.iommu_group)
            else:
                host.problems.append('IOMMU group %s: member %r is not a PCI device; ignored' % (name, member))
        host.groups[int(name)] = sorted(members)
        group_type = sysroot.read('%s/%s/type' % (base, name))
        if group_type:
            host.group_types[int(name)] = group_type


def _read_pci(sysroot, host):
    base = 'sys/bus/pci/devices'
    for name in sysroot.listdir(base):
        if not PCI_NAME_RE.match(name):
            host.problems.append('%s/%s: not a PCI address; ignored' % (base, name))
            continue
        path = sysroot.resolve('%s/%s' % (base, name))
        if path is None:
            target = sysroot.readlink('%s/%s' % (base, name))
            host.problems.append('%s/%s: a dangling link (%s); ignored' % (base, name, target))
            continue
        host.pci[name] = _read_pci_device(sysroot, host, name, path)
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
        if path is None or not UUID_RE.match(uuid):
            host.problems.append('%s/%s: not a mediated device (dangling link or not a UUID); ignored'
                                 % (base, uuid))
            continue
        type_path = sysroot.resolve(path + '/mdev_type')
        group = os.path.basename((sysroot.readlink(path + '/iommu_group') or '').rstrip('/')) or None
        parent = os.path.basename(os.path.dirname(path))
        host.mdevs[uuid] = MdevDevice(uuid, parent, os.path.basename(type_path) if type_path else None,
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
        usb = UsbDevice(name, path)
        for attribute, field in (('idVendor', 'vendor'), ('idProduct', 'product'), ('manufacturer', 'manufacturer'),
                                 ('product', 'product_name'), ('serial', 'serial'), ('bDeviceClass', 'device_class'),
                                 ('speed', 'speed')):
            setattr(usb, field, sysroot.read(path + '/' + attribute))
        for field in ('vendor', 'product'):
            value = getattr(usb, field)
            if value is None or _int(value, 16) is None:
                usb.problems.append('USB %s: id%s is missing or not hex (%r)' % (name, field.capitalize(), value))
                setattr(usb, field, None)
            else:
                setattr(usb, field, '0x%04x' % _int(value, 16))
        usb.bus = _int(sysroot.read(path + '/busnum'))
        usb.device = _int(sysroot.read(path + '/devnum'))
        usb.controller = _nearest(path, PCI_NAME_RE)
        usb.interface_classes = [sysroot.read('%s/%s/bInterfaceClass' % (path, entry)) or ''
                                 for entry in sysroot.listdir(path) if entry.startswith(name + ':')]
        host.problems.extend(usb.problems)
        host.usb[name] = usb


def _parse_cmdline(text):
    params = {}
    for token in (text or '').split():
        if token == '--':
            break
        key, sep, value = token.partition('=')
        params[key] = value if sep else True
    return params


def _read_iommu(sysroot, host):
    params = _parse_cmdline(host.cmdline)
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


# -- who holds a vfio group open ------------------------------------------------------------------------

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


def vfio_group_users(sysroot, group):
    """The processes (``[{'pid', 'comm', 'guest'}]``) holding ``/dev/vfio/<group>`` open."""
    if group is None:
        return []
    return read_group_users(sysroot).get(str(group), [])


def describe_users(users):
    """'guest web (pid 4242 qemu-system-x86)' for each user."""
    return ', '.join(('guest %s (pid %d %s)' % (user['guest'], user['pid'], user['comm'])) if user.get('guest')
                     else 'pid %d (%s)' % (user['pid'], user['comm']) for user in users)


# -- host-critical devices ---------------------------------------------------------------------------

def _unescape_mount(text):
    return re.sub(r'\\([0-7]{3})', lambda match: chr(int(match.group(1), 8)), text)


def _block_path(sysroot, source):
    """The sysfs directory (relative) of the block device a mount source names, or None."""
    params = _parse_cmdline(sysroot.read('proc/cmdline'))
    if source == '/dev/root' and isinstance(params.get('root'), str):
        source = params['root']
    for tag, directory in (('UUID=', 'by-uuid'), ('PARTUUID=', 'by-partuuid'), ('LABEL=', 'by-label')):
        if source.startswith(tag):
            source = '/dev/disk/%s/%s' % (directory, source[len(tag):])
    if not source.startswith('/dev/'):
        return None
    resolved = sysroot.resolve(source)
    name = os.path.basename(resolved or source)
    path = sysroot.resolve('sys/class/block/' + name)
    if path is None and source.startswith('/dev/mapper/'):
        wanted = source[len('/dev/mapper/'):]
        for candidate in sysroot.listdir('sys/class/block'):
            if sysroot.read('sys/class/block/%s/dm/name' % candidate) == wanted:
                path = sysroot.resolve('sys/class/block/' + candidate)
                break
    if path is None and sysroot.root == '/':
        try:
            rdev = os.stat(source).st_rdev
            path = sysroot.resolve('sys/dev/block/%d:%d' % (os.major(rdev), os.minor(rdev)))
        except OSError:
            path = None
    return path


def _block_controllers(sysroot, path, seen=None):
    """PCI and USB devices a block device lives behind, following dm/md slaves.

    Returns ({pci address: 'controller' or 'upstream'}, {usb device name}).
    """
    seen = set() if seen is None else seen
    pci, usb = {}, set()
    if path in seen:
        return pci, usb
    seen.add(path)
    slaves = sysroot.listdir(path + '/slaves')
    for slave in slaves:
        slave_path = sysroot.resolve('sys/class/block/' + slave)
        if slave_path:
            more_pci, more_usb = _block_controllers(sysroot, slave_path, seen)
            for address, kind in more_pci.items():
                if pci.get(address) != 'controller':
                    pci[address] = kind
            usb |= more_usb
    if not slaves:
        parts = [part for part in path.split('/') if PCI_NAME_RE.match(part)]
        for address in parts[:-1]:
            pci.setdefault(address, 'upstream')
        if parts:
            pci[parts[-1]] = 'controller'
        usb_device = _nearest(path, re.compile(r'^\d+-\d+(?:\.\d+)*$'))
        if usb_device:
            usb.add(usb_device)
    return pci, usb


def _mounts(sysroot):
    """[(mountpoint, source, fstype)] from proc/mounts; a later mount over the same point hides the earlier."""
    mounts = {}
    for line in sysroot.lines('proc/mounts'):
        fields = line.split()
        if len(fields) >= 3:
            mounts[_unescape_mount(fields[1])] = (_unescape_mount(fields[0]), fields[2])
    return [(point, source, fstype) for point, (source, fstype) in mounts.items()]


def _udev_properties(sysroot, block_path):
    """The udev database properties (E:KEY=VALUE) of a block device, from run/udev/data/bMAJ:MIN."""
    number = sysroot.read(block_path + '/dev')
    properties = {}
    for line in sysroot.lines('run/udev/data/b%s' % number) if number else []:
        if line.startswith('E:') and '=' in line:
            key, _sep, value = line[2:].partition('=')
            properties[key] = value
    return properties


def _zfs_members(sysroot, pool):
    """sysfs paths of the block devices udev labels as members of ZFS pool ``pool``."""
    members = []
    for name in sysroot.listdir('sys/class/block'):
        path = sysroot.resolve('sys/class/block/' + name)
        if path is None:
            continue
        properties = _udev_properties(sysroot, path)
        if properties.get('ID_FS_TYPE') == 'zfs_member' and properties.get('ID_FS_LABEL') == pool:
            members.append(path)
    return members


def _btrfs_members(sysroot, path):
    """sysfs paths of every device of the btrfs filesystem that has the block device at ``path``."""
    name = os.path.basename(path)
    for fsid in sysroot.listdir('sys/fs/btrfs'):
        devices = sysroot.listdir('sys/fs/btrfs/%s/devices' % fsid)
        if name in devices:
            return [resolved for resolved in (sysroot.resolve('sys/class/block/' + device) for device in devices)
                    if resolved]
    return [path]


def _backing_paths(sysroot, source, fstype):
    """sysfs paths of the block devices a filesystem lives on ([] when none is found)."""
    if fstype == 'zfs':
        return _zfs_members(sysroot, source.split('/', 1)[0])
    path = _block_path(sysroot, source)
    if path is None:
        return []
    return _btrfs_members(sysroot, path) if fstype == 'btrfs' else [path]


def _containing_mount(mounts, path):
    """The mount (point, source, fstype) a file lives on: the longest mount point above it."""
    best = None
    for mount in mounts:
        point = mount[0].rstrip('/') + '/'
        if (path + '/').startswith(point) and (best is None or len(mount[0]) > len(best[0])):
            best = mount
    return best


def _host_storage(sysroot):
    """[(what, source, fstype, critical)] for every mounted local filesystem and active swap."""
    mounts = _mounts(sysroot)
    used = []
    for point, source, fstype in sorted(mounts):
        if fstype in NON_BLOCK_FILESYSTEMS or fstype == 'swap':
            continue
        used.append((point, source, fstype, point in CRITICAL_MOUNTS))
    for line in sysroot.lines('proc/swaps')[1:]:
        fields = line.split()
        if len(fields) < 2:
            continue
        name = _unescape_mount(fields[0])
        if fields[1] == 'file':
            mount = _containing_mount(mounts, name)
            if mount is not None:
                used.append(('swap file %s' % name, mount[1], mount[2], True))
        else:
            used.append(('active swap', name, 'swap', True))
    return used


def _mark_mounts(sysroot, host):
    """Refuse the controllers behind the critical mounts and swap, warn about those behind other mounts."""
    for what, source, fstype, critical in _host_storage(sysroot):
        paths = _backing_paths(sysroot, source, fstype)
        if not paths:
            if critical or source.startswith('/dev/') or fstype == 'zfs':
                hint = (' (no block device with udev ID_FS_TYPE=zfs_member and ID_FS_LABEL=%s under run/udev/data)'
                        % source.split('/', 1)[0]) if fstype == 'zfs' else ''
                host.problems.append('the block devices behind %s (%s on %s) were not found%s; their controllers '
                                     'are not known and not protected' % (what, fstype, source, hint))
            continue
        pci, usb = {}, set()
        for path in paths:
            more_pci, more_usb = _block_controllers(sysroot, path)
            for address, kind in more_pci.items():
                if pci.get(address) != 'controller':
                    pci[address] = kind
            usb |= more_usb
        target = host.critical if critical else host.mounted
        for address in sorted(pci):
            dev = host.pci.get(address)
            if dev is not None and not dev.endpoint:
                continue  # bridges on the way are refused as bridges anyway
            where = 'the controller of' if pci[address] == 'controller' else 'upstream of the controller of'
            reason = '%s %s (%s on %s)' % (where, what, fstype, source)
            if reason not in target.get(address, []):
                target.setdefault(address, []).append(reason)
        if critical:
            for name in sorted(usb):
                host.critical_usb.setdefault(name, []).append('the USB device holding %s (%s)' % (what, source))


def _default_route_ifaces(sysroot):
    ifaces = []
    for line in sysroot.lines('proc/net/route')[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[1] == '00000000' and fields[7] == '00000000' and fields[0] not in ifaces:
            ifaces.append(fields[0])
    for line in sysroot.lines('proc/net/ipv6_route'):
        fields = line.split()
        if len(fields) >= 10 and set(fields[0]) == {'0'} and fields[1] == '00' and fields[9] != 'lo' \
                and fields[9] not in ifaces:
            ifaces.append(fields[9])
    return ifaces


def _lower_interfaces(sysroot, iface, path):
    """The interfaces ``iface`` sends through: bond slaves and VLAN/macvlan lowers (``lower_*``), Linux
    bridge ports (``brif/``), and for an Open vSwitch internal port (a virtual interface with none of these
    while the ``ovs-system`` datapath exists) every port of the datapath: sysfs does not show which OVS
    bridge a port belongs to, so all of them are taken."""
    lowers = [entry.split('_', 1)[1] for entry in sysroot.listdir(path) if entry.startswith(('lower_', 'slave_'))]
    lowers += sysroot.listdir(path + '/brif')
    if lowers or iface == OVS_DATAPATH:
        return lowers, None
    datapath = sysroot.resolve('sys/class/net/' + OVS_DATAPATH)
    if datapath is None:
        return [], None
    ports = [entry.split('_', 1)[1] for entry in sysroot.listdir(datapath) if entry.startswith('lower_')]
    return [port for port in ports if port != iface], 'a port of the Open vSwitch datapath %s' % OVS_DATAPATH


def _net_devices(sysroot, iface, seen, via=None):
    """{PCI address: how} below a network interface, through bonds, bridges, VLANs and Open vSwitch."""
    if iface in seen:
        return {}
    seen.add(iface)
    path = sysroot.resolve('sys/class/net/' + iface)
    if path is None:
        return {}
    controller = _nearest(path, PCI_NAME_RE)
    if controller:
        return {controller: via}
    found = {}
    lowers, how = _lower_interfaces(sysroot, iface, path)
    for lower in lowers:
        for address, detail in _net_devices(sysroot, lower, seen, how or via).items():
            found.setdefault(address, detail)
    return found


def _mark_network(sysroot, host):
    for iface in _default_route_ifaces(sysroot):
        found = _net_devices(sysroot, iface, set())
        aggregate = any(sysroot.isdir('sys/class/net/%s/%s' % (iface, kind)) for kind in ('bridge', 'bonding')) \
            or sysroot.resolve('sys/class/net/' + OVS_DATAPATH) is not None
        if not found and aggregate:  # a bridge or bond without ports; tunnels and VPNs have no NIC to protect
            host.problems.append('the default route goes through %s, which leads to no PCI network device (through '
                                 'bonds, VLANs, bridges, Open vSwitch); the NIC it uses is not known and not protected'
                                 % iface)
        for address in sorted(found):
            reason = 'the network device of the default route (%s)' % iface
            if found[address]:
                reason = 'the network device of the default route (%s, %s)' % (iface, found[address])
            host.critical.setdefault(address, []).append(reason)


def _mark_inputs(host):
    for name in sorted(host.usb):
        usb = host.usb[name]
        if usb.input_device and usb.controller:
            label = ' '.join(part for part in (usb.manufacturer, usb.product_name) if part) or 'input device'
            host.inputs.setdefault(usb.controller, []).append('%s (%s)' % (name, label))


def _mark_critical(sysroot, host):
    _mark_mounts(sysroot, host)
    _mark_network(sysroot, host)
    _mark_inputs(host)
    for dev in host.pci.values():
        if dev.boot_vga:
            host.critical.setdefault(dev.address, []).append('the boot VGA device (boot_vga=1): the host console')
        if dev.role in CRITICAL_ROLES:
            host.critical.setdefault(dev.address, []).append('a chipset function (%s, class %s)'
                                                             % (dev.class_label, dev.class_code))


def read_host(root='/', pci_ids=None):
    """Read the host below ``root``. ``pci_ids`` (a ``_pci_ids.PciIds``) adds names when given."""
    sysroot = SysRoot(root)
    host = Host(sysroot.root)
    host.cmdline = sysroot.read('proc/cmdline') or ''
    if not sysroot.isdir('sys/bus/pci'):
        host.problems.append('%s has no sys/bus/pci: not a Linux sysfs' % sysroot.path('sys'))
    _read_groups(sysroot, host)
    _read_pci(sysroot, host)
    _read_mdevs(sysroot, host)
    _read_usb(sysroot, host)
    _read_iommu(sysroot, host)
    host.group_users = read_group_users(sysroot)
    _mark_critical(sysroot, host)
    if pci_ids is not None:
        for dev in host.pci.values():
            vendor, device, subsystem = pci_ids.names(dev.vendor, dev.device, dev.subsystem_vendor,
                                                      dev.subsystem_device)
            dev.names = {'vendor': vendor, 'device': device, 'subsystem': subsystem,
                         'class': pci_ids.class_name(dev.class_code)}
    return host


# -- verdicts ----------------------------------------------------------------------------------------

def _describe(host, address):
    dev = host.pci.get(address)
    if dev is None:
        return address
    return '%s (%s, driver %s)' % (address, dev.class_label, dev.driver or 'none')


def describe_group(host, address):
    """'IOMMU group 10: 0000:43:00.0 (3D controller, driver vfio-pci), ...' for the group of ``address``."""
    dev = host.pci.get(address)
    if dev is None or dev.iommu_group is None:
        return None
    return 'IOMMU group %d: %s' % (dev.iommu_group, ', '.join(_describe(host, member)
                                                              for member in host.group_members(address)))


def group_holders(host, number, usage=None):
    """Who holds IOMMU group ``number``: [{'domain', 'live'}] from domain usage of its members and the guests
    (or processes) holding ``/dev/vfio/N`` open."""
    holders = {}
    for member in host.groups.get(number, []):
        for use in used_by(usage or {}, ('pci', member)):
            entry = holders.setdefault(use['domain'], {'domain': use['domain'], 'live': False})
            entry['live'] = entry['live'] or bool(use['live'])
    for user in host.open_by(number):
        name = user.get('guest') or 'pid %d (%s)' % (user['pid'], user['comm'])
        holders.setdefault(name, {'domain': name, 'live': True})['live'] = True
    return [holders[name] for name in sorted(holders)]


def _iommu_off_message(host):
    kind = host.iommu.get('kind')
    hint = IOMMU_ENABLE_HINT.get(kind, 'enable the IOMMU in firmware and on the kernel command line')
    firmware = host.iommu.get('firmware_table')
    told = ' (the firmware has an ACPI %s table)' % firmware if firmware else ''
    return 'the IOMMU is off: no groups under /sys/kernel/iommu_groups%s; %s' % (told, hint)


def assess_pci(host, address, together=(), usage=None, domain_name=None):
    """The guard findings for giving PCI device ``address`` to a guest, with ``together`` going along.

    The one verdict model: ``verdict`` (the report), ``check_assignment`` (the guards of domain_devices)
    and the host-preparation plans (vfio_bind) all judge a device here. ``together`` holds the addresses
    requested at the same time: group members among them do not make the group unviable. ``usage`` (from
    ``usage_from_domains``) adds who holds the rest of the group; ``domain_name`` is the guest the device
    is for (its own uses do not count).
    """
    together = set(together) | {address}
    dev = host.pci.get(address)
    if dev is None:
        return [Finding('exists', 'there is no PCI device %s on this host (not under /sys/bus/pci/devices)'
                        % address)]
    findings = [Finding('sysfs', problem) for problem in dev.problems]
    if dev.role in NOT_ENDPOINT_ROLES or dev.children:
        behind = (' with %s behind it' % ', '.join(dev.children)) if dev.children else ''
        findings.append(Finding('endpoint', 'is a %s (class %s)%s, not an endpoint'
                                % (dev.class_label, dev.class_code, behind)))
    for reason in host.critical.get(address, []):
        findings.append(Finding('host_critical', 'is host-critical: %s' % reason))
    if not _is_vfio_driver(dev.driver):
        findings.append(Finding('bind', 'is bound to %s, not to vfio-pci' % (dev.driver or 'no driver'),
                                step={'action': 'bind_vfio', 'address': address, 'current_driver': dev.driver,
                                      'message': 'bind %s (now %s) to vfio-pci' % (address, dev.driver or 'unbound')}))
    if not host.iommu_enabled:
        findings.append(Finding('iommu', _iommu_off_message(host)))
    elif dev.iommu_group is None:
        findings.append(Finding('iommu', 'has no IOMMU group although the IOMMU is on'))
    else:
        for member in host.bindable_peers(address):
            if member in together:
                continue
            other = host.pci.get(member)
            if member in host.critical:
                findings.append(Finding('group_critical', 'shares IOMMU group %d with %s, which is host-critical: %s'
                                        % (dev.iommu_group, _describe(host, member),
                                           '; '.join(host.critical[member]))))
            elif not group_member_viable(other.driver):
                findings.append(Finding(
                    'group', 'shares IOMMU group %d with %s, which is still bound to a host driver'
                    % (dev.iommu_group, _describe(host, member)),
                    step={'action': 'bind_vfio', 'address': member, 'current_driver': other.driver,
                          'message': 'bind group member %s (now %s) to vfio-pci' % (member, other.driver)}))
        if host.iommu.get('vfio_device') is False:  # None: not known (node devices of a remote host)
            findings.append(Finding('vfio', '/dev/vfio/vfio is missing: the vfio modules are not loaded',
                                    step={'action': 'load_module', 'module': 'vfio-pci',
                                          'message': 'load the vfio-pci module'}))
    if dev.sriov_numvfs:
        findings.append(Finding('sriov_pf', 'is an SR-IOV PF with %d VFs enabled (%s); they disappear when it '
                                'leaves its driver' % (dev.sriov_numvfs, ', '.join(dev.vfs) or 'not listed'),
                                step={'action': 'disable_sriov', 'address': address,
                                      'message': 'set sriov_numvfs of %s to 0' % address}))
    if dev.reset_methods == []:
        findings.append(Finding('reset', 'has no reset method: the guest may find it in a dirty state after a '
                                'reboot'))
    for sibling in sorted(host.pci):
        other = host.pci[sibling]
        if sibling in together or other.slot != dev.slot or not other.endpoint:
            continue
        if dev.parent is None or dev.physfn or other.physfn or sibling in host.critical:
            continue  # integrated chipset functions and VFs share slots without belonging together
        if dev.iommu_group is not None and other.iommu_group == dev.iommu_group:
            continue  # the group guard covers it
        findings.append(Finding('companion', '%s is another function of the same device; guests usually need it '
                                'too' % _describe(host, sibling)))
    if host.iommu_enabled and host.iommu.get('interrupt_remapping') is False \
            and not host.iommu.get('allow_unsafe_interrupts'):
        findings.append(Finding('interrupt_remapping', 'the host has no interrupt remapping: vfio refuses the '
                                'device unless vfio_iommu_type1.allow_unsafe_interrupts=1'))
    if host.iommu.get('acs_override'):
        findings.append(Finding('acs_override', 'pcie_acs_override is on the kernel command line: the IOMMU '
                                'groups do not show the real isolation'))
    if address not in host.critical:
        for reason in host.mounted.get(address, []):
            findings.append(Finding('host_mounted', 'holds a mounted filesystem: %s; unmount it before the device '
                                    'leaves the host' % reason))
    if host.inputs.get(address):
        findings.append(Finding('host_input', "carries the host's input devices %s: the host loses them when the "
                                'controller leaves it' % ', '.join(host.inputs[address])))
    findings += _held_findings(host, dev, together, usage or {}, domain_name)
    return findings


def _held_findings(host, dev, together, usage, domain_name):
    """Who else holds the device's IOMMU group: guests that have a group peer (running: refused, defined:
    warned) and processes holding the group of the device or of its mediated devices open."""
    findings = []
    this = 'guest %s' % domain_name if domain_name else 'a guest'
    explained = {domain_name} if domain_name else set()
    explained.update(use['domain'] for use in used_by(usage, ('pci', dev.address)) if use['live'])
    for member in host.bindable_peers(dev.address):
        if member in together:
            continue
        for use in used_by(usage, ('pci', member), exclude=domain_name):
            if use['live']:
                explained.add(use['domain'])
                findings.append(Finding('group_held_live', 'shares IOMMU group %d with %s, which running guest %s '
                                        'holds: libvirt refuses to start %s with a device of the same group while %s '
                                        'runs' % (dev.iommu_group, _describe(host, member), use['domain'], this,
                                                  use['domain'])))
            else:
                findings.append(Finding('group_held_config', 'shares IOMMU group %d with %s, which is in the definition '
                                        'of guest %s: %s and %s cannot run at the same time'
                                        % (dev.iommu_group, _describe(host, member), use['domain'], this,
                                           use['domain'])))
    users = [user for user in host.open_by(dev.iommu_group) if user.get('guest') not in explained]
    if users:
        findings.append(Finding('group_open', 'its IOMMU group %d is held open by %s (a running guest)'
                                % (dev.iommu_group, describe_users(users))))
    for uuid in host.mdevs_of(dev.address):
        mdev = host.mdevs[uuid]
        users = [user for user in host.open_by(mdev.iommu_group) if user.get('guest') != domain_name]
        if users:
            findings.append(Finding('group_open', 'its mediated device %s is held by %s: the device cannot leave '
                                    'its driver %s until that guest stops (the unbind would block)'
                                    % (uuid, describe_users(users), dev.driver or 'none')))
    return findings


def summarize(findings):
    """(verdict, reasons, steps, warnings) from a device's findings."""
    reasons, steps, warnings = [], [], []
    for finding in findings:
        effect = GUARDS[finding.guard].verdict
        if effect == REFUSE:
            reasons.append(finding.as_dict())
        elif effect == PREPARE:
            if finding.step is not None and finding.step not in steps:
                steps.append(finding.step)
        elif effect == WARN:
            warnings.append(finding.message)
    if reasons:
        return REFUSED, reasons, [], warnings
    if steps:
        return NEEDS_PREPARATION, reasons, steps, warnings
    return READY, reasons, steps, warnings


def verdict(host, address, usage=None):
    """{'verdict', 'reasons', 'steps', 'warnings'} for passing ``address`` alone to a new guest."""
    status, reasons, steps, warnings = summarize(assess_pci(host, address, usage=usage))
    return {'verdict': status, 'reasons': reasons, 'steps': steps, 'warnings': warnings}


# -- domain usage ------------------------------------------------------------------------------------

def hostdev_keys(element, where='hostdev'):
    """Identity keys of the host devices an element uses (``_ids.hostdev_keys``: read as libvirt reads them,
    IdError when an address cannot be read)."""
    return _ids.hostdev_keys(element, where)


def requests_of_element(element, where):
    """The ``check_assignment`` requests for the host devices a device element would take (none for other
    devices). Addresses are read as libvirt reads them; IdError (naming ``where``) when one cannot be."""
    keys = dict(hostdev_keys(element, where))
    if 'pci' in keys:
        kind = 'sriov_vf' if element.tag == 'interface' else 'pci'
        return [{'type': kind, 'address': keys['pci'], 'managed': element.get('managed', 'no') == 'yes',
                 'where': where}]
    if 'usb' in keys or 'usb-address' in keys:
        vendor, _sep, product = keys.get('usb', ':').partition(':')
        bus, _sep, device = keys.get('usb-address', '.').partition('.')
        return [{'type': 'usb', 'vendor': vendor or None, 'product': product or None,
                 'bus': int(bus) if bus else None, 'device': int(device) if device else None, 'where': where}]
    if 'mdev' in keys:
        return [{'type': 'mdev', 'uuid': keys['mdev'], 'where': where}]
    return []


def usage_from_domains(domains):
    """Map host-device identity keys to the domains that use them.

    ``domains``: iterable of dicts ``{'name': str, 'live_xml': str or None, 'config_xml': str or None}``
    (the live XML of a running domain, the inactive XML of a persistent one). Returns
    ``{key: [{'domain': name, 'live': bool, 'config': bool}, ...]}`` with keys from ``hostdev_keys``.
    """
    usage = {}
    for domain in domains:
        name = domain['name']
        seen = {}
        for flag in ('live', 'config'):
            text = domain.get(flag + '_xml')
            if not text:
                continue
            root = _xml.parse(text, 'the %s XML of domain %s' % (flag, name))
            for tag in ('hostdev', 'interface'):
                for index, element in enumerate(root.iterfind('devices/' + tag)):
                    where = 'the %s XML of domain %s: <%s> #%d' % (flag, name, tag, index + 1)
                    for key in hostdev_keys(element, where):
                        seen.setdefault(key, set()).add(flag)
        for key, flags in seen.items():
            usage.setdefault(key, []).append({'domain': name, 'live': 'live' in flags, 'config': 'config' in flags})
    return usage


def _use(use):
    """A use as a dict; a bare domain name counts as a use by a running domain (the strictest)."""
    if isinstance(use, str):
        return {'domain': use, 'live': True, 'config': True}
    return use


def used_by(usage, key, exclude=None):
    """The uses of ``key`` by domains other than ``exclude``."""
    return [_use(use) for use in usage.get(key, []) if _use(use)['domain'] != exclude]


# -- assignment preflight ------------------------------------------------------------------------------

class AssignmentCheck:
    """The outcome of ``check_assignment``: ``errors`` and ``warnings`` are messages for the user;
    ``findings`` keeps each as a dict (label, guard, message, overridden) for callers that want data."""

    def __init__(self):
        self.errors = []
        self.warnings = []
        self.findings = []

    @property
    def ok(self):
        return not self.errors

    def add(self, label, guard, message, force, severity=None):
        row = GUARDS[guard]
        severity = severity or row.assignment
        if severity == IGNORE:
            return
        overridden = severity == ERROR and force and row.overridable
        if severity == ERROR and not overridden:
            text = '%s: %s [guard %s]' % (label, message, guard)
            if row.overridable:
                text += ' (force: true overrides it)'
            target = self.errors
        elif overridden:
            text = '%s: %s [guard %s, overridden by force]' % (label, message, guard)
            target = self.warnings
        else:
            text = '%s: %s [guard %s]' % (label, message, guard)
            target = self.warnings
        if text not in target:
            target.append(text)
            self.findings.append({'label': label, 'guard': guard, 'message': message,
                                  'severity': 'error' if target is self.errors else 'warning',
                                  'overridden': overridden})

    def as_dict(self):
        return {'errors': list(self.errors), 'warnings': list(self.warnings), 'findings': list(self.findings)}


def _label(request, index):
    where = request.get('where') or 'requests[%d]' % index
    kind = request.get('type')
    ident = request.get('address') or request.get('uuid') or ':'.join(
        str(request.get(part)) for part in ('vendor', 'product') if request.get(part) is not None)
    return '%s (%s %s)' % (where, kind, ident) if ident else '%s (%s)' % (where, kind)


def _normalize_request(request):
    """(kind, normalized dict) or raise ValueError naming the bad field and value."""
    kind = request.get('type')
    result = {'type': kind, 'managed': request.get('managed', True) is not False}
    if kind in ('pci', 'sriov_vf'):
        if not request.get('address'):
            raise ValueError('a %s request needs an address' % kind)
        result['address'] = normalize_pci_address(request['address'])
        for field in ('vendor', 'product', 'subsystem_vendor', 'subsystem_product'):
            result[field] = normalize_id(request.get(field), field)
    elif kind == 'usb':
        result['vendor'] = normalize_id(request.get('vendor'), 'vendor')
        result['product'] = normalize_id(request.get('product'), 'product')
        for field in ('bus', 'device'):
            value = request.get(field)
            if value is not None:
                value = _ids.c_uint(str(value), 'USB %s' % field)
            result[field] = value
        if (result['vendor'] is None) != (result['product'] is None):
            raise ValueError('USB vendor and product go together (vendor %r, product %r)'
                             % (request.get('vendor'), request.get('product')))
        if (result['bus'] is None) != (result['device'] is None):
            raise ValueError('USB bus and device go together (bus %r, device %r)'
                             % (request.get('bus'), request.get('device')))
        if result['vendor'] is None and result['bus'] is None:
            raise ValueError('a USB request needs vendor and product, or bus and device')
    elif kind == 'mdev':
        result['uuid'] = _ids.parse_uuid(request.get('uuid'), 'mdev uuid')
        result['model'] = request.get('model')
    else:
        raise ValueError('request type %r is not one of pci, usb, mdev, sriov_vf' % kind)
    return result


def _check_ids(dev, request):
    findings = []
    for field, attribute in (('vendor', 'vendor'), ('product', 'device'), ('subsystem_vendor', 'subsystem_vendor'),
                             ('subsystem_product', 'subsystem_device')):
        wanted = request.get(field)
        if wanted is None:
            continue
        actual = getattr(dev, attribute)
        actual = '0x%04x' % _int(actual, 16) if actual and _int(actual, 16) is not None else actual
        if actual != wanted:
            findings.append(Finding('ids', 'the %s id is %s on this host, not %s as configured'
                                    % (field.replace('_', ' '), actual, wanted)))
    return findings


def _usage_findings(usage, key, domain_name, what):
    findings = []
    for use in used_by(usage, key, exclude=domain_name):
        if use['live']:
            findings.append(Finding('in_use_live', '%s is assigned to running domain %s' % (what, use['domain'])))
        else:
            findings.append(Finding('in_use_config', '%s is in the persistent definition of domain %s'
                                    % (what, use['domain'])))
    return findings


def _pci_request_findings(host, request, together, usage, domain_name, mdev_parents):
    address = request['address']
    findings = assess_pci(host, address, together, usage, domain_name)
    dev = host.pci.get(address)
    if dev is None:
        return findings
    findings += _check_ids(dev, request)
    if request['type'] == 'sriov_vf' and dev.physfn is None:
        findings.append(Finding('sriov', 'is not an SR-IOV virtual function (it has no physfn link)'))
    findings += _usage_findings(usage, ('pci', address), domain_name, 'it')
    if dev.physfn:
        if dev.physfn in together:
            findings.append(Finding('pf_vf', 'is a VF of %s, which is requested too: a PF and its VFs are '
                                    'exclusive' % dev.physfn))
        for use in used_by(usage, ('pci', dev.physfn), exclude=domain_name):
            findings.append(Finding('pf_vf', 'its PF %s is assigned to domain %s' % (dev.physfn, use['domain'])))
    for vf in dev.vfs:
        for use in used_by(usage, ('pci', vf), exclude=domain_name):
            findings.append(Finding('pf_vf', 'its VF %s is assigned to domain %s' % (vf, use['domain'])))
    for uuid in host.mdevs_of(address):
        for use in used_by(usage, ('mdev', uuid), exclude=domain_name):
            findings.append(Finding('mdev_parent', 'its mediated device %s is used by domain %s'
                                    % (uuid, use['domain'])))
    if address in mdev_parents:
        findings.append(Finding('mdev_parent', 'its mediated device %s is requested too'
                                % ', '.join(sorted(mdev_parents[address]))))
    return findings


def _usb_request_findings(host, request, usage, domain_name):
    if request['bus'] is not None:
        usb = host.usb_by_address(request['bus'], request['device'])
        if usb is None:
            return [Finding('usb_present', 'no USB device at bus %d device %d' % (request['bus'], request['device']))], None
        findings = []
        if request['vendor'] is not None and (usb.vendor, usb.product) != (request['vendor'], request['product']):
            findings.append(Finding('ids', 'the device at bus %d device %d is %s:%s, not %s:%s as configured'
                                    % (usb.bus, usb.device, usb.vendor, usb.product, request['vendor'],
                                       request['product'])))
    else:
        matches = [usb for usb in host.usb.values()
                   if (usb.vendor, usb.product) == (request['vendor'], request['product'])]
        if not matches:
            return [Finding('usb_present', 'no USB device %s:%s is plugged in'
                            % (request['vendor'], request['product']))], None
        if len(matches) > 1:
            return [Finding('ambiguous', '%d USB devices are %s:%s (%s); give bus and device too'
                            % (len(matches), request['vendor'], request['product'],
                               ', '.join('bus %d device %d' % (usb.bus or 0, usb.device or 0)
                                         for usb in sorted(matches, key=lambda u: u.name))))], None
        usb = matches[0]
        findings = []
    findings += [Finding('sysfs', problem) for problem in usb.problems]
    if usb.hub:
        findings.append(Finding('endpoint', 'USB %s is a %s, not a device to pass through'
                                % (usb.name, 'root hub' if usb.root_hub else 'hub')))
    for reason in host.critical_usb.get(usb.name, []):
        findings.append(Finding('host_critical', 'is host-critical: %s' % reason))
    what = 'USB device %s (bus %s device %s)' % (usb.name, usb.bus, usb.device)
    findings += _usage_findings(usage, ('usb', '%s:%s' % (usb.vendor, usb.product)), domain_name, what)
    if usb.bus is not None and usb.device is not None:
        findings += _usage_findings(usage, ('usb-address', '%d.%d' % (usb.bus, usb.device)), domain_name, what)
    return findings, usb


def _mdev_request_findings(host, request, together, usage, domain_name):
    uuid, model = request['uuid'], request.get('model')
    findings = []
    mdev = host.mdevs.get(uuid)
    if mdev is None:
        offers = ['%s on %s (%s available)' % (t.type_id, t.parent, t.available_instances)
                  for dev in host.pci.values() for t in dev.mdev_types
                  if (model is None or t.type_id == model) and (t.available_instances or 0) > 0]
        hint = ('; it can be created from %s' % ', '.join(offers)) if offers else \
            '; no parent device offers %s' % ('type ' + model if model else 'any mdev type')
        findings.append(Finding('mdev_exists', 'mediated device %s does not exist%s' % (uuid, hint)))
    else:
        if model is not None and mdev.type_id != model:
            findings.append(Finding('ids', 'mediated device %s is of type %s, not %s as configured'
                                    % (uuid, mdev.type_id, model)))
        if mdev.parent in together:
            findings.append(Finding('mdev_parent', 'its parent %s is requested for passthrough too' % mdev.parent))
        for use in used_by(usage, ('pci', mdev.parent), exclude=domain_name):
            findings.append(Finding('mdev_parent', 'its parent %s is passed through to domain %s'
                                    % (mdev.parent, use['domain'])))
    findings += _usage_findings(usage, ('mdev', uuid), domain_name, 'it')
    return findings


def check_assignment(host, requests, domain_name, usage, force=False):
    """Run the guards for giving ``requests`` to domain ``domain_name``; write nothing.

    ``requests``: list of dicts, each with ``type`` pci | usb | mdev | sriov_vf and
    - pci / sriov_vf: ``address``, optional ``vendor``, ``product``, ``subsystem_vendor``,
      ``subsystem_product`` (pinned ids), ``managed`` (default True: libvirt binds it to vfio-pci);
    - usb: ``vendor`` + ``product`` and/or ``bus`` + ``device``;
    - mdev: ``uuid``, optional ``model`` (the mdev type);
    - optional ``where``: how messages name the request (default ``requests[i]``).
    ``usage``: from ``usage_from_domains``; uses by ``domain_name`` itself do not count. A use given as
    a bare domain name string is taken as a use by a running domain.
    ``host`` must describe the host libvirt runs on: with a remote URI, read it there.
    ``force``: errors of overridable guards become warnings that say so.
    Returns an ``AssignmentCheck``.
    """
    result = AssignmentCheck()
    normalized = []
    for index, request in enumerate(requests):
        label = _label(request, index)
        try:
            normalized.append((label, _normalize_request(request)))
        except ValueError as exc:
            result.add(label, 'address', str(exc), force)
    # identity of each request, for duplicates
    seen = {}
    for label, request in normalized:
        if request['type'] in ('pci', 'sriov_vf'):
            key = ('pci', request['address'])
        elif request['type'] == 'mdev':
            key = ('mdev', request['uuid'])
        else:
            key = None
            if request['bus'] is not None:
                key = ('usb-address', '%d.%d' % (request['bus'], request['device']))
            else:
                usb = [u for u in host.usb.values() if (u.vendor, u.product) == (request['vendor'], request['product'])]
                if len(usb) == 1 and usb[0].bus is not None:
                    key = ('usb-address', '%d.%d' % (usb[0].bus, usb[0].device))
                else:
                    key = ('usb', '%s:%s' % (request['vendor'], request['product']))
        if key in seen:
            result.add(label, 'duplicate', 'the same device as %s' % seen[key], force)
        else:
            seen[key] = label
    together = {request['address'] for _label_, request in normalized if request['type'] in ('pci', 'sriov_vf')}
    mdev_parents = {}
    for _label_, request in normalized:
        if request['type'] == 'mdev' and request['uuid'] in host.mdevs:
            mdev_parents.setdefault(host.mdevs[request['uuid']].parent, set()).add(request['uuid'])
    for label, request in normalized:
        if request['type'] in ('pci', 'sriov_vf'):
            findings = _pci_request_findings(host, request, together, usage, domain_name, mdev_parents)
        elif request['type'] == 'usb':
            findings, _usb = _usb_request_findings(host, request, usage, domain_name)
        else:
            findings = _mdev_request_findings(host, request, together, usage, domain_name)
        for finding in findings:
            severity = None
            if GUARDS[finding.guard].assignment == UNMANAGED_ERROR:
                severity = IGNORE if request.get('managed', True) else ERROR
            result.add(label, finding.guard, finding.message, force, severity)
    return result


# -- facts for the info module -------------------------------------------------------------------------

def pci_facts(host, dev, usage=None):
    usage = usage or {}
    judged = verdict(host, dev.address, usage)
    names = dev.names or {}
    sriov = None
    if dev.sriov_totalvfs is not None or dev.vfs:
        sriov = {'totalvfs': dev.sriov_totalvfs, 'numvfs': dev.sriov_numvfs, 'vfs': list(dev.vfs)}
    return {
        'address': dev.address,
        'vendor': dev.vendor, 'device': dev.device,
        'subsystem_vendor': dev.subsystem_vendor, 'subsystem_device': dev.subsystem_device,
        'vendor_name': names.get('vendor'), 'device_name': names.get('device'),
        'subsystem_name': names.get('subsystem'),
        'class': dev.class_code, 'class_name': names.get('class') or dev.class_label, 'role': dev.role,
        'revision': dev.revision,
        'driver': dev.driver, 'driver_override': dev.driver_override,
        'iommu_group': dev.iommu_group, 'iommu_group_members': host.group_members(dev.address),
        'numa_node': dev.numa_node, 'boot_vga': dev.boot_vga, 'reset_methods': dev.reset_methods,
        'endpoint': dev.endpoint, 'parent': dev.parent, 'children': list(dev.children),
        'sriov': sriov, 'physfn': dev.physfn,
        'mdev_types': [mdev_type.as_dict() for mdev_type in dev.mdev_types],
        'host_critical': list(host.critical.get(dev.address, [])),
        'used_by': used_by(usage, ('pci', dev.address)),
        'verdict': judged['verdict'], 'reasons': judged['reasons'], 'steps': judged['steps'],
        'warnings': judged['warnings'],
        'problems': list(dev.problems),
    }


def usb_facts(host, usb, usage=None):
    usage = usage or {}
    facts = usb.as_dict()
    uses = used_by(usage, ('usb', '%s:%s' % (usb.vendor, usb.product)))
    if usb.bus is not None and usb.device is not None:
        uses += [use for use in used_by(usage, ('usb-address', '%d.%d' % (usb.bus, usb.device)))
                 if use not in uses]
    facts['used_by'] = uses
    facts['host_critical'] = list(host.critical_usb.get(usb.name, []))
    reasons = []
    if usb.hub:
        reasons.append({'guard': 'endpoint', 'message': 'a %s' % ('root hub' if usb.root_hub else 'hub'),
                        'overridable': False})
    for reason in facts['host_critical']:
        reasons.append({'guard': 'host_critical', 'message': reason, 'overridable': True})
    facts['verdict'] = REFUSED if reasons else READY
    facts['reasons'] = reasons
    return facts


def host_facts(host, usage=None):
    """Plain data (lists, dicts, strings) describing the host, for modules and the report renderers."""
    usage = usage or {}
    pci = [pci_facts(host, host.pci[address], usage) for address in sorted(host.pci)]
    groups = [{'group': number, 'type': host.group_types.get(number), 'devices': members,
               'held_by': group_holders(host, number, usage)}
              for number, members in sorted(host.groups.items())]
    mdev_types = [mdev_type.as_dict() for dev in sorted(host.pci.values(), key=lambda d: d.address)
                  for mdev_type in dev.mdev_types]
    mdevs = []
    for uuid in sorted(host.mdevs):
        entry = host.mdevs[uuid].as_dict()
        entry['used_by'] = used_by(usage, ('mdev', uuid))
        mdevs.append(entry)
    counts = {READY: 0, NEEDS_PREPARATION: 0, REFUSED: 0}
    for entry in pci:
        counts[entry['verdict']] += 1
    return {
        'root': host.root,
        'iommu': dict(host.iommu),
        'kernel_cmdline': host.cmdline,
        'pci_devices': pci,
        'usb_devices': [usb_facts(host, host.usb[name], usage) for name in sorted(host.usb)],
        'iommu_groups': groups,
        'mdev_types': mdev_types,
        'mdev_devices': mdevs,
        'host_critical': {address: list(reasons) for address, reasons in sorted(host.critical.items())},
        'summary': counts,
        'problems': list(host.problems),
    }


# -- libvirt's node devices ----------------------------------------------------------------------------

def address_of_nodedev_name(name):
    """'pci_0000_01_00_0' -> '0000:01:00.0'; None for other names."""
    return _ids.pci_of_nodedev_name(name)


def parse_node_device(text):
    """The parts of a libvirt node device XML that matter here, as a dict.

    {'name', 'parent', 'type' (the first capability), 'address' (PCI), 'iommu_group', 'vendor', 'product',
    'uuid' and 'mdev_type' (mdev), 'bus' and 'device' (usb_device)}; missing parts are None.
    """
    root = _xml.parse(text, 'node device XML')
    result = {'name': (root.findtext('name') or '').strip(), 'parent': (root.findtext('parent') or '').strip() or None,
              'type': None, 'address': None, 'iommu_group': None, 'vendor': None, 'product': None,
              'uuid': None, 'mdev_type': None, 'bus': None, 'device': None}
    capability = root.find('capability')
    if capability is None:
        return result
    kind = capability.get('type')
    result['type'] = kind
    if kind == 'pci':
        parts = [_int((capability.findtext(part) or '').strip(), 0) for part in ('domain', 'bus', 'slot', 'function')]
        if all(part is not None for part in parts):
            result['address'] = '%04x:%02x:%02x.%x' % tuple(parts)
        group = capability.find('iommuGroup')
        if group is not None:
            result['iommu_group'] = _int(group.get('number'))
    if kind in ('pci', 'usb_device'):
        for field in ('vendor', 'product'):
            element = capability.find(field)
            if element is not None and element.get('id'):
                try:
                    result[field] = normalize_id(element.get('id'), field)
                except ValueError:
                    result[field] = None
    if kind == 'usb_device':
        result['bus'] = _int((capability.findtext('bus') or '').strip())
        result['device'] = _int((capability.findtext('device') or '').strip())
    if kind == 'mdev':
        mdev_type = capability.find('type')
        result['mdev_type'] = mdev_type.get('id') if mdev_type is not None else None
        uuid = (capability.findtext('uuid') or '').strip().lower()
        if not uuid:  # older libvirt: only the name mdev_<uuid with underscores>[_parent] carries it
            candidate = result['name'][len('mdev_'):len('mdev_') + 36].replace('_', '-')
            uuid = candidate if UUID_RE.match(candidate) else ''
        result['uuid'] = uuid or None
    return result


def merge_node_devices(facts, node_devices, compare_groups=True):
    """Add libvirt's view to ``host_facts`` output (in place); returns the ``libvirt`` summary dict.

    Each PCI device libvirt knows gets ``libvirt_name``; PCI devices libvirt knows but sysfs does not
    show, and mdevs libvirt has defined but not started, are listed. With ``compare_groups`` (the
    sysfs read was of this very host) a different IOMMU group is reported as a problem.
    """
    by_address = {entry['address']: entry for entry in facts.get('pci_devices', [])}
    mdevs = {entry['uuid']: entry for entry in facts.get('mdev_devices', [])}
    for entry in mdevs.values():
        entry.setdefault('active', True)
    only = []
    counts = {}
    for device in node_devices:
        counts[device['type']] = counts.get(device['type'], 0) + 1
        if device['type'] == 'pci' and device['address']:
            entry = by_address.get(device['address'])
            if entry is None:
                only.append({'name': device['name'], 'type': 'pci', 'address': device['address']})
                continue
            entry['libvirt_name'] = device['name']
            if compare_groups and device['iommu_group'] is not None and entry.get('iommu_group') is not None \
                    and device['iommu_group'] != entry['iommu_group']:
                facts.setdefault('problems', []).append(
                    'libvirt puts %s in IOMMU group %d, sysfs in group %d' % (device['address'], device['iommu_group'],
                                                                              entry['iommu_group']))
        elif device['type'] == 'mdev' and device['uuid']:
            entry = mdevs.get(device['uuid'])
            if entry is not None:
                entry['libvirt_name'] = device['name']
                continue
            entry = {'uuid': device['uuid'], 'parent': address_of_nodedev_name(device['parent']) or device['parent'],
                     'type': device['mdev_type'], 'used_by': [], 'active': False, 'libvirt_name': device['name']}
            facts.setdefault('mdev_devices', []).append(entry)
            only.append({'name': device['name'], 'type': 'mdev', 'uuid': device['uuid']})
    facts.get('mdev_devices', []).sort(key=lambda entry: entry['uuid'])
    only.sort(key=lambda entry: (entry['type'], entry['name']))
    return {'node_devices': counts, 'only_in_libvirt': only}
