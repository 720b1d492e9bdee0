# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Mediated devices: create and remove them through sysfs (``mdev_supported_types/<type>/create`` takes a
UUID, ``<mdev>/remove`` takes ``1``), and keep them across reboots as mdevctl-style definitions
(``/etc/mdevctl.d/PARENT/UUID``) or libvirt node devices (``render_nodedev_xml``).
"""

from __future__ import annotations

import json
import os
import time

from ansible_collections.virtdev.libvirt.plugins.module_utils import _files, _ids, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import model
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import persistence, sysfs_writer


MDEVCTL_DIR = '/etc/mdevctl.d'


def mdevctl_definitions(root):
    """{uuid: [{'parent', 'type', 'start', 'path'}]} from the mdevctl-style files below root."""
    result = {}
    base = _files.resolved(root, MDEVCTL_DIR)
    try:
        parents = sorted(os.listdir(base))
    except OSError:
        return result
    for parent in parents:
        directory = os.path.join(base, parent)
        if parent == 'scripts.d' or not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            if not _ids.CANONICAL_UUID_RE.match(name):
                continue
            path = '%s/%s/%s' % (MDEVCTL_DIR, parent, name)
            try:
                data = json.loads(_files.read_text(root, path) or '{}')
            except ValueError:
                data = {}
            result.setdefault(name, []).append({'parent': parent, 'type': data.get('mdev_type'),
                                                'start': data.get('start'), 'path': path, 'data': data})
    return result


def render_mdevctl(mdev_type, start, previous=None):
    """mdevctl's JSON config (``/etc/mdevctl.d/PARENT/UUID``), keeping attributes already there."""
    data = {'mdev_type': mdev_type, 'start': start, 'attrs': []}
    if previous and isinstance(previous.get('attrs'), list):
        data['attrs'] = previous['attrs']
    return json.dumps(data, indent=2, sort_keys=False) + '\n'


def plan_mdevctl_files(root, uuid, state, parent, mdev_type, autostart, definitions):
    """FileChanges of the mdevctl-style definition of ``uuid`` (``/etc/mdevctl.d/PARENT/UUID``).

    present: the file for ``parent`` says ``mdev_type`` and ``start`` auto/manual (attributes already there
    are kept); absent: every definition of ``uuid`` (on ``parent`` only, when given) goes.
    """
    changes = []
    if state == 'present':
        path = '%s/%s/%s' % (MDEVCTL_DIR, parent, uuid)
        before = _files.read_text(root, path)
        start = 'auto' if autostart else 'manual'
        previous = None
        if before is not None:
            try:
                previous = json.loads(before)
            except ValueError:
                previous = None
        if isinstance(previous, dict) and previous.get('mdev_type') == mdev_type and previous.get('start') == start:
            return changes
        previous = previous if isinstance(previous, dict) else None
        changes.append(_files.FileChange(path, before, render_mdevctl(mdev_type, start, previous)))
        return changes
    for definition in definitions.get(uuid, []):
        if parent is None or definition['parent'] == parent:
            changes.append(_files.FileChange(definition['path'], _files.read_text(root, definition['path']), None))
    return changes


def remove_empty_parent(root, path):
    """After an mdevctl definition went, remove its parent's directory when it is empty."""
    persistence.remove_empty_dirs(root, path, MDEVCTL_DIR)


def nodedev_name(address):
    return 'pci_' + address.replace(':', '_').replace('.', '_')


def render_nodedev_xml(parent, mdev_type, uuid):
    """libvirt node device XML defining a mediated device (``virNodeDeviceDefineXML``).

    libvirt names the device itself when defining it (the name given is ignored); the one written here is
    the name it will choose, so the XML also validates against libvirt's schema, where ``name`` is required.
    """
    device = _xml.new_element('device')
    _xml.child(device, 'name', create=True).text = 'mdev_%s_%s' % (uuid.replace('-', '_'), nodedev_name(parent)[4:])
    _xml.child(device, 'parent', create=True).text = nodedev_name(parent)
    capability = _xml.new_element('capability', {'type': 'mdev'})
    device.append(capability)
    capability.append(_xml.new_element('type', {'id': mdev_type}))
    _xml.child(capability, 'uuid', create=True).text = uuid
    return _xml.to_string(device)


