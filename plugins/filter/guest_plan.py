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
    through as one multi-function device of the guest, each function once whether the slot or several of its
    functions are named (host functions come from O(host_pci), the C(pci_devices) of
    M(virtdev.libvirt.host_devices_info)).
  - C(vfs) gives SR-IOV VFs as NICs with typed C(mac), C(vlan) and C(trust) - by C(address), or by C(pf) (a PCI
    address, or an interface name O(host_vfs) maps to one) and C(index), which becomes the interface source
    C(pf) + C(vf) of M(virtdev.libvirt.domain_devices); the plan's C(sriov) names the VF count a PF must have
    first when it has fewer.
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
      - SR-IOV PFs by interface name - the PF's PCI address (read on the target from
        C(/sys/class/net/NAME/device)); PFs given by PCI address need no entry.
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
      C(networks) (libvirt network names the NICs use), C(passthrough) (whether it needs host devices) and
      C(sriov) (each C(pf) and C(num_vfs) the PF must have before the guest gets its VFs, when it has fewer),
      C(rendered_config) (C(config) with each VF by PF and index as the address the host gives it, for
      O(virtdev.libvirt.domain_devices#module:state=rendered); VFs not there yet left out) and C(vfs_not_there)
      (those VFs, named).
  type: list
  elements: dict
'''

import copy
import itertools

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common import validation

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


def _slot_of(address, where):
    """(slot, function or None) of a GPU entry: DDDD:BB:SS names the slot, DDDD:BB:SS.F one of its functions."""
    text = str(address).strip().lower()
    full = _pci(text if '.' in text else text + '.0', where)
    slot, function = full.rsplit('.', 1)
    return slot, (full if '.' in text else None)


def _gpus(guest, profile, host_pci, where):
    """The GPU functions as one multi-function device per host slot, on consecutive free guest root-bus slots.

    A slot named several times (by itself or by several of its functions, as a list of a GPU's functions does)
    is one GPU: every function of it once. The functions come from the host (``host_pci``); without them, the
    functions named (function 0 for a slot named by itself)."""
    gpus = guest.get('gpu')
    if gpus is None:
        return []
    gpus = gpus if isinstance(gpus, list) else [gpus]
    first = int(str(profile.get('gpu_slot', FIRST_GPU_SLOT)), 0)
    on_host = {}
    for device in host_pci:
        on_host.setdefault(str(device.get('address', '')).rsplit('.', 1)[0], []).append(device['address'])
    slots = {}   # host slot -> its functions, in the order the slots were first named
    for number, gpu in enumerate(gpus):
        at = '%s.gpu[%d]' % (where, number) if len(gpus) > 1 else where + '.gpu'
        slot, function = _slot_of(gpu, at)
        if host_pci:
            if slot not in on_host:
                _fail(at, '%r: the host has no PCI device at %s' % (gpu, slot))
            if function is not None and function not in on_host[slot]:
                _fail(at, '%r: the host has no function %s (slot %s has %s)'
                      % (gpu, function, slot, ', '.join(sorted(on_host[slot]))))
            slots[slot] = sorted(on_host[slot])
        else:
            named = slots.setdefault(slot, [])
            if (function or slot + '.0') not in named:
                named.append(function or slot + '.0')
    config = []
    for number, functions in enumerate(slots.values()):
        for function in sorted(functions):
            guest_function = int(function.rsplit('.', 1)[1])
            device = {'kind': 'hostdev', 'type': 'pci', 'address': function, 'managed': True,
                      'guest_address': '0000:00:%02x.%d' % (first + number, guest_function)}
            if len(functions) > 1 and guest_function == 0:
                device['multifunction'] = True
            config.append(device)
    return config


def _is_pci_address(text):
    try:
        _ids.pci_text(str(text), 'pf')
    except _ids.IdError:
        return False
    return True


def _vf(vf, where, host_vfs, host_pci):
    """An SR-IOV VF as a guest NIC (typed: mac, vlan, trust), by address or by PF and index.

    Returns (the NIC, the VF count the PF needs or None). A VF by PF and index is the module's
    ``source: {pf, vf}`` (the module finds the VF's address on the host); the PF is a PCI address or an
    interface name that ``host_vfs`` maps to its address (read on the target)."""
    if not isinstance(vf, dict):
        vf = {'address': vf}
    need = None
    if vf.get('address'):
        source = {'hostdev': _pci(str(vf['address']), where + '.address')}
    elif vf.get('pf') is not None and vf.get('index') is not None:
        index = vf['index']
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            _fail(where + '.index', '%r is not a VF index (0, 1, ...)' % (index,))
        pf = _pci(str(vf['pf']), where + '.pf') if _is_pci_address(vf['pf']) else host_vfs.get(vf['pf'])
        if pf is None:
            _fail(where + '.pf', '%r is neither a PCI address nor a network interface of this host (interfaces '
                  'found: %s)' % (vf['pf'], ', '.join(sorted(host_vfs)) or 'none'))
        need = _vf_need(pf, index, host_pci, where)
        source = {'pf': pf, 'vf': index}
    else:
        _fail(where, '%r needs address, or pf and index' % (vf,))
    nic = {'kind': 'interface', 'source': source, 'managed': True}
    for key in ('mac', 'vlan', 'trust'):
        if vf.get(key) is not None:
            nic[key] = vf[key]
    return nic, need


def _vf_need(pf, index, host_pci, where):
    """The PF's VF count wanted for VF ``index``: ``{pf, num_vfs, current}``; checked against the host when it
    was read (``host_pci``), None when it was not (the module checks then)."""
    if not host_pci:
        return None
    device = next((item for item in host_pci if item.get('address') == pf), None)
    if device is None:
        _fail(where + '.pf', '%s: the host has no PCI device there' % pf)
    sriov = device.get('sriov') or {}
    if device.get('physfn'):
        _fail(where + '.pf', '%s is an SR-IOV VF (of PF %s), not a PF' % (pf, device['physfn']))
    if not sriov.get('totalvfs') and not sriov.get('vfs'):
        _fail(where + '.pf', '%s is not an SR-IOV PF (it can have no VFs)' % pf)
    current = sriov.get('numvfs') if sriov.get('numvfs') is not None else len(sriov.get('vfs') or [])
    if sriov.get('totalvfs') is not None and index >= sriov['totalvfs']:
        _fail(where + '.index', '%d is out of range: PF %s can have %d VFs (index 0..%d)'
              % (index, pf, sriov['totalvfs'], sriov['totalvfs'] - 1))
    vfs = sriov.get('vfs') or []
    return {'pf': pf, 'num_vfs': max(index + 1, current), 'current': current,
            'address': vfs[index] if index < len(vfs) else None}


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
    vfs = [_vf(vf, '%s.vfs[%d]' % (where, index), host_vfs, host_pci) for index, vf in enumerate(guest.get('vfs') or [])]
    config += [nic for nic, _need in vfs]
    mdevs = [_mdev(mdev, '%s.mdevs[%d]' % (where, index)) for index, mdev in enumerate(guest.get('mdevs') or [])]
    config += [device for device, _host in mdevs]
    config += [_strip_id(device) for device in profile['devices'] if not _excluded(device, exclude)]
    extra = list(guest.get('devices') or []) + list(guest.get('extra_devices') or [])
    config += _devices_with_ids(extra, where + '.devices')

    vfio, named = [], {}
    for index, device in enumerate(config):
        address = device.get('address') if device.get('kind') == 'hostdev' and device.get('type', 'pci') == 'pci' \
            else (device.get('source') or {}).get('hostdev') if device.get('kind') == 'interface' else None
        if not address:
            continue
        if address in named:  # libvirt would refuse the second, after the guest was defined
            _fail(where, 'the host device %s is given twice (%s and %s)' % (address, named[address], _named(device)))
        named[address] = _named(device)
        if device.get('kind') == 'hostdev':
            vfio.append(address)
    needs = [need for _nic, need in vfs if need]
    # for state=rendered (check mode, a guest to be created), which does not read the host: a VF by PF and index
    # as the address the host gives it; a VF this run creates first has none yet and is left out
    rendered, pending = [], []
    for device in config:
        source = device.get('source') or {}
        if device.get('kind') == 'interface' and 'pf' in source:
            need = next((need for nic, need in vfs if nic is device), None)
            if need is None or need['address'] is None:
                pending.append('VF %d of PF %s' % (source['vf'], source['pf']))
                continue
            device = dict(device, source={'hostdev': need['address']})
        rendered.append(device)
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
        'passthrough': any(device.get('kind') == 'hostdev' or {'hostdev', 'pf'} & set(device.get('source') or {})
                           or (device.get('kind') == 'xml' and "type='hostdev'" in device.get('xml', ''))
                           for device in config),
        'rendered_config': rendered,
        'vfs_not_there': pending,
        # VFs to create before the guest gets them (each PF's count, at least the one it has)
        'sriov': [{'pf': need['pf'], 'num_vfs': need['num_vfs']} for need in needs if need['num_vfs'] > need['current']],
    }


def _named(device):
    if device.get('kind') == 'interface':
        return 'vfs (an SR-IOV VF NIC)'
    return 'gpu' if device.get('guest_address') else 'host_devices'


def _pf_addresses(host_vfs):
    """PF interface name -> its PCI address (a ``{name: address}`` map; only the text values count)."""
    return {name: value for name, value in (host_vfs or {}).items() if isinstance(value, str)}


def guest_plan(guests, profiles, defaults=None, host_pci=None, host_vfs=None):
    if not isinstance(guests, list):
        raise AnsibleFilterError('guests: must be a list of guest dictionaries (got %r)' % (guests,))
    if not isinstance(profiles, dict):
        raise AnsibleFilterError('profiles: must be a dictionary of profiles by name (got %r)' % (profiles,))
    host_vfs = _pf_addresses(host_vfs)
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


# argument_specs types -> ansible's own converters (the ones validate_argument_spec applies)
_CHECKERS = {'str': validation.check_type_str, 'int': validation.check_type_int, 'bool': validation.check_type_bool,
             'float': validation.check_type_float, 'list': validation.check_type_list,
             'dict': validation.check_type_dict, 'path': validation.check_type_path, 'raw': validation.check_type_raw}


def _type_name(value):
    """The YAML type of a value (ansible hands strings over as its own str subclass)."""
    return next((kind.__name__ for kind in (bool, int, float, str, list, dict) if isinstance(value, kind)),
                type(value).__name__)


def _check_value(value, spec, where, errors):
    kind = spec.get('type', 'str')
    try:
        converted = _CHECKERS[kind](value) if kind != 'str' else validation.check_type_str(value, allow_conversion=True)
    except (TypeError, ValueError):
        errors.append('%s: %r (%s) is not a valid %s' % (where, value, _type_name(value), kind))
        return
    if spec.get('choices') and converted not in spec['choices']:
        errors.append('%s: %r is not one of %s' % (where, value, ', '.join(str(item) for item in spec['choices'])))
    if kind == 'list' and spec.get('elements'):
        element = dict(spec, type=spec['elements'])
        element.pop('choices', None)
        for index, item in enumerate(converted):
            _check_value(item, element, '%s[%d]' % (where, index), errors)
    elif kind == 'dict' and spec.get('options') and isinstance(converted, dict):
        _check_options(converted, spec['options'], where, errors)


def _check_options(values, options, where, errors):
    unknown = sorted(set(values) - set(options))
    if unknown:
        errors.append('%s: unknown keys %s (known: %s)' % (where, ', '.join(unknown), ', '.join(sorted(options))))
    for key, spec in options.items():
        if values.get(key) is None:
            if spec.get('required'):
                errors.append('%s.%s: is required' % (where, key))
            continue
        _check_value(values[key], dict(spec), '%s.%s' % (where, key), errors)


def guest_input_errors(guests, options):
    """The type errors of ``guests`` against the role's argument spec of a guest (``options``), each naming
    ``guests[i] (name).field[j].key`` and the value - what ansible-core's argument validation says without
    the list index (``found in 'guests -> vfs'``)."""
    if not isinstance(guests, list):
        return ['guests: %r (%s) is not a valid list' % (guests, _type_name(guests))]
    errors = []
    for index, guest in enumerate(guests):
        if not isinstance(guest, dict):
            errors.append('guests[%d]: %r (%s) is not a valid dict' % (index, guest, _type_name(guest)))
            continue
        where = 'guests[%d] (%s)' % (index, guest.get('name')) if guest.get('name') else 'guests[%d]' % index
        _check_options(guest, options, where, errors)
    return errors


class FilterModule:
    def filters(self):
        return {'guest_plan': guest_plan}
