# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
name: guest_plan
short_description: Resolve guests and their profiles into domain settings, devices and host preparation
version_added: 0.1.0
description:
  - Turns the guests of a host (the C(guests) list of the P(virtdev.libvirt.guest#role) role) into one plan per
    guest - the options of M(virtdev.libvirt.domain), the O(virtdev.libvirt.domain_devices#module:config) list of
    M(virtdev.libvirt.domain_devices) and what the host must have for it (PCI devices on vfio-pci, mediated
    devices, the libvirt networks the NICs use).
  - A profile is data - C(nic_model), C(disk_bus), C(disk_prefix), C(domain) (settings of the domain module),
    C(devices) (fixed devices, each optionally with an C(id)), C(networks) (default NICs), C(exclude) - and may
    name a C(parent) whose values it extends (C(domain) merged recursively, C(devices) appended, a device with
    the C(id) of a parent's device replacing it).
  - Precedence of a guest's settings, lowest first - the role's defaults, the profile's C(domain), the guest's
    own C(type), C(machine), C(firmware), C(memory), C(vcpus), C(autostart), then the guest's C(domain).
  - A guest drops profile devices with C(exclude) (device C(id)s or kinds); C(vsock=false) is C(exclude=[vsock]).
  - C(gpu) (a PCI address with or without its function, or a list) passes every function of that host slot
    through as one multi-function device of the guest (host functions come from O(host_pci), the
    C(pci_devices) of M(virtdev.libvirt.host_devices_info)); C(vfs) gives SR-IOV VFs as NICs (by C(address),
    or by C(pf) and C(index) with O(host_vfs)), with C(mac), C(vlan) and C(trust).
author:
  - virtdev.libvirt maintainers (@virtdev)
options:
  _input:
    description: The guests, each a dictionary with at least C(name).
    type: list
    elements: dict
    required: true
  profiles:
    description: Profiles by name (the built-in ones and the user's, already merged by name).
    type: dict
    required: true
  defaults:
    description: Values of a guest's keys when neither the guest nor its profile gives them (C(profile),
      C(type), C(machine), C(firmware), C(memory), C(vcpus), C(hotplug_ports), C(networks), C(state)).
    type: dict
    default: {}
  host_pci:
    description: The C(pci_devices) of M(virtdev.libvirt.host_devices_info), to find the functions of a C(gpu).
    type: list
    elements: dict
    default: []
  host_vfs:
    description:
      - SR-IOV PFs by interface name - the PF's PCI address (its VFs are then read from O(host_pci)) or its VF
        addresses in index order.
    type: dict
    default: {}
'''

EXAMPLES = r'''
- name: Plan two guests
  ansible.builtin.debug:
    msg: "{{ guests | virtdev.libvirt.guest_plan(profiles) }}"
  vars:
    guests:
      - {name: web01, profile: linux_server, memory: 2048}
      - {name: tiny, profile: virtio, exclude: [video], vsock: false}
    profiles:
      linux_server: {parent: virtio, domain: {on_crash: restart}}
      virtio: {nic_model: virtio, disk_bus: virtio, disk_prefix: vd, devices: [{id: vsock, kind: vsock}]}
'''

RETURN = r'''
_value:
  description:
    - One plan per guest, in order, each with C(name), C(profile), C(state), C(domain) (options of
      M(virtdev.libvirt.domain) without C(uri), C(state) and C(name)), C(config) (the device list),
      C(manifest) (its O(virtdev.libvirt.domain_devices#module:domains) entry),
      C(vfio) (host PCI addresses for vfio-pci), C(mdevs) (each C(uuid), C(parent), C(mdev_type)),
      C(networks) (libvirt network names the NICs use) and C(passthrough) (whether it needs host devices).
  type: list
  elements: dict
'''

import copy
import itertools

from ansible.errors import AnsibleFilterError

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids

SOURCE_KEYS = ('network', 'bridge', 'direct', 'user', 'hostdev')
DISK_SOURCE_KEYS = ('file', 'block', 'volume')
DISK_OPTIONS = ('format', 'bus', 'device', 'readonly', 'cache', 'io', 'discard', 'serial', 'boot_order')
PROFILE_KEYS = ('parent', 'description', 'nic_model', 'disk_bus', 'disk_prefix', 'domain', 'devices', 'networks',
                'exclude', 'gpu_slot')
REQUIRED_PROFILE_KEYS = ('nic_model', 'disk_bus', 'disk_prefix')
# guest keys that are domain module options of the same name (the guest's own beat the profile's domain)
GUEST_DOMAIN_KEYS = ('type', 'machine', 'firmware', 'memory', 'vcpus', 'autostart')
GUEST_KEYS = GUEST_DOMAIN_KEYS + (
    'name', 'profile', 'state', 'hotplug_ports', 'networks', 'disks', 'cdroms', 'host_devices', 'gpu', 'vfs',
    'mdevs', 'devices', 'extra_devices', 'exclude', 'vsock', 'domain', 'nic_model', 'disk_bus')
FIRST_GPU_SLOT = 0x10   # guest slots on the q35 root bus that libvirt leaves free (it puts devices on root ports)


def _fail(where, message):
    raise AnsibleFilterError('%s: %s' % (where, message))


def _merge(base, override):
    """Recursive dictionary merge: ``override`` wins, dictionaries are merged, lists replaced."""
    result = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _devices_with_ids(devices, where):
    if not isinstance(devices, list) or not all(isinstance(item, dict) for item in devices):
        _fail(where, 'must be a list of device dictionaries (got %r)' % (devices,))
    return [dict(item) for item in devices]


def resolve_profile(name, profiles, chain=(), where=None):
    """A profile with its parents' values folded in; errors name the profile and the key (and the guest,
    ``where``, that asked for it)."""
    if not isinstance(name, str) or name not in profiles:
        where = 'profiles.%s.parent' % chain[-1] if chain else '%s.profile' % where if where else 'profile'
        _fail(where, '%r is not a profile (known: %s)' % (name, ', '.join(sorted(profiles))))
    if name in chain:
        _fail('profiles.%s.parent' % name, 'inheritance loops: %s' % ' -> '.join(chain + (name,)))
    profile = profiles[name]
    if not isinstance(profile, dict):
        _fail('profiles.%s' % name, 'must be a dictionary (got %r)' % (profile,))
    unknown = sorted(set(profile) - set(PROFILE_KEYS))
    if unknown:
        _fail('profiles.%s' % name, 'unknown keys %s (known: %s)' % (', '.join(unknown), ', '.join(PROFILE_KEYS)))
    base = resolve_profile(profile['parent'], profiles, chain + (name,)) if profile.get('parent') else {
        'domain': {}, 'devices': [], 'exclude': []}
    result = dict(base)
    for key in ('nic_model', 'disk_bus', 'disk_prefix', 'networks', 'description', 'gpu_slot'):
        if key in profile:
            result[key] = copy.deepcopy(profile[key])
    if not isinstance(profile.get('domain', {}), dict):
        _fail('profiles.%s.domain' % name, 'must be a dictionary of virtdev.libvirt.domain options')
    result['domain'] = _merge(base['domain'], profile.get('domain') or {})
    own = _devices_with_ids(profile.get('devices') or [], 'profiles.%s.devices' % name)
    replaced = {item['id'] for item in own if item.get('id')}
    result['devices'] = [item for item in base['devices'] if item.get('id') not in replaced] + own
    result['exclude'] = list(base['exclude']) + list(profile.get('exclude') or [])
    result['name'] = name
    if not chain:
        missing = [key for key in REQUIRED_PROFILE_KEYS if key not in result]
        if missing:
            _fail('profiles.%s' % name, 'needs %s (itself or through parent)' % ', '.join(missing))
    return result


def _nic(network, profile, where):
    if not isinstance(network, dict) or not any(key in network for key in SOURCE_KEYS):
        _fail(where, '%r needs one of %s' % (network, ', '.join(SOURCE_KEYS)))
    source = {key: value for key, value in network.items() if key in SOURCE_KEYS or key == 'mode'}
    nic = {'kind': 'interface', 'source': source, 'model': network.get('model', profile['nic_model'])}
    for key in ('mac', 'vlan', 'queues', 'mtu', 'boot_order'):
        if network.get(key) is not None:
            nic[key] = network[key]
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


def _next_target(prefix, used, first=1):
    # vda is the boot disk of most images: generated names start at the second letter
    return next(prefix + disk_letters(number) for number in itertools.count(first)
                if prefix + disk_letters(number) not in used)


def _disk(disk, profile, where, used):
    if not isinstance(disk, dict) or not any(key in disk for key in DISK_SOURCE_KEYS + ('device',)):
        _fail(where, '%r needs one of %s' % (disk, ', '.join(DISK_SOURCE_KEYS)))
    bus = disk.get('bus', profile['disk_bus'])
    target = disk.get('target') or _next_target(profile['disk_prefix'] if bus == profile['disk_bus']
                                                else _prefix_of_bus(bus), used)
    used.add(target)
    result = {'kind': 'disk', 'target': target, 'bus': bus}
    source = {key: disk[key] for key in DISK_SOURCE_KEYS + ('pool',) if key in disk}
    if source:
        result['source'] = source
    result.update({key: disk[key] for key in DISK_OPTIONS if key in disk and key != 'bus'})
    if 'format' not in result and str(disk.get('file', '')).endswith('.qcow2'):
        # libvirt takes an image without a driver type as raw: a qcow2 file would reach the guest as its raw bytes
        result['format'] = 'qcow2'
    return result


def _prefix_of_bus(bus):
    return {'virtio': 'vd', 'ide': 'hd', 'fdc': 'fd'}.get(bus, 'sd')


def _cdrom(path, where, used):
    """A read-only SATA cdrom (installers and driver discs need no driver of their own)."""
    if not isinstance(path, str) or not path:
        _fail(where, '%r is not an image path' % (path,))
    target = _next_target('sd', used, first=0)
    used.add(target)
    return {'kind': 'disk', 'target': target, 'bus': 'sata', 'device': 'cdrom', 'source': {'file': path},
            'readonly': True}


def _pci(text, where):
    try:
        return _ids.pci_text(text, where)
    except _ids.IdError as exc:
        raise AnsibleFilterError(str(exc))


def _hostdev(device, where):
    if isinstance(device, dict):
        result = dict({'kind': 'hostdev'}, **device)
        if result.get('type', 'pci') == 'pci' and isinstance(result.get('address'), str):
            result['address'] = _pci(result['address'], where + '.address')
        return result
    return {'kind': 'hostdev', 'type': 'pci', 'address': _pci(str(device), where), 'managed': True}


def _slot_functions(address, host_pci, where):
    """Every function of the host slot of ``address`` (DDDD:BB:SS or DDDD:BB:SS.F), function 0 first."""
    text = str(address).strip().lower()
    slot = _pci(text if '.' in text else text + '.0', where).rsplit('.', 1)[0]
    functions = sorted(device['address'] for device in host_pci if device.get('address', '').rsplit('.', 1)[0] == slot)
    if host_pci and not functions:
        _fail(where, '%r: the host has no PCI device at %s' % (address, slot))
    return functions or [slot + '.0']


def _gpus(guest, profile, host_pci, where):
    """The GPU functions as one multi-function device per GPU, on consecutive free guest root-bus slots."""
    gpus = guest.get('gpu')
    if gpus is None:
        return []
    gpus = gpus if isinstance(gpus, list) else [gpus]
    first = int(str(profile.get('gpu_slot', FIRST_GPU_SLOT)), 0)
    config = []
    for number, gpu in enumerate(gpus):
        functions = _slot_functions(gpu, host_pci, '%s.gpu[%d]' % (where, number) if len(gpus) > 1 else where + '.gpu')
        for function in functions:
            guest_function = int(function.rsplit('.', 1)[1])
            device = {'kind': 'hostdev', 'type': 'pci', 'address': function, 'managed': True,
                      'guest_address': '0000:00:%02x.%d' % (first + number, guest_function)}
            if len(functions) > 1 and guest_function == 0:
                device['multifunction'] = True
            config.append(device)
    return config


def _vf(vf, where, host_vfs):
    """An SR-IOV VF as a guest NIC, by address or by PF and index."""
    if not isinstance(vf, dict):
        vf = {'address': vf}
    if vf.get('address'):
        address = _pci(str(vf['address']), where + '.address')
    elif vf.get('pf') is not None and vf.get('index') is not None:
        available = host_vfs.get(vf['pf'])
        if available is None:
            _fail(where + '.pf', '%r is not an SR-IOV PF of this host with VFs (PFs with VFs: %s)'
                  % (vf['pf'], ', '.join(sorted(host_vfs)) or 'none'))
        if not isinstance(vf['index'], int) or not 0 <= vf['index'] < len(available):
            _fail(where + '.index', '%r: PF %s has %d VFs (index 0..%d)'
                  % (vf['index'], vf['pf'], len(available), len(available) - 1))
        address = available[vf['index']]
    else:
        _fail(where, '%r needs address, or pf and index' % (vf,))
    if vf.get('trust'):
        return _trusted_vf(vf, address, where)
    nic = {'kind': 'interface', 'source': {'hostdev': address}, 'managed': True}
    for key in ('mac', 'vlan'):
        if vf.get(key) is not None:
            nic[key] = vf[key]
    return nic


def _trusted_vf(vf, address, where):
    """trust (trustGuestRxFilters) has no typed option: the NIC as raw XML, identified by its MAC."""
    if not vf.get('mac'):
        _fail(where + '.trust', 'a trusted VF needs a mac (its identity as raw XML)')
    try:
        mac = _ids.parse_mac(str(vf['mac']), where + '.mac')
        pci = _ids.parse_pci(address, where)
    except _ids.IdError as exc:
        raise AnsibleFilterError(str(exc))
    vlan = "<vlan><tag id='%d'/></vlan>" % int(vf['vlan']) if vf.get('vlan') is not None else ''
    xml = ("<interface type='hostdev' managed='yes' trustGuestRxFilters='yes'><mac address='%s'/><source>"
           "<address type='pci' domain='0x%04x' bus='0x%02x' slot='0x%02x' function='0x%x'/></source>%s</interface>"
           % (mac, pci.domain, pci.bus, pci.slot, pci.function, vlan))
    return {'kind': 'xml', 'xml': xml}


def _mdev(mdev, where):
    if not isinstance(mdev, dict) or not all(mdev.get(key) for key in ('uuid', 'parent', 'mdev_type')):
        _fail(where, '%r needs uuid, parent and mdev_type' % (mdev,))
    device = {'kind': 'hostdev', 'type': 'mdev', 'uuid': mdev['uuid'], 'model': mdev.get('model', 'vfio-pci')}
    return device, {key: mdev[key] for key in ('uuid', 'parent', 'mdev_type')}


def _excluded(device, exclude):
    return device.get('id') in exclude or device.get('kind') in exclude


def _strip_id(device):
    return {key: value for key, value in device.items() if key != 'id'}


def plan_guest(guest, profiles, defaults, host_pci, host_vfs, where):
    if not isinstance(guest, dict) or not guest.get('name'):
        _fail(where, 'a guest needs a name (got %r)' % (guest,))
    where = '%s (%s)' % (where, guest['name'])
    unknown = sorted(set(guest) - set(GUEST_KEYS))
    if unknown:
        _fail(where, 'unknown keys %s' % ', '.join(unknown))
    profile = resolve_profile(guest.get('profile') or defaults.get('profile', 'virtio'), profiles, where=where)
    profile['nic_model'] = guest.get('nic_model') or profile['nic_model']
    profile['disk_bus'] = guest.get('disk_bus') or profile['disk_bus']
    if not isinstance(guest.get('domain') or {}, dict):
        _fail(where + '.domain', 'must be a dictionary of virtdev.libvirt.domain options')

    domain = {key: defaults[key] for key in GUEST_DOMAIN_KEYS if defaults.get(key) is not None}
    domain = _merge(domain, profile['domain'])
    domain = _merge(domain, {key: guest[key] for key in GUEST_DOMAIN_KEYS if guest.get(key) is not None})
    domain = _merge(domain, guest.get('domain') or {})
    for key in ('name', 'uri', 'state'):
        if key in domain:
            _fail(where + '.domain.' + key, 'is set by the role, not in domain')
    hotplug = guest.get('hotplug_ports', defaults.get('hotplug_ports', 0))
    domain.setdefault('pcie_root_ports', hotplug if 'q35' in str(domain.get('machine', 'q35')) else 0)

    networks = guest.get('networks')
    if networks is None:
        networks = profile['networks'] if 'networks' in profile else defaults.get('networks', [])
    offered = {device.get(key) for device in profile['devices'] for key in ('id', 'kind')}
    for index, name in enumerate(guest.get('exclude') or []):
        if name not in offered:  # a typo would otherwise keep the device it meant to drop, silently
            _fail('%s.exclude[%d]' % (where, index), '%r is no device id or kind of its profile (there are: %s)'
                  % (name, ', '.join(sorted(str(item) for item in offered if item))))
    exclude = list(profile['exclude']) + list(guest.get('exclude') or [])
    if guest.get('vsock') is False:
        exclude.append('vsock')
    used = {disk['target'] for disk in guest.get('disks') or [] if isinstance(disk, dict) and disk.get('target')}
    config = [_nic(network, profile, '%s.networks[%d]' % (where, index)) for index, network in enumerate(networks)]
    config += [_disk(disk, profile, '%s.disks[%d]' % (where, index), used)
               for index, disk in enumerate(guest.get('disks') or [])]
    config += [_cdrom(path, '%s.cdroms[%d]' % (where, index), used)
               for index, path in enumerate(guest.get('cdroms') or [])]
    config += [_hostdev(device, '%s.host_devices[%d]' % (where, index))
               for index, device in enumerate(guest.get('host_devices') or [])]
    config += _gpus(guest, profile, host_pci, where)
    config += [_vf(vf, '%s.vfs[%d]' % (where, index), host_vfs) for index, vf in enumerate(guest.get('vfs') or [])]
    mdevs = [_mdev(mdev, '%s.mdevs[%d]' % (where, index)) for index, mdev in enumerate(guest.get('mdevs') or [])]
    config += [device for device, _host in mdevs]
    config += [_strip_id(device) for device in profile['devices'] if not _excluded(device, exclude)]
    extra = list(guest.get('devices') or []) + list(guest.get('extra_devices') or [])
    config += _devices_with_ids(extra, where + '.devices')

    vfio = []
    for device in config:
        if device.get('kind') == 'hostdev' and device.get('type', 'pci') == 'pci' and device.get('address'):
            if device['address'] not in vfio:
                vfio.append(device['address'])
    return {
        'name': guest['name'],
        'profile': profile['name'],
        'state': guest.get('state') or defaults.get('state', 'present'),
        'domain': domain,
        'config': config,
        'manifest': {'domain': guest['name'], 'config': config},
        'vfio': vfio,
        'mdevs': [host for _device, host in mdevs],
        'networks': sorted({nic['source']['network'] for nic in config
                            if nic.get('kind') == 'interface' and 'network' in nic.get('source', {})}),
        'passthrough': any(device.get('kind') == 'hostdev' or 'hostdev' in device.get('source', {})
                           or (device.get('kind') == 'xml' and "type='hostdev'" in device.get('xml', ''))
                           for device in config),
    }


def _vfs_by_pf(host_vfs, host_pci):
    """PF name -> VF addresses in index order; a PF given by its PCI address takes its VFs from host_pci."""
    result = {}
    by_address = {device.get('address'): (device.get('sriov') or {}).get('vfs') or [] for device in host_pci}
    for name, value in (host_vfs or {}).items():
        if isinstance(value, str):
            value = by_address.get(value, [])
        result[name] = list(value)
    return result


def guest_plan(guests, profiles, defaults=None, host_pci=None, host_vfs=None):
    if not isinstance(guests, list):
        raise AnsibleFilterError('guests: must be a list of guest dictionaries (got %r)' % (guests,))
    if not isinstance(profiles, dict):
        raise AnsibleFilterError('profiles: must be a dictionary of profiles by name (got %r)' % (profiles,))
    host_vfs = _vfs_by_pf(host_vfs, host_pci or [])
    plans = [plan_guest(guest, profiles, defaults or {}, host_pci or [], host_vfs, 'guests[%d]' % index)
             for index, guest in enumerate(guests)]
    names = [plan['name'] for plan in plans]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise AnsibleFilterError('guests: %s listed more than once' % ', '.join(duplicates))
    return plans


def guest_devices(profile, networks=None, disks=None, host_devices=None):
    """The device list of one guest from a resolved profile (kept for callers of the first role version)."""
    for key in ('nic_model', 'disk_bus', 'disk_prefix', 'devices'):
        if key not in (profile or {}):
            raise AnsibleFilterError('guest_devices: the profile needs %s (got %r)' % (key, profile))
    used = {disk['target'] for disk in disks or [] if isinstance(disk, dict) and disk.get('target')}
    config = [_nic(network, profile, 'networks[%d]' % index) for index, network in enumerate(networks or [])]
    config += [_disk(disk, profile, 'disks[%d]' % index, used) for index, disk in enumerate(disks or [])]
    config += [_hostdev(device, 'host_devices[%d]' % index) for index, device in enumerate(host_devices or [])]
    return config + [_strip_id(device) for device in profile['devices']]


class FilterModule:
    def filters(self):
        return {'guest_plan': guest_plan}