class MdevPlan:
    def __init__(self):
        self.before = None
        self.after = None
        self.writes = []
        self.errors = []
        self.warnings = []


def plan_mdev(host, uuid, state, parent=None, mdev_type=None, defined=None):
    """The sysfs writes that make mediated device ``uuid`` present (of ``mdev_type`` on ``parent``) or
    absent; ValueError for input that cannot be right (unknown parent or type), ``errors`` for the state
    of the host (no instance available, the UUID taken by another mdev)."""
    plan = MdevPlan()
    defined = defined or {}
    existing = host.mdevs.get(uuid)
    plan.before = existing.as_dict() if existing else None
    if state == 'absent':
        plan.after = None
        if existing is not None:
            if parent is not None and existing.parent != parent:
                plan.errors.append('uuid: %s is a mediated device on %s, not on parent %s; nothing was removed'
                                   % (uuid, existing.parent, parent))
            group = existing.iommu_group
            users = host.open_by(group)
            if users:
                plan.errors.append('uuid: mediated device %s is in use (IOMMU group %s open by %s); stop the guest '
                                   'first' % (uuid, group, model.describe_users(users)))
            plan.writes.append(('sys/bus/mdev/devices/%s/remove' % uuid, '1'))
        return plan
    dev = host.pci.get(parent)
    if dev is None:
        raise ValueError('parent: there is no PCI device %s on this host (not under /sys/bus/pci/devices)' % parent)
    types = {mdev_type_.type_id: mdev_type_ for mdev_type_ in dev.mdev_types}
    if not types:
        raise ValueError('parent: %s (%s, driver %s) offers no mediated device types (no mdev_supported_types); '
                         'its driver must support mdev (for example i915 with GVT-g, an NVIDIA vGPU driver)'
                         % (parent, dev.class_label, dev.driver or 'none'))
    if mdev_type not in types:
        raise ValueError('type: %r is not an mdev type of %s; it offers %s'
                         % (mdev_type, parent, ', '.join('%s (%s available)' % (t, types[t].available_instances)
                                                         for t in sorted(types))))
    plan.after = {'uuid': uuid, 'parent': parent, 'type': mdev_type}
    if existing is not None:
        if (existing.parent, existing.type_id) != (parent, mdev_type):
            plan.errors.append('uuid: %s is already used by a mediated device of type %s on %s; pick another UUID or '
                               'remove that one first (state: absent)' % (uuid, existing.type_id, existing.parent))
        return plan
    for definition in defined.get(uuid, []):
        if (definition['parent'], definition['type']) != (parent, mdev_type):
            plan.errors.append('uuid: %s is already defined for a mediated device of type %s on %s (%s); pick another '
                               'UUID or remove that definition first'
                               % (uuid, definition['type'], definition['parent'], definition['path']))
    available = types[mdev_type].available_instances
    if not available:
        plan.errors.append('type: %s on %s has no available instances (available_instances is %s); remove another '
                           'mediated device of that parent first' % (mdev_type, parent, available))
    plan.writes.append(('sys/bus/pci/devices/%s/mdev_supported_types/%s/create' % (parent, mdev_type), uuid))
    return plan


def apply_mdev(sysfs, plan, uuid, timeout=5.0):
    for relative, value in plan.writes:
        sysfs.write(relative, value)
    if sysfs.dry_run or not plan.writes:
        return
    deadline = time.monotonic() + timeout
    want = plan.after is not None
    while (sysfs.sysroot.resolve('sys/bus/mdev/devices/' + uuid) is not None) != want:
        if time.monotonic() >= deadline:
            raise sysfs_writer.PrepareError('mediated device %s %s after writing to %s' % (
                uuid, 'did not appear' if want else 'is still there', plan.writes[-1][0]))
        time.sleep(0.05)
