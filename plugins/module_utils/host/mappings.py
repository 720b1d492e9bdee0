# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Device mappings: named logical devices a guest asks for by name, resolved on each host (docs/device_mappings.md).

Pure functions over the host model (``model.Host``) and domain usage (``domain_usage``); nothing is read or
written here. Three steps:

- ``parse_mappings`` / ``parse_permitted``: the options as data, validated; errors name
  ``mappings[i].field`` and the value.
- ``inventory(host, mapping, usage)``: the mapping's candidates on this host, each with the functions it
  brings, who holds it and what no longer matches the declared ids (a replaced or moved card).
- ``resolve(host, mappings, usage, asks)``: which concrete devices each ask gets. A device the guest already
  holds from the mapping is kept; otherwise the first free candidate in the mapping's order is taken, asks in
  the order given, so the same manifest resolves the same way on every run. Free: held by no other guest
  (persistent or live definition), not taken by an earlier ask of this run, and passing the passthrough
  guards of ``guards`` whose assignment effect is an error (host-critical, a group that is not clean...).
- ``permitted_check``: a request outside the permitted set, named with the rules it was checked against.
"""

from __future__ import annotations

import re

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import domain_usage, guards

IDS_RE = re.compile(r'^(?:0[xX])?([0-9a-fA-F]{4}):(?:0[xX])?([0-9a-fA-F]{4})$')
CLASS_RE = re.compile(r'^(?:0[xX])?([0-9a-fA-F]{2}|[0-9a-fA-F]{4}|[0-9a-fA-F]{6})$')
DRIVER_RE = re.compile(r'^[A-Za-z0-9_.-]{1,64}$')
# an mdev type id as the parent lists it under mdev_supported_types (nvidia-63, i915-GVTg_V5_4)
MDEV_TYPE_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,99}$')

TYPES = ('pci', 'usb', 'mdev')
MAPPING_KEYS = ('name', 'type', 'count', 'multifunction', 'candidates', 'description')
# the keys of one candidate per mapping type; with ``address`` a PCI candidate is exact and its ids, subsystem
# and iommu_group are what the device must still have; without it they select devices
CANDIDATE_KEYS = {
    'pci': ('address', 'ids', 'subsystem', 'iommu_group', 'class', 'driver', 'pf'),
    'usb': ('ids', 'serial'),
    # the keys but mdev_type select (or, with address, name) the parent device; mdev_type names the type
    'mdev': ('address', 'ids', 'subsystem', 'class', 'driver', 'mdev_type'),
}
SELECTOR_ONLY = ('class', 'driver', 'pf')
MAX_COUNT = 64


class MappingError(ValueError):
    """A mapping or permitted entry that is not valid; ``str()`` names the field and the value."""

    def __init__(self, where, message):
        super().__init__('%s: %s' % (where, message))
        self.where = where


class Mapping:
    def __init__(self, name, kind, count, multifunction, candidates, where, description=None):
        self.name = name
        self.description = description  # free text, shown in reports
        self.type = kind
        self.count = count
        self.multifunction = multifunction
        self.candidates = candidates  # list of dicts (normalized), each with 'where'
        self.where = where


# -- validation -----------------------------------------------------------------------------------------------

def _ids_pair(value, where):
    """'10de:20b0' (or 0x-prefixed halves) -> ('0x10de', '0x20b0')."""
    match = IDS_RE.match(str(value).strip()) if isinstance(value, str) else None
    if match is None:
        raise MappingError(where, '%r is not vendor:device ids, 4 hex digits each (e.g. 10de:20b0)' % (value,))
    return tuple('0x%s' % part.lower() for part in match.groups())


def _candidate(raw, kind, where):
    if isinstance(raw, str) and kind == 'pci':
        raw = {'address': raw}
    if not isinstance(raw, dict):
        raise MappingError(where, '%r is not a candidate (a dictionary with %s)' % (raw, ', '.join(CANDIDATE_KEYS[kind])))
    given = {key: value for key, value in raw.items() if value is not None}
    unknown = sorted(key for key in given if key not in CANDIDATE_KEYS[kind])
    if unknown:
        raise MappingError(where, 'key(s) %s do not belong to a %s candidate (allowed: %s)'
                           % (', '.join(unknown), kind, ', '.join(CANDIDATE_KEYS[kind])))
    if not given:
        raise MappingError(where, 'an empty candidate matches nothing: give %s' % ' or '.join(CANDIDATE_KEYS[kind]))
    result = {'where': where}
    for key in ('address', 'pf'):
        if key in given:
            try:
                result[key] = _ids.pci_text(given[key], '%s.%s' % (where, key))
            except ValueError as exc:
                raise MappingError('%s.%s' % (where, key), '%r is not a PCI address DDDD:BB:SS.F (%s)'
                                   % (given[key], getattr(exc, 'reason', exc))) from None
    for key in ('ids', 'subsystem'):
        if key in given:
            result[key] = _ids_pair(given[key], '%s.%s' % (where, key))
    if 'iommu_group' in given:
        value = given['iommu_group']
        if isinstance(value, bool) or not str(value).isdigit():
            raise MappingError(where + '.iommu_group', '%r is not an IOMMU group number' % (value,))
        if 'address' not in result:
            raise MappingError(where + '.iommu_group', 'is checked against an exact address: give address too')
        result['iommu_group'] = int(str(value))
    if 'class' in given:
        match = CLASS_RE.match(str(given['class']).strip())
        if match is None:
            raise MappingError(where + '.class', '%r is not a PCI class code prefix (2, 4 or 6 hex digits, e.g. 0302)'
                               % (given['class'],))
        result['class'] = match.group(1).lower()
    if 'driver' in given:
        if not DRIVER_RE.match(str(given['driver'])):
            raise MappingError(where + '.driver', '%r is not a driver name' % (given['driver'],))
        result['driver'] = str(given['driver'])
    if 'serial' in given:
        result['serial'] = str(given['serial'])
    if kind == 'usb' and 'ids' not in result:
        raise MappingError(where, 'a usb candidate needs ids (vendor:product)')
    if kind == 'mdev':
        mdev_type = given.get('mdev_type')
        if mdev_type is None:
            raise MappingError(where, 'an mdev candidate needs mdev_type (the type id, e.g. nvidia-63)')
        if not isinstance(mdev_type, str) or not MDEV_TYPE_RE.match(mdev_type):
            raise MappingError(where + '.mdev_type', '%r is not an mdev type id (as listed under the parent\'s '
                               'mdev_supported_types, e.g. nvidia-63 or i915-GVTg_V5_4)' % (mdev_type,))
        if len(given) == 1:
            raise MappingError(where, 'an mdev candidate needs its parent too: address, ids, class or driver')
        result['mdev_type'] = mdev_type
    if 'address' in result:
        mixed = sorted(key for key in SELECTOR_ONLY if key in result)
        if mixed:
            raise MappingError(where, 'an exact address does not go with the selector key(s) %s: an address '
                               'candidate names one device, a selector (without address) matches devices'
                               % ', '.join(mixed))
    return result


def parse_mappings(raw, where='mappings'):
    """The ``mappings`` option as {name: Mapping}; MappingError names the field and the value."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise MappingError(where, 'must be a list of mappings')
    result = {}
    for index, entry in enumerate(raw):
        here = '%s[%d]' % (where, index)
        if not isinstance(entry, dict):
            raise MappingError(here, '%r is not a mapping (a dictionary with name and candidates)' % (entry,))
        unknown = sorted(key for key, value in entry.items() if key not in MAPPING_KEYS and value is not None)
        if unknown:
            raise MappingError(here, 'key(s) %s do not belong to a mapping (allowed: %s)'
                               % (', '.join(unknown), ', '.join(MAPPING_KEYS)))
        name = entry.get('name')
        if not isinstance(name, str) or not _ids.MAPPING_NAME_RE.match(name):
            raise MappingError(here + '.name', '%r is not %s' % (name, _ids.MAPPING_NAME_HINT))
        if name in result:
            raise MappingError(here + '.name', '%r is the name of %s too' % (name, result[name].where))
        kind = entry.get('type') or 'pci'
        if kind not in TYPES:
            raise MappingError(here + '.type', '%r is not one of %s' % (kind, ', '.join(TYPES)))
        count = entry.get('count', 1)
        count = 1 if count is None else count
        if isinstance(count, bool) or not str(count).isdigit() or not 1 <= int(str(count)) <= MAX_COUNT:
            raise MappingError(here + '.count', '%r is not a number of devices (1..%d)' % (count, MAX_COUNT))
        count = int(str(count))
        multifunction = entry.get('multifunction') or False
        if not isinstance(multifunction, bool):
            raise MappingError(here + '.multifunction', '%r is not true or false' % (multifunction,))
        if multifunction and kind != 'pci':
            raise MappingError(here + '.multifunction', 'applies to pci mappings only (type is %s)' % kind)
        candidates = entry.get('candidates')
        if not isinstance(candidates, list) or not candidates:
            raise MappingError(here + '.candidates', '%r: a mapping needs a non-empty list of candidates'
                               % (candidates,))
        parsed = [_candidate(item, kind, '%s.candidates[%d]' % (here, position))
                  for position, item in enumerate(candidates)]
        exact = [item for item in parsed if 'address' in item]
        # an mdev candidate's address is a parent, which may hold several instances
        if kind != 'mdev' and len(exact) == len(parsed) and count > len(exact):
            raise MappingError(here + '.count', '%d is more than the %d candidate address(es) of mapping %s'
                               % (count, len(exact), name))
        result[name] = Mapping(name, kind, count, multifunction, parsed, here, entry.get('description'))
    return result


