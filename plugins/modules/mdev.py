#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: mdev
short_description: Create or remove mediated devices (vGPU, GVT-g, ...), optionally persistently
version_added: 0.1.0
description:
  - Creates the mediated device O(uuid) of type O(mdev_type) on the parent device O(parent) by writing the
    UUID to C(mdev_supported_types/TYPE/create), after checking that the type exists on that parent, that it
    has C(available_instances) left and that the UUID is not already used by another mediated device (active,
    or defined in libvirt or mdevctl).
  - O(state=absent) removes it (C(remove)) and, with O(persistent=true), its definition. A mediated device
    held by a running guest is not removed.
  - With O(persistent=true) the device is also defined so that it is created at boot, through libvirt's node
    device API (C(virNodeDeviceDefineXML) and autostart, libvirt 7.3 and later) where available, else as an
    mdevctl definition file C(/etc/mdevctl.d/PARENT/UUID).
author:
  - virtdev.libvirt maintainers (@virtdev)
extends_documentation_fragment:
  - virtdev.libvirt.connection
attributes:
  check_mode:
    support: full
    description: Runs every check and reports the same plan; writes nothing to sysfs, files or libvirt.
  diff_mode:
    support: full
    description: Shows the mediated device and the definition file before and after.
options:
  uuid:
    description: The UUID of the mediated device (it names it in C(/sys/bus/mdev/devices) and in guest XML).
    type: str
    required: true
  state:
    description: Whether the mediated device exists.
    type: str
    choices: [present, absent]
    default: present
  parent:
    description:
      - The PCI address of the parent device (C(DDDD:BB:SS.F)). Required with O(state=present); with
        O(state=absent) only a device on that parent is removed.
    type: str
  mdev_type:
    description: The mdev type, as listed under the parent's C(mdev_supported_types) (for example
      V(nvidia-222) or V(i915-GVTg_V5_4)). Required with O(state=present).
    type: str
    aliases: [type]
  persistent:
    description: Also define (or undefine) the device so that it is created at boot.
    type: bool
    default: false
  persist_with:
    description:
      - V(libvirt) defines it as a libvirt node device (O(uri)), which needs O(root=/).
      - V(mdevctl) writes the JSON definition C(/etc/mdevctl.d/PARENT/UUID) that mdevctl reads at boot.
      - V(auto) uses libvirt when O(root=/), the libvirt Python bindings are installed and the connection
        supports defining node devices, else mdevctl files; RV(persisted_with) says which.
    type: str
    choices: [auto, libvirt, mdevctl]
    default: auto
  autostart:
    description: With O(persistent=true), whether the device is created automatically at boot.
    type: bool
    default: true
  timeout:
    description: Seconds to wait for the device to appear in (or leave) C(/sys/bus/mdev/devices).
    type: float
    default: 5
  root:
    description:
      - Directory under which C(/sys), C(/proc) and C(/etc) are read and written (for images and tests).
        libvirt is only used when it is C(/).
    type: path
    default: /
notes:
  - QEMU's emulated devices offer no mediated device types; the parent needs a driver with mdev support
    (i915 with GVT-g, NVIDIA vGPU, mtty/mdpy samples, vfio-ap/vfio-ccw on s390).
  - libvirt itself stores node device definitions through mdevctl, which must then be installed.
seealso:
  - module: virtdev.libvirt.host_devices_info
  - module: virtdev.libvirt.domain_devices
'''

EXAMPLES = r'''
- name: A GVT-g vGPU on the Intel iGPU, created at every boot
  virtdev.libvirt.mdev:
    uuid: a297db4a-f4c2-11e6-90f6-d3b88d6c9525
    parent: "0000:00:02.0"
    mdev_type: i915-GVTg_V5_4
    persistent: true

- name: Remove it and its definition
  virtdev.libvirt.mdev:
    uuid: a297db4a-f4c2-11e6-90f6-d3b88d6c9525
    state: absent
    persistent: true
'''

RETURN = r'''
uuid:
  description: The UUID, lower case.
  returned: success
  type: str
before:
  description: The mediated device before (C(uuid), C(parent), C(type)), null when it did not exist.
  returned: success
  type: dict
after:
  description: The mediated device after, null when it does not exist.
  returned: success
  type: dict
  sample: {uuid: a297db4a-f4c2-11e6-90f6-d3b88d6c9525, parent: "0000:00:02.0", type: i915-GVTg_V5_4}
available_instances:
  description: C(available_instances) of the type on the parent after the change (predicted in check mode).
  returned: when the parent and type are known
  type: int
