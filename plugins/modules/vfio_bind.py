#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: vfio_bind
short_description: Bind PCI devices to vfio-pci by address, safely, now and at boot
version_added: 0.1.0
description:
  - Binds the PCI devices at O(addresses) to vfio-pci (or O(driver)) the way libvirt and driverctl do it,
    per address. It writes C(driver_override), unbinds the device from its current driver, writes its address to
    C(/sys/bus/pci/drivers_probe), then B(verifies the driver link). A bogus override makes C(drivers_probe)
    report success and leave the device without a driver; the module detects it and rolls back.
  - O(state=unbound) gives the devices back to their host drivers (clears C(driver_override), unbinds,
    probes again, verifies).
  - All the guards of M(virtdev.libvirt.host_devices_info) run first, for every device, before anything is
    written. A list is a transaction. If any device fails, the devices already bound go back to their
    original driver and C(driver_override), and the rollback is verified.
  - With O(persistent=true) the binding is also made at boot, before a host driver grabs the device (see
    O(persist_method)), and the initramfs is regenerated when that configuration changed.
author:
  - virtdev.libvirt maintainers (@virtdev)
attributes:
  check_mode:
    support: full
    description: Runs every guard and reports the same plan, RV(devices), RV(files) and RV(diff); writes
      nothing to sysfs or to files and runs no command.
  diff_mode:
    support: full
    description: Shows each device's driver and C(driver_override) before and after, and each changed file.
extends_documentation_fragment:
  - virtdev.libvirt.group_uri
options:
  addresses:
    description:
      - PCI addresses C(DDDD:BB:SS.F) (or C(BB:SS.F) for domain 0000) of the devices.
    type: list
    elements: str
    required: true
    aliases: [address]
  state:
    description:
      - V(bound) binds the devices to O(driver); V(unbound) gives the devices that are on O(driver) back to
        their host drivers (devices on another driver are left alone).
    type: str
    choices: [bound, unbound]
    default: bound
  driver:
    description:
      - The driver to bind to, V(vfio-pci) (the default), V(pci-stub), or a vfio-pci variant driver such as
        V(mlx5_vfio_pci).
      - When it is not loaded and O(root=/), the module loads it with C(modprobe).
    type: str
    default: vfio-pci
  whole_group:
    description:
      - Also bind every other endpoint of each device's IOMMU group (PCI bridges are skipped, they keep their
        driver and do not make the group unviable).
      - Without it, a device whose IOMMU group holds another endpoint still on a host driver is refused
        (guard C(group)), since a guest could not use that group.
    type: bool
    default: false
  force:
    description:
      - Turn the errors of the overridable guards (host-critical device, host-critical group member, group
        not viable, IOMMU off) into warnings. Malformed or nonexistent addresses and bridges are never
        accepted.
    type: bool
    default: false
  host_driver:
    description:
      - With O(state=unbound), the driver the devices must end up on; the module fails and rolls back when
        the kernel gives them to another one (or to none). Without it, any driver other than O(driver) is
        accepted and a device left without a driver is reported as a warning.
    type: str
  persistent:
    description:
      - Also write the configuration that binds the devices at boot (O(state=bound)), or remove them from it
        (O(state=unbound)), and update the initramfs configuration (C(/etc/initramfs-tools/hooks/virtdev-vfio)
        or C(/etc/dracut.conf.d/virtdev-vfio.conf)).
    type: bool
    default: false
  persist_method:
    description:
      - V(udev) writes C(/etc/udev/rules.d/40-virtdev-vfio-pci.rules), one rule per address (matching the
        vendor:device ids too) that sets C(driver_override) when the device appears and rebinds it if a
        driver took it first. Devices that share vendor:device ids with devices of the host are unaffected.
      - "V(modprobe) writes C(/etc/modprobe.d/virtdev-vfio.conf) with C(options vfio-pci ids=VENDOR:DEVICE) and
        C(softdep HOSTDRIVER pre: vfio-pci). It binds by ids, so it is refused when another device with the same
        vendor:device would be taken from the host."
    type: str
    choices: [udev, modprobe]
    default: udev
  update_initramfs:
    description:
      - Regenerate the initramfs (C(update-initramfs -u) or C(dracut -f)) after the persistent configuration
        changed. Only when O(root=/), never in check mode, never when nothing changed.
    type: bool
    default: true
  initramfs_command:
    description: The command that regenerates the initramfs, instead of the detected one.
    type: list
    elements: str
  timeout:
    description: Seconds to wait for the kernel to bind each device after the probe.
    type: float
    default: 5
  root:
    description:
      - Directory under which C(/sys), C(/proc), C(/dev) and C(/etc) are read and written (for images and
        tests). C(modprobe) and the initramfs update run only when it is C(/).
    type: path
    default: /