def parse_permitted(raw, mappings, where='permitted'):
    """The ``permitted`` option: a list of mapping names and selectors (candidate dictionaries, with
    ``type: usb`` for USB). Returns the rules as (where, mapping name or None, Mapping-like candidate list)."""
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise MappingError(where, 'must be a list of mapping names and selectors')
    rules = []
    for index, entry in enumerate(raw):
        here = '%s[%d]' % (where, index)
        if isinstance(entry, str):
            if entry not in mappings:
                raise MappingError(here, '%r is not the name of a mapping (%s)'
                                   % (entry, ', '.join(sorted(mappings)) or 'no mappings are given'))
            rules.append({'where': here, 'mapping': entry})
            continue
        if not isinstance(entry, dict):
            raise MappingError(here, '%r is not a mapping name or a selector dictionary' % (entry,))
        kind = entry.get('type') or 'pci'
        if kind not in TYPES:
            raise MappingError(here + '.type', '%r is not one of %s' % (kind, ', '.join(TYPES)))
        rules.append({'where': here, 'type': kind,
                      'candidate': _candidate({k: v for k, v in entry.items() if k != 'type'}, kind, here)})
    return rules


# -- candidates on a host -------------------------------------------------------------------------------------

def _class_matches(dev, prefix):
    code = (dev.class_code or '').lower()
    code = code[2:] if code.startswith('0x') else code
    return code.startswith(prefix)