writes:
  description: sysfs writes made (or that would be made), as C(path) and C(value).
  returned: success
  type: list
  elements: dict
  sample: [{path: /sys/bus/pci/devices/0000:00:02.0/mdev_supported_types/i915-GVTg_V5_4/create,
            value: a297db4a-f4c2-11e6-90f6-d3b88d6c9525}]
persisted_with:
  description: C(libvirt) or C(mdevctl) with O(persistent=true), else null.
  returned: success
  type: str
files:
  description: mdevctl definition files changed (or that would be), as paths below O(root).
  returned: success
  type: list
  elements: str
libvirt_calls:
  description: libvirt node device changes made (or that would be), as C(op) (define, autostart, undefine)
    and C(name) or C(xml).
  returned: success
  type: list
  elements: dict
diff:
  description: The device and the definition before and after.
  returned: when diff mode is on and something changed
  type: list
  elements: dict
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _files, _ids, _libvirt, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import node_device_xml, sysfs_source
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import sysfs_writer
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import mdev as mdev_backend


def _mdev_text(mdev):
    if mdev is None:
        return ''
    return 'uuid: %s\nparent: %s\ntype: %s\n' % (mdev['uuid'], mdev['parent'], mdev['type'])


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
    """(backend, connection or None) for persistent: true."""
    wanted = module.params['persist_with']
    if wanted == 'mdevctl':
        return 'mdevctl', None
    if root != '/':
        if wanted == 'libvirt':
            module.fail_json(msg='persist_with: libvirt defines devices of the host libvirt runs on; it needs root: / '
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
            module.fail_json(msg='persist_with: libvirt: %s (nothing was changed)' % exc)
        module.warn('libvirt is not reachable (%s): the definition is written for mdevctl instead' % exc)
        return 'mdevctl', None
    if not conn.supports_node_device_define():
        if wanted == 'libvirt':
            module.fail_json(msg='persist_with: libvirt: this libvirt cannot define node devices (libvirt 7.3 or later '
                                 'is needed) (nothing was changed)')
        conn.close()
        return 'mdevctl', None
    return 'libvirt', conn


def run_module():
    argument_spec = dict(
        uuid=dict(type='str', required=True),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
        parent=dict(type='str'),
        mdev_type=dict(type='str', aliases=['type']),
        persistent=dict(type='bool', default=False),
        persist_with=dict(type='str', choices=['auto', 'libvirt', 'mdevctl'], default='auto'),
        autostart=dict(type='bool', default=True),
        timeout=dict(type='float', default=5.0),
        root=dict(type='path', default='/'),
    )
    argument_spec.update(_common.CONNECTION_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True,
                           required_if=[('state', 'present', ('parent', 'mdev_type'))])
    _common.check_strings(module)  # NUL, control characters, lone surrogates: refused naming the option
    params = module.params
    root = os.path.abspath(params['root'])
    state = params['state']
    if not os.path.isdir(root):
        module.fail_json(msg='root: %r is not a directory' % params['root'])
    try:
        uuid = _ids.parse_uuid(params['uuid'])
        parent = _ids.pci_text(params['parent'], None) if params['parent'] is not None else None
        if params['timeout'] < 0:
            raise ValueError('timeout: %r must not be negative' % params['timeout'])
    except ValueError as exc:
        text = str(exc)
        if params['parent'] is not None and text.startswith(repr(params['parent'])):
            text = 'parent: ' + text
        module.fail_json(msg='%s (nothing was changed)' % text)
    mdev_type = params['mdev_type']

    backend, conn = (None, None)
    if params['persistent']:
        backend, conn = choose_backend(module, root)
    try:
        definitions = mdev_backend.mdevctl_definitions(root)
        if conn is not None:
            for key, entries in libvirt_definitions(conn).items():
                definitions.setdefault(key, []).extend(entries)
    except (sysfs_writer.PrepareError, _files.FileError, _libvirt.LibvirtFailure) as exc:
        module.fail_json(msg=str(exc))

    host = sysfs_source.read_host(root)
    sysfs = sysfs_writer.Sysfs(root)
    try:
        plan = mdev_backend.plan_mdev(host, sysfs, uuid, state, parent, mdev_type, definitions)
    except ValueError as exc:
        module.fail_json(msg='%s (nothing was changed)' % exc)
    if plan.errors:
        module.fail_json(msg='refused, nothing was changed: %s' % '; '.join(plan.errors), errors=plan.errors)
    actual_parent = parent or (plan.before or {}).get('parent')

    changes, libvirt_ops = [], []
    if backend == 'mdevctl':
        try:
            changes = mdev_backend.plan_mdevctl_files(root, uuid, state, actual_parent, mdev_type, params['autostart'],
                                              {uuid: [d for d in definitions.get(uuid, []) if 'device' not in d]})
        except (sysfs_writer.PrepareError, _files.FileError) as exc:
            module.fail_json(msg=str(exc))
    elif backend == 'libvirt':
        mine = [d for d in definitions.get(uuid, []) if 'device' in d]
        if state == 'present':
            same = [d for d in mine if (d['parent'], d['type']) == (actual_parent, mdev_type)]
            if not same:
                libvirt_ops.append({'op': 'define', 'xml': mdev_backend.render_nodedev_xml(actual_parent, mdev_type, uuid)})
                if params['autostart']:
                    libvirt_ops.append({'op': 'autostart', 'name': None, 'value': True})
            elif same[0]['autostart'] != params['autostart']:
                libvirt_ops.append({'op': 'autostart', 'name': same[0]['device'].name(), 'value': params['autostart'],
                                    'device': same[0]['device']})
        else:
            for definition in mine:
                if parent is None or definition['parent'] == parent:
                    libvirt_ops.append({'op': 'undefine', 'name': definition['device'].name(),
                                        'device': definition['device']})

    if module.check_mode:
        dry = sysfs_writer.Sysfs(root, dry_run=True)
        mdev_backend.apply_mdev(dry, plan, uuid)
        writes = dry.writes
        after = plan.after
    else:
        try:
            mdev_backend.apply_mdev(sysfs, plan, uuid, params['timeout'])
        except sysfs_writer.PrepareError as exc:
            module.fail_json(msg=str(exc), writes=sysfs.writes, changed=bool(sysfs.writes))
        writes = sysfs.writes
        writer = _files.Transaction(root, atomic_move=lambda src, dest: module.atomic_move(src, dest, unsafe_writes=False))
        try:
            for change in changes:
                writer.apply(change)
                if change.after is None:
                    mdev_backend.remove_empty_parent(root, change.path)
            defined = None
            for op in libvirt_ops:
                if op['op'] == 'define':
                    defined = conn.node_device_define(op['xml'])
                    op['name'] = defined.name()
                elif op['op'] == 'autostart':
                    device = op.get('device') or defined
                    conn.node_device_set_autostart(device, op['value'])
                    op['name'] = device.name()
                else:
                    conn.node_device_undefine(op['device'])
        except (OSError, _libvirt.LibvirtFailure) as exc:
            writer.rollback()
            module.fail_json(msg='the mediated device %s was %s but its definition failed: %s'
                             % (uuid, 'created' if state == 'present' else 'removed', exc),
                             writes=writes, changed=bool(writes))
        current = sysfs_source.read_host(root).mdevs.get(uuid)
        after = current.as_dict() if current else None
    if conn is not None:
        conn.close()

    changed = bool(plan.writes or changes or libvirt_ops)
    result = dict(
        changed=changed,
        uuid=uuid,
        before=plan.before,
        after=after,
        writes=writes,
        persisted_with=backend,
        files=[_files.resolved(root, change.path) for change in changes],
        libvirt_calls=[{key: value for key, value in op.items() if key != 'device'} for op in libvirt_ops],
    )
    type_parent = actual_parent and (mdev_type or (plan.before or {}).get('type'))
    if type_parent:
        mdev_type_id = mdev_type or plan.before['type']
        available = sysfs.read('sys/bus/pci/devices/%s/mdev_supported_types/%s/available_instances'
                               % (actual_parent, mdev_type_id))
        if available is not None and available.isdigit():
            count = int(available)
            if module.check_mode and plan.writes:
                count += -1 if state == 'present' else 1
            result['available_instances'] = count
    if module._diff and changed:
        diff = []
        if plan.writes:
            diff.append({'before_header': 'mdev %s' % uuid, 'after_header': 'mdev %s' % uuid,
                         'before': _mdev_text(plan.before), 'after': _mdev_text(after)})
        diff += [change.diff(root) for change in changes]
        if libvirt_ops:
            diff.append({'before_header': 'libvirt node devices', 'after_header': 'libvirt node devices', 'before': '',
                         'after': ''.join('%s %s\n' % (op['op'], op.get('name') or op.get('xml', ''))
                                          for op in result['libvirt_calls'])})
        result['diff'] = diff
    module.exit_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
