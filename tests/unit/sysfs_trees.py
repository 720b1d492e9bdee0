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
import os

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
    for name, path in block_paths.items():
        tree.mkdir(path + '/slaves')
        tree.mkdir(path + '/holders')
        tree.link('sys/class/block/' + name, path)
        tree.write('dev/' + name, '')
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
    if spec.get('pci_ids'):
        with open(os.path.join(FIXTURES, spec['pci_ids']), encoding='utf-8') as handle:
            tree.write('usr/share/misc/pci.ids', handle.read())
    return root
