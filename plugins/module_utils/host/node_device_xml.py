# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""libvirt's node devices (``virsh nodedev-dumpxml``) in the host facts: the parts that matter here, read by
``nodedev_source`` (the one node device XML reader), merged into the facts (``merge_node_devices``).
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import nodedev_source


def parse_node_device(text):
    """The parts of a libvirt node device XML that matter here, as a dict (``nodedev_source.summary``: the one
    reader of node device XML, which also builds the host model of a remote host)."""
    return nodedev_source.summary(text)


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
