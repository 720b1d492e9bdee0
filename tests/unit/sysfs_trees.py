# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write fake host trees (sysfs, /proc, /dev) the way the kernel lays them out, for tests.

A machine is described as data (``tests/unit/fixtures/sysfs/<name>.yml``, see the README there) and
``write_tree(spec, root)`` turns it into directories, attribute files and *relative* symlinks like the
kernel's::

    sys/bus/pci/devices/0000:01:00.0 -> ../../../devices/pci0000:00/0000:00:01.0/0000:01:00.0
    sys/devices/.../0000:01:00.0/iommu_group -> ../../../../kernel/iommu_groups/1
    sys/kernel/iommu_groups/1/devices/0000:01:00.0 -> ../../../../devices/pci0000:00/.../0000:01:00.0
    sys/devices/.../0000:01:00.0/driver -> ../../../../bus/pci/drivers/nouveau

Nothing is ever written outside ``root``. ``build(name, tmp_path)`` loads a fixture and writes it.
"""

from __future__ import annotations

import copy
import errno
import os
import shutil

import yaml

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'sysfs')


def load_spec(name):
    with open(os.path.join(FIXTURES, name + '.yml'), encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def build(name, tmp_path, mutate=None):
    """Write fixture ``name`` under ``tmp_path/name``; ``mutate(spec)`` may edit the spec first."""
    spec = copy.deepcopy(load_spec(name))
    if mutate is not None:
        mutate(spec)
    root = os.path.join(str(tmp_path), name)
    write_tree(spec, root)
    return root


class Tree:
    """Low-level writer: files, directories and kernel-style relative links below ``root``."""

    def __init__(self, root):
        self.root = os.path.abspath(root)

    def _full(self, rel):
        full = os.path.normpath(os.path.join(self.root, rel))
        if full != self.root and not full.startswith(self.root + os.sep):
            raise ValueError('%s leaves the tree %s' % (rel, self.root))
        return full

    def mkdir(self, rel):
        os.makedirs(self._full(rel), exist_ok=True)

    def write(self, rel, text=''):
        full = self._full(rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, 'w', encoding='utf-8') as handle:
            handle.write(text)

    def attr(self, rel, value):
        """A sysfs attribute: the value and a newline, like the kernel prints it."""
        self.write(rel, '%s\n' % value)

    def link(self, rel, target_rel):
        """``rel`` -> ``target_rel`` as a relative link (the target need not exist: dangling links)."""
        full = self._full(rel)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        relative = os.path.relpath(self._full(target_rel), os.path.dirname(full))
        if os.path.lexists(full):
            os.unlink(full)
        os.symlink(relative, full)


def _pci_paths(spec):
    """Device directory (relative to root) of every PCI address, parents first."""
    devices = {entry['address']: entry for entry in spec.get('pci', [])}
    paths = {}

    def path_of(address):
        if address in paths:
            return paths[address]
        entry = devices[address]
        parent = entry.get('parent')
        if parent:
            base = path_of(parent)
        else:
            domain, bus = address.split(':')[:2]
            base = 'sys/devices/pci%s:%s' % (domain, bus)
        if entry.get('via'):
            base += '/' + entry['via']
        paths[address] = '%s/%s' % (base, address)
        return paths[address]

    for address in devices:
        path_of(address)
    return paths


def _write_pci(tree, spec, paths):
    drivers = set()
    for entry in spec.get('pci', []):
        address = entry['address']
        path = paths[address]
        tree.mkdir(path)
        tree.link('sys/bus/pci/devices/' + address, path)
        tree.link(path + '/subsystem', 'sys/bus/pci')
        tree.write(path + '/config', '\0' * 64)
        tree.attr(path + '/class', entry.get('class', '0x000000'))
        tree.attr(path + '/vendor', entry.get('vendor', '0x0000'))
        tree.attr(path + '/device', entry.get('device', '0x0000'))
        subsystem = entry.get('subsystem') or [entry.get('vendor', '0x0000'), '0x0000']
        tree.attr(path + '/subsystem_vendor', subsystem[0])
        tree.attr(path + '/subsystem_device', subsystem[1])
        tree.attr(path + '/revision', entry.get('revision', '0x00'))
        tree.attr(path + '/numa_node', entry.get('numa_node', -1))
        tree.attr(path + '/driver_override', entry.get('driver_override') or '(null)')
        if 'boot_vga' in entry:
            tree.attr(path + '/boot_vga', 1 if entry['boot_vga'] else 0)
        reset_method = entry.get('reset_method', 'flr bus')
        if reset_method:
            tree.attr(path + '/reset_method', reset_method)
            tree.write(path + '/reset', '')
        driver = entry.get('driver')
        if driver:
            tree.link(path + '/driver', 'sys/bus/pci/drivers/' + driver)
            if not entry.get('dangling_driver'):
                drivers.add(driver)
                tree.link('sys/bus/pci/drivers/%s/%s' % (driver, address), path)
        group = entry.get('group')
        if group is not None:
            tree.link(path + '/iommu_group', 'sys/kernel/iommu_groups/%s' % group)
            if not entry.get('unlisted_in_group'):
                tree.link('sys/kernel/iommu_groups/%s/devices/%s' % (group, address), path)
        sriov = entry.get('sriov')
        if sriov:
            tree.attr(path + '/sriov_totalvfs', sriov.get('totalvfs', 0))
            tree.attr(path + '/sriov_numvfs', sriov.get('numvfs', 0))
        physfn = entry.get('physfn')
        if physfn:
            tree.link(path + '/physfn', paths[physfn])
            tree.link('%s/virtfn%d' % (paths[physfn], entry.get('vf_index', 0)), path)
        for mdev_type in entry.get('mdev_types', []):
            base = '%s/mdev_supported_types/%s' % (path, mdev_type['type'])
            tree.attr(base + '/name', mdev_type.get('name', mdev_type['type']))
            tree.attr(base + '/available_instances', mdev_type.get('available', 0))
            tree.attr(base + '/device_api', mdev_type.get('device_api', 'vfio-pci'))
            tree.attr(base + '/description', mdev_type.get('description', ''))
            tree.mkdir(base + '/devices')
            tree.link('sys/class/mdev_bus/' + address, path)
    for driver in drivers:
        tree.mkdir('sys/bus/pci/drivers/' + driver)
    for group, group_type in (spec.get('iommu_group_types') or {}).items():
        tree.attr('sys/kernel/iommu_groups/%s/type' % group, group_type)


def _write_mdevs(tree, spec, paths):
    for mdev in spec.get('mdevs', []):
        parent_path = paths[mdev['parent']]
        path = '%s/%s' % (parent_path, mdev['uuid'])
        type_dir = '%s/mdev_supported_types/%s' % (parent_path, mdev['type'])
        tree.mkdir(path)
        tree.link(path + '/mdev_type', type_dir)
        tree.link('%s/devices/%s' % (type_dir, mdev['uuid']), path)
        tree.link('sys/bus/mdev/devices/' + mdev['uuid'], path)
        if mdev.get('group') is not None:  # the mdev's own IOMMU group (vfio-mdev gives each one)
            tree.link(path + '/iommu_group', 'sys/kernel/iommu_groups/%s' % mdev['group'])
            tree.link('sys/kernel/iommu_groups/%s/devices/%s' % (mdev['group'], mdev['uuid']), path)


def _usb_paths(spec, paths):
    result = {}
    for entry in spec.get('usb', []):
        name = entry['name']
        if name.startswith('usb'):
            result[name] = '%s/%s' % (paths[entry['controller']], name)
        else:
            upstream = entry.get('upstream') or 'usb' + name.split('-')[0]
            result[name] = '%s/%s' % (result[upstream], name)
    return result


def _write_usb(tree, spec, paths):
    usb_paths = _usb_paths(spec, paths)
    for entry in spec.get('usb', []):
        path = usb_paths[entry['name']]
        tree.mkdir(path)
        tree.link('sys/bus/usb/devices/' + entry['name'], path)
        values = {'idVendor': entry.get('vendor'), 'idProduct': entry.get('product'), 'busnum': entry.get('bus'),
                  'devnum': entry.get('device'), 'bDeviceClass': entry.get('class', '00'),
                  'manufacturer': entry.get('manufacturer'), 'product': entry.get('product_name'),
                  'serial': entry.get('serial'), 'speed': entry.get('speed', '480')}
        for attribute, value in values.items():
            if value is not None:
                tree.attr('%s/%s' % (path, attribute), value)
        for index, interface_class in enumerate(entry.get('interfaces', [])):
            interface = '%s:1.%d' % (entry['name'], index)
            tree.attr('%s/%s/bInterfaceClass' % (path, interface), interface_class)
            tree.link('sys/bus/usb/devices/' + interface, '%s/%s' % (path, interface))
    return usb_paths


def _write_block(tree, spec, paths, usb_paths):
    block_paths = {}
    for disk in spec.get('block', []):
        if disk.get('usb'):
            base = usb_paths[disk['usb']]
        else:
            base = paths[disk['device']]
        path = '%s/%s/block/%s' % (base, disk.get('subpath', 'host0'), disk['name'])
        block_paths[disk['name']] = path
        for partition in disk.get('partitions', []):
            block_paths[partition] = '%s/%s' % (path, partition)
    for dm in spec.get('dm', []):
        path = 'sys/devices/virtual/block/' + dm['name']
        block_paths[dm['name']] = path
        tree.attr(path + '/dm/name', dm['dm_name'])
        tree.link('dev/mapper/' + dm['dm_name'], 'dev/' + dm['name'])
    udev = spec.get('udev') or {}
    for number, (name, path) in enumerate(sorted(block_paths.items())):
        tree.mkdir(path + '/slaves')
        tree.mkdir(path + '/holders')
        tree.link('sys/class/block/' + name, path)
        tree.write('dev/' + name, '')
        tree.attr(path + '/dev', '259:%d' % number)
        if name in udev:  # the udev database entry, as udevd writes it
            tree.write('run/udev/data/b259:%d' % number,
                       ''.join('E:%s=%s\n' % (key, value) for key, value in sorted(udev[name].items())))
    for fsid, names in (spec.get('btrfs') or {}).items():
        for name in names:
            tree.link('sys/fs/btrfs/%s/devices/%s' % (fsid, name), block_paths[name])
    for dm in spec.get('dm', []):
        for slave in dm.get('slaves', []):
            tree.link('%s/slaves/%s' % (block_paths[dm['name']], slave), block_paths[slave])
            tree.link('%s/holders/%s' % (block_paths[slave], dm['name']), block_paths[dm['name']])
    for alias, target in (spec.get('dev_links') or {}).items():
        tree.link('dev/' + alias, 'dev/' + target)


def _write_net(tree, spec, paths):
    net_paths = {}
    for nic in spec.get('net', []):
        if nic.get('device'):
            path = '%s/net/%s' % (paths[nic['device']], nic['iface'])
            tree.link(path + '/device', paths[nic['device']])
        else:
            path = 'sys/devices/virtual/net/' + nic['iface']
        net_paths[nic['iface']] = path
        tree.attr(path + '/ifindex', len(net_paths))
        tree.link('sys/class/net/' + nic['iface'], path)
    for nic in spec.get('net', []):
        for lower in nic.get('lowers', []):
            tree.link('%s/lower_%s' % (net_paths[nic['iface']], lower), net_paths[lower])
            tree.link('%s/upper_%s' % (net_paths[lower], nic['iface']), net_paths[nic['iface']])
        for port in nic.get('bridge_ports', []):
            tree.link('%s/brif/%s' % (net_paths[nic['iface']], port), net_paths[port] + '/brport')
            tree.mkdir(net_paths[port] + '/brport')


def _write_proc(tree, spec):
    tree.write('proc/cmdline', spec.get('cmdline', '') + '\n')
    if spec.get('mounts') is not None:
        lines = ['%s 0 0' % line for line in spec['mounts']]
        tree.write('proc/mounts', ''.join(line + '\n' for line in lines))
    routes = spec.get('routes') or {}
    header = 'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n'
    lines = [header]
    for iface in routes.get('ipv4_default', []):
        lines.append('%s\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n' % iface)
    for iface, network in (routes.get('ipv4_other') or {}).items():
        lines.append('%s\t%s\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n' % (iface, network))
    tree.write('proc/net/route', ''.join(lines))
    zeros = '0' * 32
    v6 = []
    for iface in routes.get('ipv6_default', []):
        v6.append('%s 00 %s 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003 %8s\n'
                  % (zeros, zeros, iface))
    # the kernel's unreachable default on lo, which is not a default route of any NIC
    v6.append('%s 00 %s 00 %s ffffffff 00000001 00000000 00200200 %8s\n' % (zeros, zeros, zeros, 'lo'))
    tree.write('proc/net/ipv6_route', ''.join(v6))
    if spec.get('swaps'):
        lines = ['Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n']
        for name in spec['swaps']:
            kind = 'partition' if name.startswith('/dev/') else 'file'
            lines.append('%s\t\t\t\t%s\t8388604\t\t0\t\t-2\n' % (name, kind))
        tree.write('proc/swaps', ''.join(lines))
    for process in spec.get('processes') or []:  # e.g. a running guest holding /dev/vfio/N open
        pid = process['pid']
        tree.write('proc/%d/comm' % pid, process.get('comm', 'qemu-system-x86') + '\n')
        arguments = [process.get('comm', 'qemu-system-x86')]
        if process.get('guest'):
            arguments += ['-name', 'guest=%s,debug-threads=on' % process['guest']]
        tree.write('proc/%d/cmdline' % pid, '\0'.join(arguments) + '\0')
        for index, group in enumerate(process.get('groups', [])):
            tree.mkdir('proc/%d/fd' % pid)
            os.symlink('/dev/vfio/%s' % group, os.path.join(tree.root, 'proc/%d/fd/%d' % (pid, 20 + index)))
    interrupts = spec.get('interrupts')
    if interrupts is not None:
        kind = 'IR-PCI-MSI' if interrupts == 'remapped' else 'PCI-MSI'
        apic = 'IR-IO-APIC' if interrupts == 'remapped' else 'IO-APIC'
        tree.write('proc/interrupts', '           CPU0       CPU1\n'
                   '  0:         10          0   %s    2-edge      timer\n'
                   ' 24:       1000          0   %s 327680-edge      xhci_hcd\n' % (apic, kind))


def _write_iommu(tree, spec):
    iommu = spec.get('iommu') or {}
    for unit in iommu.get('units', []):
        tree.mkdir('sys/devices/virtual/iommu/' + unit)
        tree.link('sys/class/iommu/' + unit, 'sys/devices/virtual/iommu/' + unit)
    if iommu.get('firmware'):
        tree.write('sys/firmware/acpi/tables/' + iommu['firmware'], 'table')
    if iommu.get('vfio_device'):
        tree.write('dev/vfio/vfio', '')
    for module in iommu.get('modules', []):
        tree.mkdir('sys/module/' + module)
    if 'vfio_iommu_type1' in iommu.get('modules', []):
        tree.attr('sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts',
                  'Y' if iommu.get('allow_unsafe_interrupts') else 'N')
    tree.mkdir('sys/kernel/iommu_groups')


def _write_malformed(tree, spec):
    for entry in spec.get('extra_files', []):
        tree.write(entry['path'], entry.get('text', ''))
    for entry in spec.get('extra_links', []):
        tree.link(entry['path'], entry['target'])


def _write_system(tree, spec):
    """Installed kernels (``lib/modules``), the running release and initramfs generator directories."""
    for release, modules in (spec.get('kernels') or {}).items():
        dep = ''.join('kernel/%s.ko: \n' % name for name in modules.get('modules', []))
        builtin = ''.join('kernel/%s.ko\n' % name for name in modules.get('builtin', []))
        aliases = ''.join('alias %s %s\n' % (pattern, module)
                          for pattern, module in (modules.get('aliases') or {}).items())
        tree.write('lib/modules/%s/modules.dep' % release, dep)
        tree.write('lib/modules/%s/modules.builtin' % release, builtin)
        tree.write('lib/modules/%s/modules.alias' % release, aliases)
    if spec.get('osrelease'):
        tree.attr('proc/sys/kernel/osrelease', spec['osrelease'])
    for generator in spec.get('initramfs') or []:
        tree.mkdir({'initramfs-tools': 'etc/initramfs-tools', 'dracut': 'etc/dracut.conf.d'}[generator])


def write_tree(spec, root):
    """Write the machine ``spec`` (a dict, see fixtures/sysfs/README.md) below ``root``."""
    tree = Tree(root)
    tree.mkdir('sys/bus/pci/devices')
    tree.mkdir('sys/bus/usb/devices')
    _write_iommu(tree, spec)
    paths = _pci_paths(spec)
    _write_pci(tree, spec, paths)
    _write_mdevs(tree, spec, paths)
    usb_paths = _write_usb(tree, spec, paths)
    _write_block(tree, spec, paths, usb_paths)
    _write_net(tree, spec, paths)
    _write_proc(tree, spec)
    _write_malformed(tree, spec)
    _write_system(tree, spec)
    if spec.get('pci_ids'):
        with open(os.path.join(FIXTURES, spec['pci_ids']), encoding='utf-8') as handle:
            tree.write('usr/share/misc/pci.ids', handle.read())
    return root


# -- a simulated kernel for the write side (vfio_bind, sriov_vfs, mdev) ------------------------------------

def build_with_kernel(name, tmp_path, mutate=None):
    """``build`` plus a ``FakeKernel`` over the tree: ``(root, kernel)``."""
    spec = copy.deepcopy(load_spec(name))
    if mutate is not None:
        mutate(spec)
    root = os.path.join(str(tmp_path), name)
    write_tree(spec, root)
    return root, FakeKernel(root, spec)


def _oserror(code):
    return OSError(code, os.strerror(code))


class FakeKernel:
    """What the kernel does when the attributes of a tree written by ``write_tree`` are written.

    Tests put ``kernel.write`` in place of ``host.prepare.sysfs_writer.write_attribute``. It understands the writes
    host preparation makes, with the kernel's answers:

    - ``driver_override``; ``drivers/X/unbind`` (ENODEV when not bound to X); ``drivers/X/bind`` (EBUSY
      when bound, ENODEV when X does not match); ``drivers_probe``, which returns success even when no
      driver takes the device (a bogus override). vfio-pci refuses bridges and devices without an IOMMU
      group; a driver other than vfio-pci/pci-stub only takes the devices it is the host driver of (the
      spec's ``host_driver``, else its ``driver`` when that is not vfio-pci). ``/dev/vfio/<group>``
      appears while a member of the group is on vfio-pci.
    - ``sriov_numvfs``: ENOENT without a PF driver, ERANGE above ``sriov_totalvfs``, EBUSY from one
      non-zero count to another; VFs appear as PCI devices with ``physfn``/``virtfnN`` links and groups.
    - ``mdev_supported_types/T/create`` (EEXIST for a UUID in use, EUSERS with no available instance)
      and ``<mdev>/remove``.

    ``fail_probe`` (addresses whose probe fails), ``swallow_probe`` (addresses whose ``drivers_probe``
    write does nothing) and ``fail_writes`` (``{(path below root, value): errno}``) inject failures.
    Unbinding from vfio-pci, or removing a VF, while the group is open (``open_group``) would hang a real
    kernel: it raises AssertionError here. ``writes`` lists every write as ``(path below root, value)``.
    """

    VFIO = 'vfio-pci'

    def __init__(self, root, spec):
        self.root = os.path.abspath(root)
        self.tree = Tree(self.root)
        self.spec = spec
        self.writes = []
        self.fail_probe = set()
        self.swallow_probe = set()
        self.fail_writes = {}
        self.native = {}
        modules = (spec.get('iommu') or {}).get('modules', [])
        for entry in spec.get('pci', []):
            driver = entry.get('host_driver')
            if driver is None and entry.get('driver') not in (None, self.VFIO, 'pci-stub'):
                driver = entry['driver']
            self.native[entry['address']] = driver
        self.vf_driver = {}
        for entry in spec.get('pci', []):
            if entry.get('physfn') and self.native.get(entry['address']):
                self.vf_driver.setdefault(entry['physfn'], self.native[entry['address']])
        for entry in spec.get('pci', []):
            sriov = entry.get('sriov') or {}
            if sriov.get('vf_driver'):
                self.vf_driver[entry['address']] = sriov['vf_driver']
        drivers = {driver for driver in self.native.values() if driver} | set(self.vf_driver.values())
        if 'vfio_pci' in modules:
            drivers.add(self.VFIO)
        if 'pci_stub' in modules:
            drivers.add('pci-stub')
        for driver in drivers:
            self.tree.mkdir('sys/bus/pci/drivers/' + driver)

    # -- helpers -------------------------------------------------------------------------------------
    def _real(self, rel):
        return os.path.join(self.root, rel)

    def device_path(self, address):
        """The device directory (relative) of ``address``, or None."""
        link = self._real('sys/bus/pci/devices/' + address)
        if not os.path.islink(link):
            return None
        return os.path.relpath(os.path.realpath(link), self.root)

    def _read(self, rel):
        try:
            with open(self._real(rel), encoding='utf-8') as handle:
                return handle.read().strip()
        except OSError:
            return None

    def driver(self, address):
        link = self._real(self.device_path(address) + '/driver')
        return os.path.basename(os.readlink(link)) if os.path.islink(link) else None

    def override(self, address):
        value = self._read(self.device_path(address) + '/driver_override')
        return None if value in (None, '', '(null)') else value

    def group(self, address):
        link = self._real(self.device_path(address) + '/iommu_group')
        return os.path.basename(os.readlink(link)) if os.path.islink(link) else None

    def group_open(self, group):
        wanted = '/dev/vfio/%s' % group
        proc = self._real('proc')
        for pid in os.listdir(proc) if os.path.isdir(proc) else []:
            fds = os.path.join(proc, pid, 'fd')
            for fd in os.listdir(fds) if os.path.isdir(fds) else []:
                if os.readlink(os.path.join(fds, fd)) == wanted:
                    return True
        return False

    def open_group(self, group, pid=4242, comm='qemu-system-x86', guest=None):
        """Simulate a running guest (QEMU started with ``-name guest=GUEST`` as libvirt does) holding
        ``/dev/vfio/<group>`` open."""
        self.tree.write('proc/%d/comm' % pid, comm + '\n')
        if guest is not None:
            self.tree.write('proc/%d/cmdline' % pid, '\0'.join([comm, '-name', 'guest=%s,debug-threads=on' % guest, '']))
        fds = self._real('proc/%d/fd' % pid)
        os.makedirs(fds, exist_ok=True)
        os.symlink('/dev/vfio/%s' % group, os.path.join(fds, str(3 + len(os.listdir(fds)))))

    def close_group(self, pid=4242):
        shutil.rmtree(self._real('proc/%d' % pid), ignore_errors=True)

    def _accepts(self, address, driver):
        path = self.device_path(address)
        if address in self.fail_probe and driver != self.native.get(address):
            return False
        if driver == self.VFIO or driver.endswith(('_vfio_pci', '-vfio-pci')):
            klass = self._read(path + '/class') or ''
            return not klass.startswith('0x0604') and self.group(address) is not None
        if driver == 'pci-stub':
            return True
        return self.native.get(address) == driver

    def _attach(self, address, driver):
        if not os.path.isdir(self._real('sys/bus/pci/drivers/' + driver)) or not self._accepts(address, driver):
            return False
        path = self.device_path(address)
        self.tree.link(path + '/driver', 'sys/bus/pci/drivers/' + driver)
        self.tree.link('sys/bus/pci/drivers/%s/%s' % (driver, address), path)
        if driver == self.VFIO and self.group(address) is not None:
            self.tree.write('dev/vfio/%s' % self.group(address), '')
        return True

    def _detach(self, address):
        driver = self.driver(address)
        path = self.device_path(address)
        group = self.group(address)
        if driver == self.VFIO and group is not None and self.group_open(group):
            raise AssertionError('unbinding %s from vfio-pci while /dev/vfio/%s is open hangs a real kernel'
                                 % (address, group))
        os.unlink(self._real(path + '/driver'))
        entry = self._real('sys/bus/pci/drivers/%s/%s' % (driver, address))
        if os.path.lexists(entry):
            os.unlink(entry)
        if driver == self.VFIO and group is not None:
            members = os.listdir(self._real('sys/kernel/iommu_groups/%s/devices' % group))
            if not any(self.driver(member) == self.VFIO for member in members if self.device_path(member)):
                node = self._real('dev/vfio/%s' % group)
                if os.path.exists(node):
                    os.unlink(node)

    def probe(self, address):
        if self.driver(address) is not None:
            return
        override = self.override(address)
        candidate = override if override else self.native.get(address)
        if candidate:
            self._attach(address, candidate)

    # -- the write entry point ---------------------------------------------------------------------------
    def write(self, path, value):
        full = os.path.abspath(path)
        if not full.startswith(self.root + os.sep):
            raise AssertionError('write outside the fixture tree: %s' % path)
        rel = os.path.relpath(full, self.root)
        self.writes.append((rel, value))
        text = value.strip()
        if (rel, text) in self.fail_writes:
            raise _oserror(self.fail_writes[(rel, text)])
        parts = rel.split('/')
        if rel == 'sys/bus/pci/drivers_probe':
            if self.device_path(text) is None:
                raise _oserror(errno.ENODEV)
            if text not in self.swallow_probe:
                self.probe(text)
            return
        if len(parts) == 6 and parts[:4] == ['sys', 'bus', 'pci', 'drivers'] and parts[5] in ('bind', 'unbind'):
            driver = parts[4]
            if self.device_path(text) is None:
                raise _oserror(errno.ENODEV)
            if parts[5] == 'unbind':
                if self.driver(text) != driver:
                    raise _oserror(errno.ENODEV)
                self._detach(text)
                return
            if self.driver(text) is not None:
                raise _oserror(errno.EBUSY)
            override = self.override(text)
            matches = driver == override if override else driver in (self.native.get(text), 'pci-stub')
            if not matches:
                raise _oserror(errno.ENODEV)
            if not self._attach(text, driver):
                raise _oserror(errno.EINVAL)
            return
        name = parts[-1]
        address = parts[-2] if len(parts) >= 2 else ''
        if name == 'driver_override':
            self.tree.attr(rel, text or '(null)')
            return
        if name == 'sriov_numvfs':
            self._sriov(address, rel, text)
            return
        if name == 'create' and len(parts) >= 4 and parts[-3] == 'mdev_supported_types':
            self._mdev_create(rel, text)
            return
        if name == 'remove' and len(parts) >= 2 and os.path.islink(self._real(os.path.dirname(rel) + '/mdev_type')):
            if text != '1':
                raise _oserror(errno.EINVAL)
            self._mdev_remove(os.path.dirname(rel))
            return
        raise _oserror(errno.EACCES)

    # -- SR-IOV --------------------------------------------------------------------------------------
    def _vf_links(self, pf_path):
        return sorted((int(name[6:]), name) for name in os.listdir(self._real(pf_path))
                      if name.startswith('virtfn') and name[6:].isdigit())

    def _sriov(self, pf, rel, text):
        pf_path = os.path.dirname(rel)
        try:
            wanted = int(text)
        except ValueError:
            raise _oserror(errno.EINVAL)
        current = int(self._read(rel) or 0)
        total = int(self._read(pf_path + '/sriov_totalvfs') or 0)
        if self.driver(pf) is None:
            raise _oserror(errno.ENOENT)
        if wanted == current:
            return
        if wanted > total:
            raise _oserror(errno.ERANGE)
        if current and wanted:
            raise _oserror(errno.EBUSY)
        if wanted == 0:
            for _index, name in self._vf_links(pf_path):
                vf_path = os.path.relpath(os.path.realpath(self._real(pf_path + '/' + name)), self.root)
                vf = os.path.basename(vf_path)
                group = self.group(vf)
                if group is not None and self.group_open(group):
                    raise AssertionError('removing VF %s while /dev/vfio/%s is open hangs a real kernel' % (vf, group))
                if self.driver(vf):
                    self._detach(vf)
                if group is not None:
                    os.unlink(self._real('sys/kernel/iommu_groups/%s/devices/%s' % (group, vf)))
                os.unlink(self._real('sys/bus/pci/devices/' + vf))
                shutil.rmtree(self._real(vf_path))
                os.unlink(self._real(pf_path + '/' + name))
        else:
            self._create_vfs(pf, pf_path, wanted)
        self.tree.attr(rel, wanted)

    def _create_vfs(self, pf, pf_path, count):
        entry = next(e for e in self.spec['pci'] if e['address'] == pf)
        sriov = entry.get('sriov') or {}
        domain, bus, slotfn = pf.split(':')
        slot, function = slotfn.split('.')
        pf_devfn = int(slot, 16) * 8 + int(function, 16)
        offset = sriov.get('offset', 16 + 64 * int(function, 16))
        stride = sriov.get('stride', 1)
        groups = [int(name) for name in os.listdir(self._real('sys/kernel/iommu_groups')) if name.isdigit()]
        next_group = max(groups or [0]) + 1
        vf_device = sriov.get('vf_device', entry.get('device'))
        for index in range(count):
            devfn = pf_devfn + offset + index * stride
            address = '%s:%s:%02x.%x' % (domain, bus, devfn // 8, devfn % 8)
            path = '%s/%s' % (os.path.dirname(pf_path), address)
            self.tree.mkdir(path)
            self.tree.link('sys/bus/pci/devices/' + address, path)
            for attribute, value in (('class', entry.get('class', '0x020000')), ('vendor', entry.get('vendor')),
                                     ('device', vf_device), ('subsystem_vendor', entry.get('vendor')),
                                     ('subsystem_device', '0x0000'), ('revision', '0x01'), ('numa_node', -1),
                                     ('driver_override', '(null)'), ('reset_method', 'flr')):
                self.tree.attr('%s/%s' % (path, attribute), value)
            self.tree.write(path + '/config', '\0' * 64)
            self.tree.link(path + '/physfn', pf_path)
            self.tree.link('%s/virtfn%d' % (pf_path, index), path)
            self.tree.link(path + '/iommu_group', 'sys/kernel/iommu_groups/%d' % next_group)
            self.tree.link('sys/kernel/iommu_groups/%d/devices/%s' % (next_group, address), path)
            next_group += 1
            self.native[address] = self.vf_driver.get(pf)
            self.probe(address)

    # -- mediated devices ------------------------------------------------------------------------------
    def _mdev_create(self, rel, text):
        type_dir = os.path.dirname(rel)
        parent_path = os.path.dirname(os.path.dirname(type_dir))
        uuid = text.lower()
        if os.path.lexists(self._real('sys/bus/mdev/devices/' + uuid)):
            raise _oserror(errno.EEXIST)
        available = int(self._read(type_dir + '/available_instances') or 0)
        if available <= 0:
            raise _oserror(errno.EUSERS)
        path = '%s/%s' % (parent_path, uuid)
        self.tree.mkdir(path)
        self.tree.link(path + '/mdev_type', type_dir)
        self.tree.link('%s/devices/%s' % (type_dir, uuid), path)
        self.tree.link('sys/bus/mdev/devices/' + uuid, path)
        self.tree.write(path + '/remove', '')
        self.tree.attr(type_dir + '/available_instances', available - 1)

    def _mdev_remove(self, path):
        uuid = os.path.basename(path)
        type_dir = os.path.relpath(os.path.realpath(self._real(path + '/mdev_type')), self.root)
        os.unlink(self._real('%s/devices/%s' % (type_dir, uuid)))
        os.unlink(self._real('sys/bus/mdev/devices/' + uuid))
        shutil.rmtree(self._real(path))
        available = int(self._read(type_dir + '/available_instances') or 0)
        self.tree.attr(type_dir + '/available_instances', available + 1)