notes:
  - Devices used by a running guest (their C(/dev/vfio/GROUP) is open) are never unbound (the kernel would
    block); stop the guest first.
  - A device whose host driver is built into the kernel is claimed before udev runs; the udev rule then
    unbinds and rebinds it during boot. To keep such a driver away from the device entirely, use
    C(vfio-pci.ids=) on the kernel command line (M(virtdev.libvirt.kernel_cmdline)), which binds by ids.
seealso:
  - module: virtdev.libvirt.host_devices_info
  - module: virtdev.libvirt.kernel_cmdline
'''

EXAMPLES = r'''
- name: Give a GPU and its HDMI audio (one IOMMU group) to vfio-pci, now and at every boot
  virtdev.libvirt.vfio_bind:
    addresses: ["0000:01:00.0"]
    whole_group: true
    persistent: true

- name: Hand a NIC back to its host driver
  virtdev.libvirt.vfio_bind:
    addresses: ["0000:03:00.0"]
    state: unbound
    host_driver: igb
    persistent: true

- name: See what would happen, with the kernel's view before and after
  virtdev.libvirt.vfio_bind:
    addresses: ["0000:01:00.0", "0000:01:00.1"]
  check_mode: true
  diff: true
'''

RETURN = r'''
devices:
  description: Every device handled (the requested ones and, with O(whole_group=true), their group members).
  returned: always
  type: list
  elements: dict
  contains:
    address:
      description: PCI address.
      type: str
      sample: "0000:01:00.0"
    requested:
      description: Whether it was in O(addresses) (false for members added by O(whole_group)).
      type: bool
    iommu_group:
      description: Its IOMMU group number.
      type: int
    before:
      description: C(driver) and C(driver_override) before.
      type: dict
      sample: {driver: nouveau, driver_override: null}
    after:
      description: C(driver) and C(driver_override) after, read back from sysfs (predicted in check mode;
        the host driver of an unbound device is then O(host_driver) or null).
      type: dict
      sample: {driver: vfio-pci, driver_override: vfio-pci}
    changed:
      description: Whether the device changed.
      type: bool
writes:
  description: sysfs writes made (or that would be made in check mode), in order, as C(path) and C(value).
  returned: always
  type: list
  elements: dict
  sample: [{path: /sys/bus/pci/devices/0000:01:00.0/driver_override, value: vfio-pci}]
files:
  description: Persistent configuration files changed (or that would be), as paths below O(root).
  returned: always
  type: list
  elements: str
  sample: [/etc/udev/rules.d/40-virtdev-vfio-pci.rules, /etc/initramfs-tools/hooks/virtdev-vfio]
commands:
  description: Commands run (or that would run in check mode), such as C(modprobe vfio-pci) or C(update-initramfs -u).
  returned: always
  type: list
  elements: list
iommu_groups:
  description: The C(/dev/vfio/GROUP) node of each IOMMU group whose devices are now on vfio-pci (or a variant
    driver), and whether it exists.
  returned: always
  type: list
  elements: dict
  sample: [{group: 1, node: /dev/vfio/1, exists: true}]
errors:
  description: The guard errors, when the module fails because of them.
  returned: failure
  type: list
  elements: str
rolled_back:
  description: Addresses put back to their original driver after a failure.
  returned: failure after something was changed
  type: list
  elements: str
diff:
  description: Before and after text of each device and file that changed.
  returned: when diff mode is on and something changed
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import runner
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.operations.vfio_bind import VfioBind
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare.bind import VFIO_DRIVER


def main():
    module = AnsibleModule(
        argument_spec=dict(
            addresses=dict(type='list', elements='str', required=True, aliases=['address']),
            state=dict(type='str', choices=['bound', 'unbound'], default='bound'),
            driver=dict(type='str', default=VFIO_DRIVER),
            whole_group=dict(type='bool', default=False),
            force=dict(type='bool', default=False),
            host_driver=dict(type='str'),
            persistent=dict(type='bool', default=False),
            persist_method=dict(type='str', choices=['udev', 'modprobe'], default='udev'),
            update_initramfs=dict(type='bool', default=True),
            initramfs_command=dict(type='list', elements='str'),
            timeout=dict(type='float', default=5.0),
            root=dict(type='path', default='/'),
            uri=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    runner.run(module, VfioBind)


if __name__ == '__main__':
    main()
