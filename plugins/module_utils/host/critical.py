# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host-critical detection: which PCI and USB devices the host cannot give away.

``mark_critical(sysroot, host)`` fills ``Host.critical`` (refused: the controllers behind the critical
mounts and active swap, the NICs of the default routes through bonds, bridges, VLANs and Open vSwitch,
the boot VGA, chipset functions), ``Host.mounted`` (warned: controllers behind other mounted local
filesystems) and ``Host.inputs`` (warned: USB controllers carrying the host's keyboards and mice), from
/proc/mounts, /proc/swaps, /proc/net/route and sysfs below the root. What cannot be traced (a mount whose
block device is not found) goes to ``Host.problems``: not protected, and said so.
"""

from __future__ import annotations

import os
import re

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import below_root, model


# mounts whose block device's controller the host cannot lose: refused (host_critical); every other mounted
# filesystem on a local block device gives a warning (host_mounted); active swap is refused (pages the kernel
# swapped out would be lost)
CRITICAL_MOUNTS = ('/', '/boot', '/boot/efi', '/efi', '/usr', '/var')


# filesystems without a local block device (nothing to protect, nothing to report)
NON_BLOCK_FILESYSTEMS = ('tmpfs', 'overlay', 'rootfs', 'ramfs', 'nfs', 'nfs4', 'cifs', 'smb3', 'virtiofs', '9p',
                         'fuse', 'squashfs', 'proc', 'sysfs', 'devtmpfs', 'devpts', 'cgroup', 'cgroup2', 'securityfs',
                         'pstore', 'efivarfs', 'bpf', 'debugfs', 'tracefs', 'configfs', 'fusectl', 'mqueue',
                         'hugetlbfs', 'autofs', 'binfmt_misc', 'rpc_pipefs', 'nsfs', 'ceph', 'glusterfs')


# the kernel datapath device every Open vSwitch port hangs under (lower_* links)
OVS_DATAPATH = 'ovs-system'


def _unescape_mount(text):
    return re.sub(r'\\([0-7]{3})', lambda match: chr(int(match.group(1), 8)), text)


def _block_path(sysroot, source):
    """The sysfs directory (relative) of the block device a mount source names, or None."""
    params = below_root.parse_cmdline(sysroot.read('proc/cmdline'))
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
        parts = [part for part in path.split('/') if _ids.PCI_NAME_RE.match(part)]
        for address in parts[:-1]:
            pci.setdefault(address, 'upstream')
        if parts:
            pci[parts[-1]] = 'controller'
        usb_device = below_root.nearest(path, re.compile(r'^\d+-\d+(?:\.\d+)*$'))
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
    controller = below_root.nearest(path, _ids.PCI_NAME_RE)
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


def mark_critical(sysroot, host):
    _mark_mounts(sysroot, host)
    _mark_network(sysroot, host)
    _mark_inputs(host)
    for dev in host.pci.values():
        if dev.boot_vga:
            host.critical.setdefault(dev.address, []).append('the boot VGA device (boot_vga=1): the host console')
        if dev.role in model.CRITICAL_ROLES:
            host.critical.setdefault(dev.address, []).append('a chipset function (%s, class %s)'
                                                             % (dev.class_label, dev.class_code))