def _pci_selected(dev, candidate):
    """Whether PCI device ``dev`` matches a selector candidate (every key given)."""
    if 'ids' in candidate and (dev.vendor, dev.device) != candidate['ids']:
        return False
    if 'subsystem' in candidate and (dev.subsystem_vendor, dev.subsystem_device) != candidate['subsystem']:
        return False
    if 'class' in candidate and not _class_matches(dev, candidate['class']):
        return False
    if 'driver' in candidate and dev.driver != candidate['driver']:
        return False
    if 'pf' in candidate and dev.physfn != candidate['pf']:
        return False
    return True


def _mismatch(host, dev, candidate):
    """What no longer matches an exact candidate: ['vendor:device is 10de:1db4 on this host, the mapping says ...']."""
    if dev is None:
        return ['there is no PCI device %s on this host (not %s)' % (candidate['address'], host.pci_listing)]
    found = []
    for key, attributes, label in (('ids', ('vendor', 'device'), 'vendor:device'),
                                   ('subsystem', ('subsystem_vendor', 'subsystem_device'), 'subsystem vendor:device')):
        if key not in candidate:
            continue
        unknown = [attribute for attribute in attributes if getattr(dev, attribute) is None
                   and attribute in host.unavailable_ids]
        if unknown:
            found.append('its %s cannot be compared with %s: %s'
                         % (label, _show_ids(candidate[key]), host.unavailable_ids[unknown[0]]))
            continue
        actual = tuple(getattr(dev, attribute) for attribute in attributes)
        if actual != candidate[key]:
            found.append('%s is %s on this host, the mapping says %s (the card was replaced or moved)'
                         % (label, _show_ids(actual), _show_ids(candidate[key])))
    if 'iommu_group' in candidate and dev.iommu_group != candidate['iommu_group']:
        found.append('IOMMU group is %s on this host, the mapping says %d'
                     % ('none' if dev.iommu_group is None else dev.iommu_group, candidate['iommu_group']))
    return found


