# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reconcile a domain's devices with a declared list (pure: XML text in, plan out).

The resource-module states (REFERENCE §2) are implemented here once for every kind; kinds only
contribute their table row. Matching is by identity key through a dictionary, so the cost grows
linearly with the number of devices.
"""

from __future__ import annotations

import copy

from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import (
    DEVICE_TAGS, KINDS, KINDS_BY_TAG, LIBVIRT_OWNED, NOT_DEVICES, derived_mac, element_class, element_key,
)

STATES = ('merged', 'replaced', 'overridden', 'deleted', 'gathered', 'rendered', 'parsed')
KIND_NAMES = tuple(sorted(KINDS)) + ('xml',)


class Declared:
    """One validated entry of ``config``: its kind, normalized spec or element, and identity key."""

    def __init__(self, where, kind, spec, element, key, mac_derived=False):
        self.where = where
        self.kind = kind            # a Kind, or None for raw xml of an element without a typed kind
        self.spec = spec            # normalized options (typed kinds) or None (xml)
        self.element = element      # the rendered or given element
        self.key = key
        self.mac_derived = mac_derived

    @property
    def tag(self):
        return self.element.tag

    @property
    def label(self):
        return '%s %s' % (self.tag, describe_key(self.key))


def describe_key(key):
    parts = [str(part) for part in key[1:]
             if part is not None and part not in ('attrs', 'xml') and not isinstance(part, tuple)]
    return ' '.join(parts) if parts else '(singleton)'


# --- validation ------------------------------------------------------------------------------------

def _raw_xml_device(text, where):
    try:
        element = _xml.parse(text, where)
    except _xml.XMLInputError as exc:
        raise SpecError(where, str(exc).replace(where + ' is ', '', 1))
    if element.tag not in DEVICE_TAGS:
        raise SpecError(where, '<%s> is not a libvirt device element (expected one of: %s)'
                        % (element.tag, ', '.join(sorted(DEVICE_TAGS))))
    return element


def declare(config, domain_name, where='config'):
    """Validate ``config`` (list of dicts) into ``Declared`` devices; raise SpecError on bad input."""
    if config is None:
        return []
    if not isinstance(config, list):
        raise SpecError(where, 'must be a list of devices')
    declared, seen, ordinals = [], {}, {}
    for index, raw in enumerate(config):
        here = '%s[%d]' % (where, index)
        if not isinstance(raw, dict):
            raise SpecError(here, '%r is not a device (a dictionary with a kind)' % (raw,))
        kind_name = raw.get('kind')
        if kind_name == 'xml':
            extra = sorted(k for k, v in raw.items() if v is not None and k not in ('kind', 'xml', 'class'))
            if extra:
                raise SpecError(here, 'option(s) %s do not belong to kind xml (its options: xml)' % ', '.join(extra))
            element = _raw_xml_device(raw.get('xml'), here + '.xml')
            item = Declared(here, None, None, element, element_key(element))
        elif kind_name in KINDS:
            kind = KINDS[kind_name]
            spec = kind.normalize(raw, here)
            mac_derived = False
            if kind.name == 'interface' and 'mac' not in spec:
                group = repr(sorted(spec['source'].items()))
                ordinals[group] = ordinals.get(group, 0) + 1
                spec['mac'] = derived_mac(domain_name, spec['source'], ordinals[group] - 1)
                mac_derived = True
            item = Declared(here, kind, spec, kind.render(spec), (kind.tag,) + kind.key(spec), mac_derived)
        else:
            raise SpecError(here + '.kind', '%r is not one of: %s' % (kind_name, ', '.join(KIND_NAMES)))
        if item.key in seen:
            raise SpecError(here, 'declares the same device as %s (%s)' % (seen[item.key], item.label))
        seen[item.key] = here
        declared.append(item)
    return declared


# --- reading a domain ------------------------------------------------------------------------------

def devices_of(domain):
    devices = domain.find('devices')
    if devices is None:
        devices = _xml.new_element('devices')
        domain.append(devices)
    return devices


def device_elements(devices):
    return [el for el in devices if isinstance(el.tag, str) and el.tag not in NOT_DEVICES]


def describe(element):
    """An element in the module's option format: typed when the kind describes it fully, else xml."""
    kind = KINDS_BY_TAG.get(element.tag)
    if kind is not None and kind.lossless(element):
        result = kind.parse(element)
    else:
        result = {'kind': 'xml', 'xml': _xml.to_string(element, pretty=False)}
    result['class'] = element_class(element)
    return result


def gather(domain_xml):
    domain = _xml.parse(domain_xml, 'domain XML')
    if domain.tag != 'domain':
        raise _xml.XMLInputError('domain XML has root <%s>, expected <domain>' % domain.tag)
    return [describe(el) for el in device_elements(devices_of(domain))]


# --- implicit devices (libvirt re-adds them; overridden must not fight it) --------------------------

def is_implicit(element):
    tag = element.tag
    if tag == 'controller':
        return element.get('index') == '0' and element.get('type') in ('pci', 'usb', 'sata', 'ide', 'virtio-serial')
    if tag == 'input':
        return element.get('bus') == 'ps2'
    return tag in ('memballoon', 'audio', 'graphics_default')


