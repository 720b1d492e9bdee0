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

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import runner
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.operations.mdev import Mdev


def main():
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
    runner.run(module, Mdev)


if __name__ == '__main__':
    main()