def _show_ids(pair):
    return ':'.join((part or '?')[2:] if (part or '').startswith('0x') else (part or '?') for part in pair)


def _functions(host, address, multifunction):
    """The PCI functions a candidate brings: itself, and with ``multifunction`` every other endpoint function
    of its slot (a GPU's audio function); VFs never count as functions of a slot."""
    dev = host.pci.get(address)
    if not multifunction or dev is None:
        return [address]
    return sorted(other.address for other in host.pci.values()
                  if other.slot == dev.slot and other.endpoint and not other.physfn) or [address]


def _usb_key(usb):
    return 'usb %s (bus %s device %s)' % (usb.name, usb.bus, usb.device)


def inventory(host, mapping):
    """The candidates of ``mapping`` on ``host``, in the mapping's order (a selector's matches by address),
    each once: dicts with ``device`` (the key: a PCI address, or 'usb NAME'), ``functions`` (PCI),
    ``usb`` (the UsbDevice), ``where`` (the candidate entry) and ``mismatch`` (what changed)."""
    found, seen = [], set()
    for candidate in mapping.candidates:
        if mapping.type == 'mdev':
            for mdev in mdev_instances(host, candidate):
                if mdev.uuid not in seen:
                    seen.add(mdev.uuid)
                    found.append({'device': _mdev_key(mdev), 'mdev': mdev, 'usb': None, 'functions': [],
                                  'where': candidate['where'], 'mismatch': _parent_mismatch(host, candidate)})
            continue
        if mapping.type == 'usb':
            matches = sorted((usb for usb in host.usb.values()
                              if (usb.vendor, usb.product) == candidate['ids'] and not usb.hub
                              and ('serial' not in candidate or usb.serial == candidate['serial'])),
                             key=lambda usb: usb.name)
            for usb in matches:
                if usb.name not in seen:
                    seen.add(usb.name)
                    found.append({'device': _usb_key(usb), 'usb': usb, 'functions': [], 'where': candidate['where'],
                                  'mismatch': []})
            continue
        if 'address' in candidate:
            addresses = [candidate['address']]
        else:
            addresses = sorted(dev.address for dev in host.pci.values() if dev.endpoint and _pci_selected(dev, candidate))
        for address in addresses:
            functions = _functions(host, address, mapping.multifunction)
            if address in seen or (mapping.multifunction and functions[0] != address and functions[0] in seen):
                continue
            if mapping.multifunction and 'address' not in candidate:
                address = functions[0]  # a selector matching a slot's other function takes the slot
            seen.add(address)
            mismatch = _mismatch(host, host.pci.get(address), candidate) if 'address' in candidate else []
            found.append({'device': address, 'functions': functions, 'usb': None, 'where': candidate['where'],
                          'mismatch': mismatch})
    return found


# -- mediated devices: instances of a type on the parents a candidate selects ---------------------------------

def _mdev_key(mdev):
    return 'mdev %s' % mdev.uuid


def mdev_parents(host, candidate):
    """The parent PCI addresses an mdev candidate names or selects, in address order."""
    if 'address' in candidate:
        return [candidate['address']] if candidate['address'] in host.pci else []
    return sorted(dev.address for dev in host.pci.values() if _pci_selected(dev, candidate))


def _parent_mismatch(host, candidate):
    """What no longer matches an exact parent (its ids), as for an exact PCI candidate."""
    return _mismatch(host, host.pci.get(candidate['address']), candidate) if 'address' in candidate else []


def mdev_instances(host, candidate):
    """The existing mdevs of the candidate's type on its parents, by parent address then UUID: the order the
    lowest free one is taken in, the same on every run and for every guest of a manifest."""
    parents = set(mdev_parents(host, candidate))
    return sorted((mdev for mdev in host.mdevs.values()
                   if mdev.parent in parents and mdev.type_id == candidate['mdev_type']),
                  key=lambda mdev: (mdev.parent, mdev.uuid))


def mdev_type_of(host, mdev):
    """The parent's MdevType of an instance (device_api, available_instances), or None."""
    parent = host.pci.get(mdev.parent)
    for mdev_type in (parent.mdev_types if parent is not None else ()):
        if mdev_type.type_id == mdev.type_id:
            return mdev_type
    return None


