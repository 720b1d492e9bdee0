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
    description:
      - The user's profiles by name, added to the built-in profiles of the P(virtdev.libvirt.guest#role) role (its
        C(vars/main.yml)); a profile with the name of a built-in one replaces it.
    type: dict
    default: {}
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
- name: Plan two guests from built-in profiles
  ansible.builtin.debug:
    msg: "{{ [{'name': 'web01', 'profile': 'linux_server'}, {'name': 'tiny', 'profile': 'minimal'}] | virtdev.libvirt.guest_plan }}"

- name: Plan guests from profiles of one's own (built-in parents included)
  ansible.builtin.debug:
    msg: "{{ guests | virtdev.libvirt.guest_plan(profiles) }}"
  vars:
    guests:
      - {name: web01, profile: web, memory: 2048}
      - {name: tiny, profile: virtio, exclude: [video], vsock: false}
    profiles:
      web: {parent: linux_server, domain: {on_crash: destroy}}
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
      O(virtdev.libvirt.domain_devices#module:state=rendered); VFs not there yet and devices asked for by device
      mapping left out), C(vfs_not_there) (those VFs, named) and C(mappings_unresolved) (the mapping names of those
      devices, resolved on the host by M(virtdev.libvirt.domain_devices), docs/device_mappings.md).
  type: list
  elements: dict
