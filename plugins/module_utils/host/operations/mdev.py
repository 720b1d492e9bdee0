# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What an mdev run does, step by step for ``runner.run``: create or remove a mediated device through
sysfs and, with ``persistent``, define it for mdevctl (files) or libvirt (node devices)."""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _files, _ids, _libvirt, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import node_device_xml, runner, sysfs_source
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import mdev, sysfs_writer


def _mdev_text(device):
    if device is None:
        return ''
    return 'uuid: %s\nparent: %s\ntype: %s\n' % (device['uuid'], device['parent'], device['type'])


def libvirt_definitions(conn):
    """{uuid: [{'parent', 'type', 'path', 'device', 'autostart'}]} for the persistent mdevs libvirt knows."""
    result = {}
    for device in conn.node_devices():
        parsed = node_device_xml.parse_node_device(conn.node_device_xml(device))
        if parsed['type'] != 'mdev' or not parsed['uuid'] or not conn.node_device_is_persistent(device):
            continue
        result.setdefault(parsed['uuid'], []).append({
            'parent': _ids.pci_of_nodedev_name(parsed['parent']) or parsed['parent'],
            'type': parsed['mdev_type'], 'path': 'libvirt node device %s' % parsed['name'], 'device': device,
            'autostart': conn.node_device_autostart(device)})
    return result


def choose_backend(module, root):
    """(backend, connection or None) for persistent: true: 'libvirt' (with its connection) or 'mdevctl'."""
    wanted = module.params['persist_with']
    if wanted == 'mdevctl':
        return 'mdevctl', None
    if root != '/':
        if wanted == 'libvirt':
            raise runner.Failed('persist_with: libvirt defines devices of the host libvirt runs on; it needs root: / '
                                '(root is %s) (nothing was changed)' % root)
        return 'mdevctl', None
    if not _libvirt.HAS_LIBVIRT or not _xml.HAS_LXML:
        if wanted == 'libvirt':
            _common.require_libraries(module)
        return 'mdevctl', None
    try:
        conn = _libvirt.Connection(module.params['uri'])
    except _libvirt.LibvirtFailure as exc:
        if wanted == 'libvirt':
            raise runner.Failed('persist_with: libvirt: %s (nothing was changed)' % exc)
        module.warn('libvirt is not reachable (%s): the definition is written for mdevctl instead' % exc)
        return 'mdevctl', None
    if not conn.supports_node_device_define():
        conn.close()
        if wanted == 'libvirt':
            raise runner.Failed('persist_with: libvirt: this libvirt cannot define node devices (libvirt 7.3 or later '
                                'is needed) (nothing was changed)')
        return 'mdevctl', None
    return 'libvirt', conn


class Mdev(runner.Operation):

    conn = None

    def plan(self):
        params = self.params
        self.state = params['state']
        try:
            self.uuid = _ids.parse_uuid(params['uuid'], 'uuid')
            self.parent = _ids.pci_text(params['parent'], None) if params['parent'] is not None else None
            if params['timeout'] < 0:
                raise ValueError('timeout: %r must not be negative' % params['timeout'])
        except ValueError as exc:
            text = str(exc)
            if params['parent'] is not None and text.startswith(repr(params['parent'])):
                text = 'parent: ' + text
            raise ValueError(text)
        self.mdev_type = params['mdev_type']
        self.backend = None
        if params['persistent']:
            self.backend, self.conn = choose_backend(self.module, self.root)
        try:
            definitions = mdev.mdevctl_definitions(self.root)
            if self.conn is not None:
                for key, entries in libvirt_definitions(self.conn).items():
                    definitions.setdefault(key, []).extend(entries)
        except (sysfs_writer.PrepareError, _files.FileError, _libvirt.LibvirtFailure) as exc:
            raise runner.Failed(str(exc))
        self.host = sysfs_source.read_host(self.root)
        self.sysfs = sysfs_writer.Sysfs(self.root)
        self.mdev_plan = mdev.plan_mdev(self.host, self.uuid, self.state, self.parent, self.mdev_type,
                                        definitions)
        if self.mdev_plan.errors:
            raise runner.Refused(self.mdev_plan.errors)
        self.actual_parent = self.parent or (self.mdev_plan.before or {}).get('parent')
        self.libvirt_ops = []
        if self.backend == 'mdevctl':
            try:
                self.file_changes = mdev.plan_mdevctl_files(
                    self.root, self.uuid, self.state, self.actual_parent, self.mdev_type, params['autostart'],
                    {self.uuid: [d for d in definitions.get(self.uuid, []) if 'device' not in d]})
            except (sysfs_writer.PrepareError, _files.FileError) as exc:
                raise runner.Failed(str(exc))
        elif self.backend == 'libvirt':
            self.libvirt_ops = self._plan_libvirt([d for d in definitions.get(self.uuid, []) if 'device' in d])

    def _plan_libvirt(self, mine):
        ops = []
        if self.state == 'present':
            same = [d for d in mine if (d['parent'], d['type']) == (self.actual_parent, self.mdev_type)]
            if not same:
                ops.append({'op': 'define', 'xml': mdev.render_nodedev_xml(self.actual_parent, self.mdev_type, self.uuid)})
                if self.params['autostart']:
                    ops.append({'op': 'autostart', 'name': None, 'value': True})
            elif same[0]['autostart'] != self.params['autostart']:
                ops.append({'op': 'autostart', 'name': same[0]['device'].name(), 'value': self.params['autostart'],
                            'device': same[0]['device']})
        else:
            for definition in mine:
                if self.parent is None or definition['parent'] == self.parent:
                    ops.append({'op': 'undefine', 'name': definition['device'].name(), 'device': definition['device']})
        return ops

    @property
    def changed(self):
        return bool(self.mdev_plan.writes or self.file_changes or self.libvirt_ops)

    def predict(self):
        dry = sysfs_writer.Sysfs(self.root, dry_run=True)
        mdev.apply_mdev(dry, self.mdev_plan, self.uuid)
        self.writes = dry.writes
        return self.mdev_plan.after

    def apply(self, files):
        self.defining = False  # the device itself is made first; a failure after it is the definition's
        mdev.apply_mdev(self.sysfs, self.mdev_plan, self.uuid, self.params['timeout'])
        self.defining = True
        for change in self.file_changes:
            files.apply(change)
            if change.after is None:
                mdev.remove_empty_parent(self.root, change.path)
        try:
            self._apply_libvirt()
        except _libvirt.LibvirtFailure as exc:
            raise sysfs_writer.PrepareError(str(exc))

    def _apply_libvirt(self):
        defined = None
        for op in self.libvirt_ops:
            if op['op'] == 'define':
                defined = self.conn.node_device_define(op['xml'])
                op['name'] = defined.name()
            elif op['op'] == 'autostart':
                device = op.get('device') or defined
                self.conn.node_device_set_autostart(device, op['value'])
                op['name'] = device.name()
            else:
                self.conn.node_device_undefine(op['device'])

    def roll_back(self, error, file_problems):
        writes = self.sysfs.writes
        if not self.defining:
            return runner.Failed(str(error), changed=bool(writes), writes=writes)
        message = 'the mediated device %s was %s but its definition failed: %s' % (
            self.uuid, 'created' if self.state == 'present' else 'removed', error)
        if file_problems:
            message += '; ' + '; '.join(file_problems)
        return runner.Failed(message, changed=bool(writes or file_problems), writes=writes)

    def read_back(self):
        self.writes = self.sysfs.writes
        current = sysfs_source.read_host(self.root).mdevs.get(self.uuid)
        return current.as_dict() if current else None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def result(self, after):
        result = dict(
            uuid=self.uuid,
            before=self.mdev_plan.before,
            after=after,
            writes=self.writes,
            persisted_with=self.backend,
            files=self.files(),
            libvirt_calls=self.libvirt_calls(),
        )
        mdev_type = self.mdev_type or (self.mdev_plan.before or {}).get('type')
        if self.actual_parent and mdev_type:
            available = self.sysfs.read('sys/bus/pci/devices/%s/mdev_supported_types/%s/available_instances'
                                        % (self.actual_parent, mdev_type))
            if available is not None and available.isdigit():
                count = int(available)
                if self.module.check_mode and self.mdev_plan.writes:
                    count += -1 if self.state == 'present' else 1
                result['available_instances'] = count
        return result

    def libvirt_calls(self):
        return [{key: value for key, value in op.items() if key != 'device'} for op in self.libvirt_ops]

    def diff(self, after):
        diff = []
        if self.mdev_plan.writes:
            diff.append({'before_header': 'mdev %s' % self.uuid, 'after_header': 'mdev %s' % self.uuid,
                         'before': _mdev_text(self.mdev_plan.before), 'after': _mdev_text(after)})
        if self.libvirt_ops:
            diff.append({'before_header': 'libvirt node devices', 'after_header': 'libvirt node devices', 'before': '',
                         'after': ''.join('%s %s\n' % (op['op'], op.get('name') or op.get('xml', ''))
                                          for op in self.libvirt_calls())})
        return diff