def _mdev_shortage(host, mapping, inventory_rows, refused):
    """Why an mdev mapping has no free instance: how many of its types exist and are taken, and how more are made
    (the parents' available_instances, the mdev module)."""
    parts = []
    for candidate in mapping.candidates:
        parents = mdev_parents(host, candidate)
        if not parents:
            mismatch = _parent_mismatch(host, candidate)
            parts.append('%s: no parent device on this host (%s)' % (
                candidate['where'], '; '.join(mismatch) if mismatch else describe_candidate(candidate)))
            continue
        instances = [row for row in inventory_rows if row['where'] == candidate['where']]
        capacity = []
        for address in parents:
            types = [item for item in host.pci[address].mdev_types if item.type_id == candidate['mdev_type']]
            capacity.append('%s: %s' % (address, 'available_instances %s' % types[0].available_instances
                                        if types else 'does not offer the type'))
        parts.append('%d mdev(s) of type %s exist on %s, %d not free; create more with virtdev.libvirt.mdev (%s)'
                     % (len(instances), candidate['mdev_type'], ', '.join(parents),
                        sum(1 for row in instances if row['device'] in refused), '; '.join(capacity)))
    return ' | '.join(parts)


def usb_request(host, usb):
    """The request a USB candidate becomes: vendor:product alone when no other plugged device has them (stable
    across replugging), else with bus and device too."""
    alike = [other for other in host.usb.values() if (other.vendor, other.product) == (usb.vendor, usb.product)]
    request = {'type': 'usb', 'vendor': usb.vendor, 'product': usb.product, 'bus': None, 'device': None}
    if len(alike) > 1:
        request.update(bus=usb.bus, device=usb.device)
    return request


def _keys(host, entry):
    """The usage keys of a candidate (``domain_usage``): its PCI functions, or the USB device's ids/address."""
    if entry.get('mdev') is not None:
        return [('mdev', entry['mdev'].uuid)]
    if entry['usb'] is None:
        return [('pci', address) for address in entry['functions']]
    usb = entry['usb']
    keys = []
    if usb.bus is not None and usb.device is not None:
        keys.append(('usb-address', '%d.%d' % (usb.bus, usb.device)))
    if usb_request(host, usb)['bus'] is None:
        keys.append(('usb', '%s:%s' % (usb.vendor, usb.product)))
    return keys


def holders(host, entry, usage, exclude=None):
    """[{'domain', 'live', 'config'}] of the guests (other than ``exclude``) whose definitions hold the candidate."""
    found = {}
    for key in _keys(host, entry):
        for use in domain_usage.used_by(usage, key, exclude=exclude):
            row = found.setdefault(use['domain'], {'domain': use['domain'], 'live': False, 'config': False})
            row['live'] = row['live'] or bool(use['live'])
            row['config'] = row['config'] or bool(use.get('config'))
    return [found[name] for name in sorted(found)]


def not_free(host, entry, usage, guest, taken, managed=True, allowed=None):
    """Why a candidate cannot go to ``guest`` (a list of messages; empty when it is free). ``taken``: device key ->
    the ask of this run that got it (another guest's, or another entry of this guest's: one device is never
    given twice); ``managed``: whether libvirt binds it to vfio-pci (else a device on a host driver is not free);
    ``allowed``: the host's ``Permitted`` devices when O(permitted) is given (a device outside it is not free)."""
    reasons = list(entry['mismatch'])
    if allowed is not None and not allowed.admits(entry):
        reasons.append('outside the permitted devices [rule permitted: %s]' % allowed.rules_text)
    held = holders(host, entry, usage, exclude=guest)
    for key in _taken_keys(entry):
        taker = taken.get(key)
        if taker is None or taker.guest in [use['domain'] for use in held]:
            continue
        reasons.append('given to guest %s by this task' % taker.guest if taker.guest != guest else
                       'given to %s of this guest by this task' % taker.where)
        break
    for use in held:
        reasons.append('held by guest %s (%s)' % (use['domain'], 'running' if use['live'] else 'defined'))
    if reasons:
        return reasons
    # the passthrough guards whose failure refuses an assignment (those force may override count too: a mapping
    # takes only devices that pass them all)
    if entry.get('mdev') is not None:
        subjects = [guards.Subject(host, 'mdev', request={'type': 'mdev', 'uuid': entry['mdev'].uuid}, usage=usage,
                                   domain_name=guest)]
    elif entry['usb'] is not None:
        subjects = [guards.Subject(host, 'usb', request=usb_request(host, entry['usb']), usage=usage,
                                   domain_name=guest)]
    else:
        subjects = [guards.Subject(host, 'pci', request={'type': 'pci', 'address': address, 'managed': managed},
                                   together=entry['functions'], usage=usage, domain_name=guest)
                    for address in entry['functions']]
    for subject in subjects:
        for finding in guards.findings(subject):
            effect = guards.GUARDS[finding.guard].assignment
            if effect == guards.ERROR or (effect == guards.UNMANAGED_ERROR and not managed):
                text = '%s [guard %s]' % (finding.message, finding.guard)
                if len(subjects) > 1:
                    text = '%s: %s' % (subject.address, text)
                if text not in reasons:
                    reasons.append(text)
    return reasons


