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
    M(virtdev.libvirt.domain_devices) module. Used by the P(virtdev.libvirt.guest#role) role.
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

import itertools

from ansible.errors import AnsibleFilterError

SOURCE_KEYS = ('network', 'bridge', 'direct', 'user', 'hostdev')
DISK_SOURCE_KEYS = ('file', 'block', 'volume')
DISK_OPTIONS = ('format', 'bus', 'device', 'readonly', 'cache', 'io', 'discard', 'serial')


def _nic(network, profile, index):
    if not isinstance(network, dict) or not any(key in network for key in SOURCE_KEYS):
        raise AnsibleFilterError('networks[%d]: %r needs one of %s' % (index, network, ', '.join(SOURCE_KEYS)))
    source = {key: value for key, value in network.items() if key in SOURCE_KEYS or key == 'mode'}
    nic = {'kind': 'interface', 'source': source, 'model': network.get('model', profile['nic_model'])}
    if network.get('mac'):
        nic['mac'] = network['mac']
    return nic


def disk_letters(number):
    """The letters of the ``number``-th disk (0 -> a, 25 -> z, 26 -> aa, 701 -> zz, 702 -> aaa), as the Linux
    kernel names disks (sd_format_disk_name): vdz is followed by vdaa."""
    letters = ''
    number += 1
    while number:
        number, remainder = divmod(number - 1, 26)
        letters = chr(ord('a') + remainder) + letters
    return letters


def _disk(disk, profile, index, used):
    if not isinstance(disk, dict) or not any(key in disk for key in DISK_SOURCE_KEYS + ('device',)):
        raise AnsibleFilterError('disks[%d]: %r needs one of %s' % (index, disk, ', '.join(DISK_SOURCE_KEYS)))
    target = disk.get('target')
    if not target:
        # vda is the boot disk of most images: generated names start at the second letter
        target = next(profile['disk_prefix'] + disk_letters(number) for number in itertools.count(1)
                      if profile['disk_prefix'] + disk_letters(number) not in used)
    used.add(target)
    result = {'kind': 'disk', 'target': target, 'bus': disk.get('bus', profile['disk_bus'])}
    source = {key: disk[key] for key in DISK_SOURCE_KEYS + ('pool',) if key in disk}
    if source:
        result['source'] = source
    result.update({key: disk[key] for key in DISK_OPTIONS if key in disk and key != 'bus'})
    return result


def _hostdev(device):
    if isinstance(device, dict):
        return dict({'kind': 'hostdev'}, **device)
    return {'kind': 'hostdev', 'type': 'pci', 'address': str(device)}


def guest_devices(profile, networks=None, disks=None, host_devices=None):
    for key in ('nic_model', 'disk_bus', 'disk_prefix', 'devices'):
        if key not in (profile or {}):
            raise AnsibleFilterError('guest_devices: the profile needs %s (got %r)' % (key, profile))
    used = {disk['target'] for disk in disks or [] if isinstance(disk, dict) and disk.get('target')}
    config = [_nic(network, profile, index) for index, network in enumerate(networks or [])]
    config += [_disk(disk, profile, index, used) for index, disk in enumerate(disks or [])]
    config += [_hostdev(device) for device in host_devices or []]
    return config + list(profile['devices'])


class FilterModule:
    def filters(self):
        return {'guest_devices': guest_devices}
