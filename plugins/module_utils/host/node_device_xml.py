# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""libvirt's node devices (``virsh nodedev-dumpxml``): the parts that matter here, parsed from their XML,
and merged into the host facts (``merge_node_devices``). Node device names are read by ``_ids``.
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import below_root


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
        parts = [below_root.int_or_none((capability.findtext(part) or '').strip(), 0) for part in ('domain', 'bus', 'slot', 'function')]
        if all(part is not None for part in parts):
            result['address'] = '%04x:%02x:%02x.%x' % tuple(parts)
        group = capability.find('iommuGroup')
        if group is not None:
            result['iommu_group'] = below_root.int_or_none(group.get('number'))
    if kind in ('pci', 'usb_device'):
        for field in ('vendor', 'product'):
            element = capability.find(field)
            if element is not None and element.get('id'):
                try:
                    result[field] = _ids.hex_id(element.get('id'), field)
                except ValueError:
                    result[field] = None
    if kind == 'usb_device':
        result['bus'] = below_root.int_or_none((capability.findtext('bus') or '').strip())
        result['device'] = below_root.int_or_none((capability.findtext('device') or '').strip())
    if kind == 'mdev':
        mdev_type = capability.find('type')
        result['mdev_type'] = mdev_type.get('id') if mdev_type is not None else None
        uuid = (capability.findtext('uuid') or '').strip().lower()
        if not uuid:  # older libvirt: only the name mdev_<uuid with underscores>[_parent] carries it
            candidate = result['name'][len('mdev_'):len('mdev_') + 36].replace('_', '-')
            uuid = candidate if _ids.CANONICAL_UUID_RE.match(candidate) else ''
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
            entry = {'uuid': device['uuid'], 'parent': _ids.pci_of_nodedev_name(device['parent']) or device['parent'],
                     'type': device['mdev_type'], 'used_by': [], 'active': False, 'libvirt_name': device['name']}
            facts.setdefault('mdev_devices', []).append(entry)
            only.append({'name': device['name'], 'type': 'mdev', 'uuid': device['uuid']})
    facts.get('mdev_devices', []).sort(key=lambda entry: entry['uuid'])
    only.sort(key=lambda entry: (entry['type'], entry['name']))
    return {'node_devices': counts, 'only_in_libvirt': only}