def _taken_keys(entry):
    """What taking a candidate takes: the device and each of its PCI functions (another mapping may name one)."""
    return [entry['device']] + [address for address in entry['functions'] if address != entry['device']]


def _take(taken, entry, ask):
    for key in _taken_keys(entry):
        taken[key] = ask


def _held_by(host, entry, usage, guest):
    return any(use['domain'] == guest for key in _keys(host, entry) for use in usage.get(key, ())
               if isinstance(use, dict))


class Ask:
    """One device entry asking for a mapping: the guest, where it is (``domains[0].config[1]``), the name."""

    def __init__(self, guest, where, mapping, managed=True):
        self.guest = guest
        self.where = where
        self.mapping = mapping
        self.managed = managed  # libvirt binds the device to vfio-pci (hostdev default; an interface's managed)
        self.devices = []   # the chosen inventory entries
        self.kept = []      # of them, those the guest held already
        self.error = None


def resolve(host, mappings, usage, asks, keep_only=False, permitted=None):
    """Give each ask its devices (``ask.devices``), or say why not (``ask.error``). ``keep_only`` (state deleted):
    only devices the guest holds are taken. Two passes so a guest keeps what it holds whatever the order.
    ``permitted`` (parsed rules): a free device outside them is never chosen (one the guest holds is kept, and
    refused by the permitted check that follows, which names it)."""
    allowed = Permitted(host, mappings, permitted) if permitted is not None else None
    inventories = {name: inventory(host, mappings[name]) for name in {ask.mapping for ask in asks}}
    taken = {}
    for ask in asks:
        mapping = mappings[ask.mapping]
        for entry in inventories[ask.mapping]:
            if len(ask.devices) == mapping.count:
                break
            if not any(key in taken for key in _taken_keys(entry)) and _held_by(host, entry, usage, ask.guest):
                if entry['mismatch']:
                    ask.error = ('guest %s holds %s from mapping %s, which no longer matches it: %s'
                                 % (ask.guest, entry['device'], ask.mapping, '; '.join(entry['mismatch'])))
                    break
                _take(taken, entry, ask)
                ask.devices.append(entry)
                ask.kept.append(entry['device'])
    if keep_only:
        return asks
    for ask in asks:
        mapping = mappings[ask.mapping]
        if ask.error is not None or len(ask.devices) == mapping.count:
            continue
        if mapping.type != 'mdev' and inventories[ask.mapping] and len(inventories[ask.mapping]) < mapping.count:
            ask.error = ('%s.count: %d is more than the %d device(s) of this host that mapping %s has (%s)'
                         % (mapping.where, mapping.count, len(inventories[ask.mapping]), ask.mapping,
                            ', '.join(entry['device'] for entry in inventories[ask.mapping]) or 'none'))
            continue
        refused = []
        for entry in inventories[ask.mapping]:
            if len(ask.devices) == mapping.count:
                break
            if entry in ask.devices:
                continue
            reasons = not_free(host, entry, usage, ask.guest, taken, ask.managed, allowed)
            if reasons:
                refused.append('%s: %s' % (entry['device'], '; '.join(reasons)))
                continue
            _take(taken, entry, ask)
            ask.devices.append(entry)
        if len(ask.devices) < mapping.count:
            if mapping.type == 'mdev':
                why = _mdev_shortage(host, mapping, inventories[ask.mapping],
                                     {text.split(': ', 1)[0] for text in refused})
                if refused:
                    why = '%s; not free: %s' % (why, ' | '.join(refused))
            elif not inventories[ask.mapping]:
                why = 'no device of this host matches %s.candidates (%s)' % (mapping.where, describe_candidates(mapping))
            else:
                why = 'not free: %s' % ' | '.join(refused)
            ask.error = ('mapping %s has %s for guest %s (it asks for %d, %d found): %s'
                         % (ask.mapping, 'no free device' if not ask.devices else 'not enough free devices', ask.guest,
                            mapping.count, len(ask.devices), why))
    return asks


