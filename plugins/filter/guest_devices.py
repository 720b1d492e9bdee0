# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
name: guest_devices
short_description: Expand a guest profile into a domain_devices config list
version_added: 0.1.0
description:
  - Turns short lists of networks, disks and host devices plus a profile (NIC model, disk bus, fixed
    devices) into the O(virtdev.libvirt.domain_devices#module:config) list of the
    M(virtdev.libvirt.domain_devices) module. The P(virtdev.libvirt.guest#role) role uses the fuller
    C(virtdev.libvirt.guest_plan) filter, which also resolves profiles.
  - Disks without a C(target) get the profile's prefix and the next free name as the Linux kernel names
    disks (vdb, vdc, ... vdz, vdaa, vdab, ...).
author:
  - virtdev.libvirt maintainers (@virtdev)
options:
  _input:
    description: The profile, a dictionary with C(nic_model), C(disk_bus), C(disk_prefix) and C(devices).
    type: dict
    required: true
  networks:
    description:
      - "NICs, each a C(source) dictionary (C({network: default}), C({bridge: br0}), ...), optionally
        with C(mac) and C(model)."
    type: list
    elements: dict
    default: []
  disks:
    description:
      - Disks, each with one of C(file), C(block), C(volume) (+ C(pool)), and optionally C(format),
        C(target), C(bus), C(device), C(readonly), C(cache).
    type: list
    elements: dict
    default: []
  host_devices:
    description: Host PCI addresses (strings) or hostdev dictionaries to pass through.
    type: list
    elements: raw
    default: []
'''

EXAMPLES = r'''
- name: The config list of a virtio guest with one NIC and one data disk
  ansible.builtin.debug:
    msg: "{{ profile | virtdev.libvirt.guest_devices([{'network': 'default'}], [{'file': '/srv/data.qcow2'}]) }}"
  vars:
    profile: {nic_model: virtio, disk_bus: virtio, disk_prefix: vd, devices: [{kind: rng}]}
'''

RETURN = r'''
_value:
  description: The device list, ready for O(virtdev.libvirt.domain_devices#module:config).
  type: list
  elements: dict
'''

from ansible_collections.virtdev.libvirt.plugins.filter.guest_plan import disk_letters, guest_devices  # noqa: F401  pylint: disable=unused-import


class FilterModule:
    def filters(self):
        return {'guest_devices': guest_devices}