'''

import copy
import difflib
import itertools
import os
import re

import yaml

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common import validation

from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine, _ids, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import KINDS, device_argument_spec

SOURCE_KEYS = ('network', 'bridge', 'direct', 'user', 'hostdev')
NIC_OPTIONS = ('mac', 'vlan', 'queues', 'mtu', 'boot_order')
NIC_KEYS = SOURCE_KEYS + ('mode', 'model') + NIC_OPTIONS
DISK_SOURCE_KEYS = ('file', 'block', 'volume')
DISK_OPTIONS = ('format', 'bus', 'device', 'readonly', 'cache', 'io', 'discard', 'serial', 'boot_order')
DISK_KEYS = DISK_SOURCE_KEYS + ('pool', 'target') + DISK_OPTIONS
VF_KEYS = ('address', 'pf', 'index', 'mac', 'vlan', 'trust')
MDEV_KEYS = ('uuid', 'parent', 'mdev_type', 'model')
PROFILE_KEYS = ('parent', 'description', 'nic_model', 'disk_bus', 'disk_prefix', 'domain', 'devices', 'networks',
                'exclude', 'gpu_slot')
REQUIRED_PROFILE_KEYS = ('nic_model', 'disk_bus', 'disk_prefix')
# guest keys that are domain module options of the same name (the guest's own beat the profile's domain)
GUEST_DOMAIN_KEYS = ('type', 'machine', 'firmware', 'memory', 'vcpus', 'autostart')
GUEST_KEYS = GUEST_DOMAIN_KEYS + (
    'name', 'profile', 'state', 'hotplug_ports', 'networks', 'disks', 'cdroms', 'host_devices', 'gpu', 'vfs',
    'mdevs', 'devices', 'extra_devices', 'exclude', 'vsock', 'domain', 'nic_model', 'disk_bus')
GUEST_ROLE = os.path.join(os.path.dirname(__file__), '..', '..', 'roles', 'guest')
BUILTIN_PROFILES = os.path.join(GUEST_ROLE, 'vars', 'main.yml')
ROLE_ARGUMENT_SPECS = os.path.join(GUEST_ROLE, 'meta', 'argument_specs.yml')
FIRST_GPU_SLOT = 0x10   # guest slots on the q35 root bus that libvirt leaves free (it puts devices on root ports)


def _fail(where, message):
    raise AnsibleFilterError('%s: %s' % (where, message))


def _refuse_unknown(entry, known, where):
    """A typo in an entry's option (``fiel:``) would otherwise be dropped silently or blamed on another option."""
    for key in sorted(set(entry) - set(known), key=str):
        _fail('%s.%s' % (where, key), _unknown_option(key, entry[key], known))


def _unknown_option(key, value, known):
    close = difflib.get_close_matches(str(key), list(known), n=1)
    return 'unknown option (given %r)%s (options: %s)' % (
        value, ' - did you mean %s?' % close[0] if close else '', ', '.join(known))


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
        'domain': {}, 'devices': [], 'device_origins': [], 'exclude': []}
    result = dict(base)
    for key in ('nic_model', 'disk_bus', 'disk_prefix', 'networks', 'description', 'gpu_slot'):
        if key in profile:
            result[key] = copy.deepcopy(profile[key])
    if not isinstance(profile.get('domain', {}), dict):
        _fail('profiles.%s.domain' % name, 'must be a dictionary of virtdev.libvirt.domain options')
    result['domain'] = _merge(base['domain'], profile.get('domain') or {})
    own = _devices_with_ids(profile.get('devices') or [], 'profiles.%s.devices' % name)
    replaced = {item['id'] for item in own if item.get('id')}
    kept = [index for index, item in enumerate(base['devices']) if item.get('id') not in replaced]
    result['devices'] = [base['devices'][index] for index in kept] + own
    # where each device was written (profiles.NAME.devices[i]), to name it when the kind table refuses it
    result['device_origins'] = [base['device_origins'][index] for index in kept] + [
        'profiles.%s.devices[%d]' % (name, index) for index in range(len(own))]
    result['exclude'] = list(base['exclude']) + list(profile.get('exclude') or [])
    result['name'] = name
    if not chain:
        missing = [key for key in REQUIRED_PROFILE_KEYS if key not in result]
        if missing:
            _fail('profiles.%s' % name, 'needs %s (itself or through parent)' % ', '.join(missing))
    return result


def _nic(network, profile, where):
    if isinstance(network, dict):
        _refuse_unknown(network, NIC_KEYS, where)
    if not isinstance(network, dict) or not any(key in network for key in SOURCE_KEYS):
        _fail(where, '%r needs one of %s' % (network, ', '.join(SOURCE_KEYS)))
    source = {key: value for key, value in network.items() if key in SOURCE_KEYS or key == 'mode'}
    nic = {'kind': 'interface', 'source': source, 'model': network.get('model', profile['nic_model'])}
    for key in NIC_OPTIONS:
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
    if isinstance(disk, dict):
        _refuse_unknown(disk, DISK_KEYS, where)
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
    _refuse_unknown(vf, VF_KEYS, where)
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
    if isinstance(mdev, dict):
        _refuse_unknown(mdev, MDEV_KEYS, where)
    if not isinstance(mdev, dict) or not all(mdev.get(key) for key in ('uuid', 'parent', 'mdev_type')):
        _fail(where, '%r needs uuid, parent and mdev_type' % (mdev,))
    device = {'kind': 'hostdev', 'type': 'mdev', 'uuid': mdev['uuid'], 'model': mdev.get('model', 'vfio-pci')}
    return device, {key: mdev[key] for key in ('uuid', 'parent', 'mdev_type')}


def _excluded(device, exclude):
    return device.get('id') in exclude or device.get('kind') in exclude


def _strip_id(device):
    return {key: value for key, value in device.items() if key != 'id'}


# the module's option paths of a device -> the user's field in a guest entry (longest first)
NIC_RENAMES = (('.source', ''),)
DISK_RENAMES = (('.source', ''),)
VF_RENAMES = (('.source.hostdev', '.address'), ('.source.pf', '.pf'), ('.source.vf', '.index'), ('.source', ''))
_CONFIG_PATH = re.compile(r'config\[(\d+)\]((?:\.[A-Za-z_]+)*)')
_DEVICE_OPTIONS = {'type': 'dict', 'options': device_argument_spec()}


def _check_devices(config, origins, name):
    """Refuse what virtdev.libvirt.domain_devices would refuse, before any task writes: its argument types,
    then the kind table's rules (``declare``), each error naming the user's field the device came from."""
    def user_path(match):
        origin, renames = origins[int(match.group(1))]
        rest = match.group(2)
        for old, new in renames:
            if rest == old or rest.startswith(old + '.'):
                return origin + new + rest[len(old):]
        return origin + rest

    errors = []
    typed = [_check_value(device, _DEVICE_OPTIONS, 'config[%d]' % index, errors, unknown_ok=True)
             for index, device in enumerate(config)]
    try:
        if errors:
            raise SpecError(errors[0].split(': ', 1)[0], errors[0].split(': ', 1)[1])
        if _xml.HAS_LXML:
            _device_engine.declare(typed, name)
        else:  # a controller without lxml: the kind table's option rules (raw XML is left to the module)
            for index, device in enumerate(typed):
                if device.get('kind') in KINDS:
                    KINDS[device['kind']].normalize(device, 'config[%d]' % index)
    except SpecError as exc:
        raise AnsibleFilterError(_CONFIG_PATH.sub(user_path, str(exc)))


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
    # each device with the user's field it comes from, to name that field when the kind table refuses it
    config, origins = [], []

    def add(devices, field, renames=()):
        for index, device in enumerate(devices):
            config.append(device)
            origins.append((field(index) if callable(field) else field, renames))

    def entry(key):
        return lambda index: '%s.%s[%d]' % (where, key, index)

    add([_nic(network, profile, entry('networks')(index)) for index, network in enumerate(networks)],
        entry('networks') if guest.get('networks') is not None
        else (lambda index: 'profiles.%s.networks[%d] (of %s)' % (profile['name'], index, where))
        if 'networks' in profile else (lambda index: 'guest_networks[%d] (of %s)' % (index, where)), NIC_RENAMES)
    add([_disk(disk, profile, entry('disks')(index), used) for index, disk in enumerate(guest.get('disks') or [])],
        entry('disks'), DISK_RENAMES)
    add([_cdrom(path, entry('cdroms')(index), used) for index, path in enumerate(guest.get('cdroms') or [])],
        entry('cdroms'), (('.source.file', ''), ('.source', '')))
    add([_hostdev(device, entry('host_devices')(index)) for index, device in enumerate(guest.get('host_devices') or [])],
        entry('host_devices'))
    add(_gpus(guest, profile, host_pci, where), where + '.gpu')
    vfs = [_vf(vf, entry('vfs')(index), host_vfs, host_pci) for index, vf in enumerate(guest.get('vfs') or [])]
    add([nic for nic, _need in vfs], entry('vfs'), VF_RENAMES)
    mdevs = [_mdev(mdev, entry('mdevs')(index)) for index, mdev in enumerate(guest.get('mdevs') or [])]
    add([device for device, _host in mdevs], entry('mdevs'))
    kept = [index for index, device in enumerate(profile['devices']) if not _excluded(device, exclude)]
    add([_strip_id(profile['devices'][index]) for index in kept],
        lambda number: '%s (of %s)' % (profile['device_origins'][kept[number]], where))
    add(_devices_with_ids(guest.get('devices') or [], where + '.devices'), entry('devices'))
    add(_devices_with_ids(guest.get('extra_devices') or [], where + '.extra_devices'), entry('extra_devices'))

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
    _check_devices(config, origins, guest['name'])
    needs = [need for _nic, need in vfs if need]
    # for state=rendered (check mode, a guest to be created), which does not read the host: a VF by PF and index
    # as the address the host gives it; a VF this run creates first has none yet and is left out
    rendered, pending, mapped = [], [], []
    for device in config:
        source = device.get('source') or {}
        if device.get('mapping') or source.get('mapping'):   # chosen on the host, which rendered does not read
            mapped.append(device.get('mapping') or source.get('mapping'))
            continue
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
        'passthrough': any(device.get('kind') == 'hostdev'
                           or {'hostdev', 'pf', 'mapping'} & set(device.get('source') or {})
                           or (device.get('kind') == 'xml' and "type='hostdev'" in device.get('xml', ''))
                           for device in config),
        'rendered_config': rendered,
        'vfs_not_there': pending,
        'mappings_unresolved': mapped,
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


def builtin_profiles():
    """The guest role's built-in profiles (its vars/main.yml, the one place they are written)."""
    with open(BUILTIN_PROFILES, encoding='utf-8') as handle:
        return yaml.safe_load(handle)['__guest_builtin_profiles']


def guest_plan(guests, profiles=None, defaults=None, host_pci=None, host_vfs=None):
    if not isinstance(guests, list):
        raise AnsibleFilterError('guests: must be a list of guest dictionaries (got %r)' % (guests,))
    if not isinstance(profiles if profiles is not None else {}, dict):
        raise AnsibleFilterError('profiles: must be a dictionary of profiles by name (got %r)' % (profiles,))
    merged = builtin_profiles()
    merged.update(profiles or {})
    profiles = merged
    host_vfs = _pf_addresses(host_vfs)
    plans = [plan_guest(guest, profiles, defaults or {}, host_pci or [], host_vfs, 'guests[%d]' % index)
             for index, guest in enumerate(guests)]
    duplicates = _duplicate_names(guests)
    if duplicates:
        raise AnsibleFilterError('; '.join(duplicates))
    return plans


def _duplicate_names(guests):
    """One message per name given to more than one entry, naming every entry (``guests[0] and guests[3]``)."""
    indices = {}
    for index, guest in enumerate(guests):
        if isinstance(guest, dict) and isinstance(guest.get('name'), str) and guest['name']:
            indices.setdefault(guest['name'], []).append('guests[%d]' % index)
    return ['%s: name %r listed %s' % (' and '.join(where), name, 'twice' if len(where) == 2 else '%d times' % len(where))
            for name, where in indices.items() if len(where) > 1]


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


def _check_value(value, spec, where, errors, unknown_ok=False):
    """``value`` converted as ansible converts it for ``spec`` (the errors appended to ``errors``)."""
    kind = spec.get('type', 'str')
    try:
        converted = _CHECKERS[kind](value) if kind != 'str' else validation.check_type_str(value, allow_conversion=True)
    except (TypeError, ValueError):
        errors.append('%s: %r (%s) is not a valid %s' % (where, value, _type_name(value), kind))
        return value
    if spec.get('choices') and converted not in spec['choices']:
        errors.append('%s: %r is not one of %s' % (where, value, ', '.join(str(item) for item in spec['choices'])))
    if kind == 'list' and spec.get('elements'):
        element = dict(spec, type=spec['elements'])
        element.pop('choices', None)
        converted = [_check_value(item, element, '%s[%d]' % (where, index), errors, unknown_ok)
                     for index, item in enumerate(converted)]
    elif kind == 'dict' and spec.get('options') and isinstance(converted, dict):
        converted = _check_options(converted, spec['options'], where, errors, unknown_ok)
    return converted


def _check_options(values, options, where, errors, unknown_ok=False):
    # unknown_ok: the caller's next check names unknown keys better (the kind table names the device's kind)
    converted = dict(values)
    for key in [] if unknown_ok else sorted(set(values) - set(options), key=str):
        errors.append('%s.%s: %s' % (where, key, _unknown_option(key, values[key], sorted(options))))
    for key, spec in options.items():
        if values.get(key) is None:
            if spec.get('required'):
                errors.append('%s.%s: is required' % (where, key))
            continue
        converted[key] = _check_value(values[key], dict(spec), '%s.%s' % (where, key), errors, unknown_ok)
    return converted


def guest_input_errors(guests, options=None):
    """The type errors of ``guests`` against the role's argument spec of a guest (``options``, by default the
    role's own), each naming ``guests[i] (name).field[j].key`` and the value - what ansible-core's argument
    validation says without the list index (``found in 'guests -> vfs'``)."""
    if options is None:
        with open(ROLE_ARGUMENT_SPECS, encoding='utf-8') as handle:
            options = yaml.safe_load(handle)['argument_specs']['main']['options']['guests']['options']
    if not isinstance(guests, list):
        return ['guests: %r (%s) is not a valid list' % (guests, _type_name(guests))]
    errors = []
    for index, guest in enumerate(guests):
        if not isinstance(guest, dict):
            errors.append('guests[%d]: %r (%s) is not a valid dict' % (index, guest, _type_name(guest)))
            continue
        where = 'guests[%d] (%s)' % (index, guest.get('name')) if guest.get('name') else 'guests[%d]' % index
        _check_options(guest, options, where, errors)
        # disks and networks are dictionaries without suboptions in the spec: their keys are the planner's
        for key, known in (('networks', NIC_KEYS), ('disks', DISK_KEYS)):
            for number, item in enumerate(guest.get(key) or [] if isinstance(guest.get(key), list) else []):
                if isinstance(item, dict):
                    _check_options(item, {name: {'type': 'raw'} for name in known}, '%s.%s[%d]' % (where, key, number),
                                   errors)
    return errors + _duplicate_names(guests)


class FilterModule:
    def filters(self):
        return {'guest_plan': guest_plan}