def describe_candidate(candidate):
    return ', '.join('%s %s' % (key, _show_ids(value) if key in ('ids', 'subsystem') else value)
                     for key, value in candidate.items() if key != 'where')


def describe_candidates(mapping):
    return '; '.join(describe_candidate(candidate) for candidate in mapping.candidates)


# -- what a host shows about its mappings ---------------------------------------------------------------------

def report(host, mappings, usage, permitted=None):
    """Per mapping: its candidates on this host (device, functions, ids, holders, free or why not, mismatch),
    the free count and the mismatches, as data for host_devices_info and the report. With ``permitted``
    (parsed rules) a device outside them is not free."""
    allowed = Permitted(host, mappings, permitted) if permitted is not None else None
    rows = []
    for name in mappings:
        mapping = mappings[name]
        candidates = []
        for entry in inventory(host, mapping):
            reasons = not_free(host, entry, usage, None, {}, allowed=allowed)
            mdev = entry.get('mdev')
            dev = host.pci.get(mdev.parent if mdev is not None else entry['device']) if entry['usb'] is None else None
            usb = entry['usb']
            ids = _show_ids((dev.vendor, dev.device)) if dev is not None else (
                _show_ids((usb.vendor, usb.product)) if usb is not None else None)
            row = {'device': entry['device'], 'functions': entry['functions'], 'ids': ids,
                   'candidate': entry['where'], 'held_by': holders(host, entry, usage),
                   'free': not reasons, 'not_free': reasons, 'mismatch': entry['mismatch']}
            if mdev is not None:   # ids are the parent's
                row.update(uuid=mdev.uuid, parent=mdev.parent, mdev_type=mdev.type_id)
            candidates.append(row)
        rows.append({'name': name, 'description': mapping.description, 'type': mapping.type, 'count': mapping.count,
                     'multifunction': mapping.multifunction, 'candidates': candidates,
                     'free': sum(1 for row in candidates if row['free']),
                     'mismatches': ['%s: %s' % (row['device'], text) for row in candidates for text in row['mismatch']]})
        if mapping.type == 'mdev':
            # an mdev mapping without instances still says where more can be created
            rows[-1]['parents'] = [{'address': address, 'mdev_type': candidate['mdev_type'],
                                    'available_instances': next((item.available_instances
                                                                 for item in host.pci[address].mdev_types
                                                                 if item.type_id == candidate['mdev_type']), None)}
                                   for candidate in mapping.candidates for address in mdev_parents(host, candidate)]
    return rows


# -- permitted devices ---------------------------------------------------------------------------------------

def permitted_check(host, mappings, rules, requests):
    """The requests (``_ids.host_device_requests`` dicts) outside the permitted set, as messages naming the device
    and the rules. A PCI device is permitted by a mapping whose candidates bring it (all functions of a
    multifunction slot) or a selector matching it; a USB device by a USB mapping or selector matching it; a
    mediated device when its parent PCI device is permitted, or the mdev by an mdev mapping or selector."""
    allowed = Permitted(host, mappings, rules)
    outside = []
    for request in requests:
        device, admitted = _permitted_device(host, request, allowed)
        if not admitted:
            outside.append('%s (%s) is outside the permitted devices [rule permitted: %s]'
                           % (request.get('where'), device, allowed.rules_text))
    return outside


class Permitted:
    """The devices of ``host`` the permitted rules let guests have, asked per mapping candidate."""

    def __init__(self, host, mappings, rules):
        self.pci, self.usb = permitted_sets(host, mappings, rules)
        self.mdevs = permitted_mdevs(host, mappings, rules)
        self.rules_text = ', '.join(_rule_text(rule) for rule in rules) or 'empty'

    def admits(self, entry):
        """An inventory entry: every PCI function of it, its USB device, or its mdev (or the mdev's parent)."""
        if entry.get('mdev') is not None:
            return entry['mdev'].uuid in self.mdevs or entry['mdev'].parent in self.pci
        if entry['usb'] is not None:
            return entry['usb'].name in self.usb
        return set(entry['functions']) <= self.pci


