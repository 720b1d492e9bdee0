# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host as plain data (dicts, lists, strings) for host_devices_info and the report renderers: every
PCI device with its verdict, USB devices, IOMMU groups and who holds them, mdev types and devices.
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import guards
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import domain_usage


def pci_facts(host, dev, usage=None):
    usage = usage or {}
    judged = guards.verdict(host, dev.address, usage)
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
        'used_by': domain_usage.used_by(usage, ('pci', dev.address)),
        'verdict': judged['verdict'], 'reasons': judged['reasons'], 'steps': judged['steps'],
        'warnings': judged['warnings'],
        'problems': list(dev.problems),
    }


def usb_facts(host, usb, usage=None):
    usage = usage or {}
    facts = usb.as_dict()
    uses = domain_usage.used_by(usage, ('usb', '%s:%s' % (usb.vendor, usb.product)))
    if usb.bus is not None and usb.device is not None:
        uses += [use for use in domain_usage.used_by(usage, ('usb-address', '%d.%d' % (usb.bus, usb.device)))
                 if use not in uses]
    facts['used_by'] = uses
    facts['host_critical'] = list(host.critical_usb.get(usb.name, []))
    reasons = []
    if usb.hub:
        reasons.append({'guard': 'endpoint', 'message': 'a %s' % ('root hub' if usb.root_hub else 'hub'),
                        'overridable': False})
    for reason in facts['host_critical']:
        reasons.append({'guard': 'host_critical', 'message': reason, 'overridable': True})
    facts['verdict'] = guards.REFUSED if reasons else guards.READY
    facts['reasons'] = reasons
    return facts


def host_facts(host, usage=None):
    """Plain data (lists, dicts, strings) describing the host, for modules and the report renderers."""
    usage = usage or {}
    pci = [pci_facts(host, host.pci[address], usage) for address in sorted(host.pci)]
    groups = [{'group': number, 'type': host.group_types.get(number), 'devices': members,
               'held_by': domain_usage.group_holders(host, number, usage)}
              for number, members in sorted(host.groups.items())]
    mdev_types = [mdev_type.as_dict() for dev in sorted(host.pci.values(), key=lambda d: d.address)
                  for mdev_type in dev.mdev_types]
    mdevs = []
    for uuid in sorted(host.mdevs):
        entry = host.mdevs[uuid].as_dict()
        entry['used_by'] = domain_usage.used_by(usage, ('mdev', uuid))
        mdevs.append(entry)
    counts = {guards.READY: 0, guards.NEEDS_PREPARATION: 0, guards.REFUSED: 0}
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