# --- planning --------------------------------------------------------------------------------------

class Plan:
    """What a state does to one domain: the new XML (or None), commands, before/after views."""

    def __init__(self):
        self.commands = []
        self.changed = False
        self.new_xml = None
        self.before = []
        self.after = []
        self.implicit = []
        self.before_text = ''
        self.after_text = ''
        self.touched = []  # Declared devices attached or updated, verified after the write
        self.removed = []  # keys of devices detached, verified after the write


def _command(op, item_or_element, key=None):
    tag = item_or_element.tag
    return {'op': op, 'kind': tag, 'key': describe_key(key), 'live': False, 'config': True}


def _fallback_match(item, candidates_by_tag, claimed):
    """An interface declared without MAC matches an unclaimed NIC on the same source."""
    if not item.mac_derived:
        return None
    for element in candidates_by_tag.get('interface', ()):
        if id(element) in claimed:
            continue
        if item.kind.fields['source'].read(element) == item.spec['source']:
            return element
    return None


def _updated_element(item, existing, reset):
    if item.kind is None:
        new = copy.deepcopy(item.element)
        for tag in LIBVIRT_OWNED:
            theirs, ours = existing.find(tag), new.find(tag)
            if ours is None and theirs is not None:
                new.append(copy.deepcopy(theirs))
            elif tag == 'address' and ours is not None and theirs is not None and not _xml.same(ours, theirs):
                raise SpecError(item.where, 'would move %s from address %s to %s; the guest must keep its '
                                'hardware layout (drop <address> from the XML, or delete and re-add the device)'
                                % (item.label, dict(theirs.attrib), dict(ours.attrib)))
        return new
    spec = dict(item.spec)
    if item.mac_derived:
        spec.pop('mac')  # a matched NIC keeps the MAC it has
    new = copy.deepcopy(existing)
    item.kind.apply(new, spec, reset=reset)
    return new


def plan(domain_xml, declared, state):
    """Compute the plan for merged / replaced / overridden / deleted on one domain's XML."""
    domain = _xml.parse(domain_xml, 'domain XML')
    devices = devices_of(domain)
    existing = device_elements(devices)
    result = Plan()
    result.before = [describe(el) for el in existing]
    result.before_text = _xml.to_string(devices)

    by_key, by_tag = {}, {}
    for element in existing:
        by_key.setdefault(element_key(element), []).append(element)
        by_tag.setdefault(element.tag, []).append(element)
    claimed = set()

    def match(item):
        for element in by_key.get(item.key, ()):
            if id(element) not in claimed:
                return element
        return _fallback_match(item, by_tag, claimed)

    for item in declared:
        found = match(item)
        if found is not None:
            claimed.add(id(found))
        if state == 'deleted':
            if found is not None:
                devices.remove(found)
                result.commands.append(_command('detach', found, item.key))
                result.removed.append(item.key)
            continue
        if found is None:
            devices.append(copy.deepcopy(item.element))
            result.commands.append(_command('attach', item, item.key))
            result.touched.append(item)
            continue
        new = _updated_element(item, found, reset=state in ('replaced', 'overridden'))
        if not _xml.same(new, found):
            devices.replace(found, new)
            result.commands.append(_command('update', item, item.key))
            result.touched.append(item)

    if state == 'overridden':
        scope = {item.tag for item in declared}
        for element in existing:
            if id(element) in claimed or element.tag not in scope:
                continue
            if is_implicit(element):
                result.implicit.append(describe(element))
                continue
            devices.remove(element)
            result.commands.append(_command('detach', element, element_key(element)))
            result.removed.append(element_key(element))

    result.changed = bool(result.commands)
    remaining = device_elements(devices)
    result.after = [describe(el) for el in remaining]
    result.after_text = _xml.to_string(devices)
    if result.changed:
        result.new_xml = _xml.to_string(domain)
    return result


def verify(result, readback_xml):
    """After a write: every attached or updated device is in libvirt's XML as asked. Returns problems."""
    domain = _xml.parse(readback_xml, 'domain XML')
    present = {}
    for element in device_elements(devices_of(domain)):
        present.setdefault(element_key(element), element)
    problems = []
    for item in result.touched:
        element = present.get(item.key)
        if element is None:
            problems.append('%s (%s) is missing from the definition libvirt kept' % (item.where, item.label))
            continue
        if item.kind is None:
            continue
        kept = item.kind.parse(element)
        for option, value in item.spec.items():
            if option == 'mac' and item.mac_derived and option in kept:
                continue
            if kept.get(option) != value:
                problems.append('%s (%s): libvirt kept %s=%r, asked %r'
                                % (item.where, item.label, option, kept.get(option), value))
    for key in result.removed:
        if key in present:
            problems.append('%s %s was removed but libvirt still has it' % (key[0], describe_key(key)))
    return problems


def render(declared):
    """The device XML that ``config`` produces (state rendered)."""
    return [_xml.to_string(item.element) for item in declared]