def permitted_sets(host, mappings, rules):
    """(PCI addresses, USB device names) the rules permit on ``host``."""
    pci, usb = set(), set()
    for rule in rules:
        if rule.get('mapping'):
            for entry in inventory(host, mappings[rule['mapping']]):
                if not entry['mismatch']:
                    pci.update(entry['functions'])
                    if entry['usb'] is not None:
                        usb.add(entry['usb'].name)
            continue
        candidate = rule['candidate']
        if rule['type'] == 'mdev':
            continue   # permits mdevs, not their parents (permitted_mdevs)
        if rule['type'] == 'usb':
            usb.update(item.name for item in host.usb.values() if (item.vendor, item.product) == candidate['ids']
                       and ('serial' not in candidate or item.serial == candidate['serial']))
        elif 'address' in candidate:
            if not _mismatch(host, host.pci.get(candidate['address']), candidate):
                pci.add(candidate['address'])
        else:
            pci.update(dev.address for dev in host.pci.values() if _pci_selected(dev, candidate))
    return pci, usb


def permitted_mdevs(host, mappings, rules):
    """The UUIDs of the mdevs the rules permit on ``host`` by an mdev mapping or ``type: mdev`` selector."""
    found = set()
    for rule in rules:
        if rule.get('mapping'):
            found.update(entry['mdev'].uuid for entry in inventory(host, mappings[rule['mapping']])
                         if entry.get('mdev') is not None and not entry['mismatch'])
        elif rule['type'] == 'mdev' and not _parent_mismatch(host, rule['candidate']):
            found.update(mdev.uuid for mdev in mdev_instances(host, rule['candidate']))
    return found


def _permitted_device(host, request, allowed):
    """(how messages name the requested device, whether ``allowed`` (a ``Permitted``) admits it)."""
    kind = request.get('type')
    if kind in ('pci', 'sriov_vf'):
        return 'pci %s' % request['address'], request['address'] in allowed.pci
    if kind == 'mdev':
        mdev = host.mdevs.get(request.get('uuid'))
        parent = mdev.parent if mdev is not None else None
        return ('mdev %s on %s' % (request.get('uuid'), parent or 'an unknown parent'),
                parent in allowed.pci or request.get('uuid') in allowed.mdevs)
    matches = [item for item in host.usb.values()
               if (request.get('bus') is not None and (item.bus, item.device) == (request['bus'], request['device']))
               or (request.get('bus') is None and (item.vendor, item.product) == (request.get('vendor'),
                                                                                  request.get('product')))]
    label = 'usb %s' % (('%s:%s' % (request['vendor'], request['product'])) if request.get('vendor')
                        else 'bus %s device %s' % (request.get('bus'), request.get('device')))
    return label, bool(matches) and all(item.name in allowed.usb for item in matches)


def _rule_text(rule):
    if rule.get('mapping'):
        return 'mapping %s' % rule['mapping']
    candidate = rule['candidate']
    return '%s {%s}' % (rule['where'], ', '.join('%s: %s' % (key, _show_ids(value) if key in ('ids', 'subsystem')
                                                             else value)
                                                 for key, value in candidate.items() if key != 'where'))


# -- the options, shared by domain_devices and host_devices_info (plugins/doc_fragments/device_mappings.py) ----

def argument_spec():
    """``mappings`` and ``permitted`` as module options; their meaning is checked by ``parse_mappings`` /
    ``parse_permitted``, which name the field and the value."""
    candidate = {key: {'type': 'int' if key == 'iommu_group' else 'str'}
                 for key in ('address', 'ids', 'subsystem', 'iommu_group', 'class', 'driver', 'pf', 'serial',
                             'mdev_type')}
    return {
        'mappings': {'type': 'list', 'elements': 'dict', 'options': {
            'name': {'type': 'str', 'required': True},
            'description': {'type': 'str'},
            'type': {'type': 'str', 'default': 'pci', 'choices': list(TYPES)},
            'count': {'type': 'int', 'default': 1},
            'multifunction': {'type': 'bool', 'default': False},
            'candidates': {'type': 'list', 'elements': 'dict', 'required': True, 'options': candidate},
        }},
        'permitted': {'type': 'list', 'elements': 'raw'},
    }
