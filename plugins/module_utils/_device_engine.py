# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reconcile a domain's devices with a declared list (pure: XML text in, plan out).

The resource-module states (docs/domain_devices.md, "States") are implemented here once for every kind; kinds only
contribute their table row. Matching is by identity key through a dictionary, so the cost grows
linearly with the number of devices.
"""

from __future__ import annotations

import copy

from ansible_collections.virtdev.libvirt.plugins.module_utils import _secrets, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import (
    DEVICE_TAGS, KINDS, LIBVIRT_OWNED, NOT_DEVICES, Reading, element_class, element_key, is_implicit, kind_of_element,
    pci_hotplug_limits, pci_hotplug_refusal, redact, remember_secrets, secrets_of, settle_secrets,
)

STATES = ('merged', 'replaced', 'overridden', 'deleted', 'gathered', 'rendered', 'parsed')
KIND_NAMES = tuple(sorted(KINDS)) + ('xml',)


class Declared:
    """One validated entry of ``config``: its kind, normalized spec or element, and identity key.

    A typed device's element is rendered from its spec when first asked (a device the guest already has as
    declared is never rendered); a plan takes it into the domain it plans instead of copying it, and
    ``forget_element`` drops it once the guest is planned (a parsed element costs about 15 times its text: a
    manifest of hundreds of guests would otherwise hold every declared device twice until written)."""

    def __init__(self, where, kind, spec, element, key, loose=(), derived=None):
        self.where = where
        self.kind = kind            # the Kind (a family member for hostdev), or None for raw xml
        self.spec = spec            # normalized options (typed kinds) or None (xml)
        self._element = element     # the rendered or given element (None: render it when asked)
        self.key = key              # identity; None when the spec leaves it to libvirt
        self.loose = loose          # options compared when the identity does not find a device
        self.derived = derived      # the option derived because the spec left it out (the kind's Derived), or None

    @property
    def element(self):
        if self._element is None:
            self._element = self.kind.render(self.spec)
        return self._element

    def take_element(self):
        """The element for a plan to put into a domain: a raw XML device's own stays (it is the source)."""
        if self.kind is None:
            return copy.deepcopy(self._element)
        element, self._element = self.element, None
        return element

    def forget_element(self):
        if self.kind is not None:
            self._element = None

    @property
    def tag(self):
        return self.kind.tag if self.kind is not None else self._element.tag

    @property
    def label(self):
        if self.key is None:
            return '%s %s' % (self.tag, ' '.join('%s=%s' % (o, self.spec.get(o)) for o in self.loose))
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
    _raw_identity(element, where)
    return element


def _raw_identity(element, where):
    """Raw XML of a kind that derives its identity (a NIC's MAC) must carry it, written the way libvirt stores
    it (a MAC in lower case), so the device libvirt keeps is found again after the define."""
    kind = kind_of_element(element)
    derived = kind.derived if kind is not None else None
    if derived is None:
        return
    field = kind.fields[derived.option]
    node = _xml.child(element, field.path)
    text = node.get(field.attr) if node is not None else None
    if text is None:
        raise SpecError(where, 'an <%s> given as XML needs %s: %s is its identity (kind: %s derives a stable one '
                        'when it is left out)' % (element.tag, derived.xml_hint, derived.noun, kind.name))
    node.set(field.attr, field.normalize(text, '%s <%s %s>' % (where, field.path, field.attr)))


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
        item = _declare_one(raw, here, domain_name, ordinals)
        if item.key is not None and item.key in seen:
            raise SpecError(here, 'declares the same device as %s (%s)' % (seen[item.key], item.label))
        seen[item.key] = here
        declared.append(item)
    return declared


def _declare_one(raw, here, domain_name, ordinals):
    kind_name = raw.get('kind')
    if kind_name == 'xml':
        extra = sorted(k for k, v in raw.items() if v is not None and k not in ('kind', 'xml', 'class'))
        if extra:
            raise SpecError(here, 'option(s) %s do not belong to kind xml (its options: xml)' % ', '.join(extra))
        element = _raw_xml_device(raw.get('xml'), here + '.xml')
        remember_secrets([element])
        kind = kind_of_element(element)
        if kind is not None:
            kind.check_limits(element, here + '.xml')
        base, repeatable = element_key(element)
        return Declared(here, None, None, element, _ordinal(base, repeatable, ordinals))
    if kind_name not in KINDS:
        raise SpecError(here + '.kind', '%r is not one of: %s' % (kind_name, ', '.join(KIND_NAMES)))
    spec = KINDS[kind_name].normalize(raw, here)
    kind = KINDS[kind_name].kind_for_spec(spec)
    for field in kind.secret_fields:
        _secrets.remember(spec.get(field.option))
    derived = kind.derived if kind.derived is not None and kind.derived.option not in spec else None
    if derived is not None:
        # stable across runs: the n-th NIC without MAC on a source always gets the same address
        group = derived.group(spec)
        ordinals[group] = ordinals.get(group, -1) + 1
        spec[derived.option] = derived.make(domain_name, spec[derived.basis], ordinals[group])
    base = kind.key(spec)
    key = None if base is None else _ordinal((kind.tag,) + base, kind.repeatable, ordinals)
    loose = (derived.basis,) if derived else tuple(option for option in kind.loose if option in spec)
    return Declared(here, kind, spec, None, key, loose, derived)  # rendered when a plan needs it


def _ordinal(base, repeatable, counters):
    """Devices without a natural identity are matched by position among their equals."""
    if not repeatable:
        return base
    counters[base] = counters.get(base, -1) + 1
    return base + (counters[base],)


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
    """An element in the module's option format: typed when the kind describes it fully, else xml.

    A secret shows as the placeholder in both forms: fed back, it keeps the current secret.
    """
    kind = kind_of_element(element)
    if kind is None:
        return {'kind': 'xml', 'xml': _xml.to_string(redact(element), pretty=False), 'class': element_class(element)}
    # read once: the lossless check, the view and the class ask the same options (a first apply describes
    # every device of every guest it read back)
    parsed = kind.parse(element)
    if kind.lossless(element, parsed):
        result = dict(parsed, **{field.option: _secrets.PLACEHOLDER for field in kind.secret_fields
                                 if field.option in parsed})
    else:
        result = {'kind': 'xml', 'xml': _xml.to_string(redact(element), pretty=False)}
    result['class'] = kind.device_class(parsed)  # what element_class asks the element's row (or family member)
    return result


def secret_notes(old, new):
    """What happened to a device's secrets, for a diff: 'password removed', never a value."""
    before, after = secrets_of(old) if old is not None else {}, secrets_of(new)
    notes = []
    for option in sorted(set(before) | set(after)):
        if option not in after:
            notes.append('%s removed' % option)
        elif option not in before:
            notes.append('%s set' % option)
        elif before[option] != after[option]:
            notes.append('%s changed' % option)
    return notes


def shown(elements, notes=None):
    """Device elements as a <devices> section for a diff, secrets masked; ``notes`` (id(element) → texts)
    become XML comments inside the element ('password removed')."""
    view = _xml.new_element('devices')
    for element in elements:
        copied = _xml.copy(redact(element))
        for note in (notes or {}).get(id(element), ()):
            copied.append(_xml.comment(note))
        view.append(copied)
    return _xml.to_string(view)


def gather(domain_xml, implicit=True):
    """The domain's devices in option format; without ``implicit``, those libvirt adds or owns by itself (the
    kind table's implicit column, asked on the whole definition) are left out."""
    domain = _domain(domain_xml)
    if domain.tag != 'domain':
        raise _xml.XMLInputError('domain XML has root <%s>, expected <domain>' % domain.tag)
    elements = device_elements(devices_of(domain))
    remember_secrets(elements)
    if not implicit:
        elements = [el for el in elements if not is_implicit(el)]
    return [describe(el) for el in elements]


# --- planning --------------------------------------------------------------------------------------

class Change:
    """One device attached, updated or detached; ``old``/``new`` are the elements before and after."""

    def __init__(self, op, label, old=None, new=None, item=None, verify_key=None):
        self.op = op
        self.label = label
        self.old = old
        self.new = new
        self.item = item
        self.verify_key = verify_key  # identity to check in libvirt's XML afterwards, if it has one

    @property
    def tag(self):
        return (self.new if self.new is not None else self.old).tag

    def hotpluggable(self):
        """Whether QEMU can take this change on a running guest (the kind table's hotplug column)."""
        element = self.new if self.new is not None else self.old
        kind = kind_of_element(element)
        if kind is None:
            return False
        if self.op == 'update':
            return kind.live_update(kind.parse(self.old), kind.parse(self.new))
        return kind.hotplug(kind.parse(element))

    def command(self, live=False, config=True):
        """The user-facing record: ``{op, kind, key, live, config}`` (the module's ``commands`` return value)."""
        return {'op': self.op, 'kind': self.tag, 'key': self.label.split(' ', 1)[1] if ' ' in self.label else '',
                'live': live, 'config': config}


class Plan:
    """What a state does to one domain: the new XML (or None), changes, before/after views."""

    def __init__(self, existing, devices):
        self.changes = []
        self.tree = None      # the planned domain definition (an element), written out by new_xml
        self.implicit = []
        self._existing = existing   # device elements before the plan
        self._devices = devices     # the <devices> element after the plan
        self._described = {}        # id(element) -> option view; unchanged devices are described once
        self._after = None
        self.matched = {}           # declared item's ``where`` -> the existing element it matched
        self.pci_limits = []        # a running guest's: what its PCI topology keeps out (pci_hotplug_limits)

    def _describe(self, element):
        view = self._described.get(id(element))
        if view is None:
            view = self._described[id(element)] = describe(element)
        return view

    @property
    def before(self):
        """The devices before, in option format (computed when asked: a no-change run rarely needs it)."""
        return [self._describe(element) for element in self._existing]

    @property
    def after(self):
        """The devices the plan leads to, in option format (the prediction; a run reports what it read back)."""
        if self._after is None:
            self._after = [self._describe(element) for element in device_elements(self._devices)]
        return self._after

    @property
    def before_text(self):
        """The devices before, as XML for a diff (secrets removed)."""
        return shown(self._existing)

    @property
    def after_text(self):
        notes = {}
        for change in self.changes:
            if change.new is not None:
                notes[id(change.new)] = secret_notes(change.old, change.new)
        return shown(device_elements(self._devices), notes)

    @property
    def changed(self):
        return bool(self.changes)

    @property
    def new_xml(self):
        return _xml.to_string(self.tree) if self.changed else None

    def change_for(self, key):
        return next((change for change in self.changes if key is not None and change.verify_key == key), None)

    @property
    def commands(self):
        return [change.command() for change in self.changes]

    def refusal(self, change):
        """Why the running guest cannot take a change the kind table lets QEMU make live: its PCI topology (the
        kind table's PCI_HOTPLUG_LIMITS, read from the live XML this plan was made from), or None."""
        if change.op == 'update':
            return None
        return pci_hotplug_refusal(self.pci_limits, change.op, change.new if change.op == 'attach' else change.old)


def _matches_loosely(item):
    return item.kind is not None and bool(item.derived or item.key is None)


def _agrees(item, element):
    """Whether an existing element is of the spec's kind and has every option it declares (its derived identity
    and its secrets aside)."""
    if kind_of_element(element) is not item.kind:
        return False
    secret = {field.option for field in item.kind.secret_fields}
    current = Reading(item.kind, element)
    return all(current.get(option) == value for option, value in item.spec.items()
               if option not in secret and not (item.derived and option == item.derived.option))


def _loose_match(item, candidates_by_tag, claimed):
    """A spec without full identity (NIC without MAC, controller without index) adopts the first unclaimed
    device of its kind that agrees on every declared option (the model of a NIC included): a device found
    only loosely never has a guest-visible property changed; when none agrees, the spec is a new device."""
    if not _matches_loosely(item):
        return None
    return next((element for element in candidates_by_tag.get(item.tag, ())
                 if id(element) not in claimed and _agrees(item, element)), None)


def _with_free_derived_value(item, element, domain_name, by_key, declared):
    """A new device whose derived identity another device already has (the NIC made for this position earlier,
    with another model): the first value of its group that no existing or declared device has, and its key."""
    field, derived = item.kind.fields[item.derived.option], item.derived
    taken = set(by_key) | {other.key for other in declared}
    for ordinal in range(1024):
        value = derived.make(domain_name, item.spec[derived.basis], ordinal)
        key = (item.kind.tag,) + item.kind.key(dict(item.spec, **{derived.option: value}))
        if key not in taken:
            field.write(element, value)
            return element, key
    raise SpecError(item.where, 'no free %s for %s' % (derived.noun, item.label))


def _updated_element(item, existing, reset, live=False):
    if item.kind is None:
        new = settle_secrets(copy.deepcopy(item.element), existing, item.where + '.xml')
        kind = kind_of_element(new)
        if kind is not None:
            kind.keep_implied(new, existing)
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
    if item.derived:
        spec.pop(item.derived.option)  # a matched NIC keeps the MAC it has
    for field in item.kind.secret_fields:
        if spec.get(field.option) == _secrets.PLACEHOLDER and field.read(existing) is None:
            # "keep the current password" on a console that has none would leave it open (a list gathered
            # from another guest): refused, as for a device that does not exist
            raise SpecError('%s.%s' % (item.where, field.option),
                            '%r means "keep the current %s", but %s has none; give the %s itself (or leave it '
                            'out)' % (_secrets.PLACEHOLDER, field.option, item.label, field.option))
    new = copy.deepcopy(existing)
    item.kind.apply(new, spec, reset=reset, live=live)
    return new


def _new_element(item):
    """A declared device that matches none: a secret that says "keep the current one" has nothing to keep."""
    if item.kind is None:
        return settle_secrets(item.take_element(), None, item.where + '.xml')
    for field in item.kind.secret_fields:
        if item.spec.get(field.option) == _secrets.PLACEHOLDER:
            raise SpecError('%s.%s' % (item.where, field.option),
                            '%r means "keep the current %s", but %s matches no existing device; give the %s '
                            'itself (or leave it out)' % (_secrets.PLACEHOLDER, field.option, item.label, field.option))
    return item.take_element()


def _index(elements):
    """Identity → elements, with position among equals for devices without a natural identity."""
    by_key, ordinals = {}, {}
    for element in elements:
        base, repeatable = element_key(element)
        by_key.setdefault(_ordinal(base, repeatable, ordinals), []).append(element)
    return by_key


def _existing_label(element):
    base, _repeatable = element_key(element)
    return '%s %s' % (element.tag, describe_key(base))


def _stable_key(element):
    base, repeatable = element_key(element)
    return None if repeatable else base


def identity(element):
    """The identity under which ``locate`` and ``verify`` find an element, or None for positional kinds."""
    return _stable_key(element)


def plan(domain_xml, declared, state, overridden_kinds=None):
    """Compute the plan for merged / replaced / overridden / deleted on one domain's XML.

    ``overridden`` makes the guest's devices exactly the declared list, over every kind (or only over the
    element tags in ``overridden_kinds``), except what the kind table calls ``implicit``."""
    domain = _xml.parse(domain_xml, 'domain XML')
    live = domain.get('id') is not None  # only a running guest's definition has an id (libvirt's formatdomain)
    devices = devices_of(domain)
    existing = device_elements(devices)
    remember_secrets(existing)
    result = Plan(existing, devices)
    if live:
        result.pci_limits = pci_hotplug_limits(domain, existing)
    by_key = _index(existing)
    by_tag = {}
    for element in existing:
        by_tag.setdefault(element.tag, []).append(element)
    claimed, found_for = set(), {}
    for item in declared:       # identity first: a loose match never takes a device another spec names
        found = next((el for el in by_key.get(item.key, ()) if id(el) not in claimed), None)
        if found is not None and item.derived is not None and not _agrees(item, found):
            # a derived identity (the MAC made for the n-th NIC on a source) is no promise: the device that has it
            # but not the declared model is another one, never changed into this one (adopted loosely, or added)
            found = None
        if found is not None:
            claimed.add(id(found))
            found_for[id(item)] = found
    # then the loose specs, the most specific first, so that a vaguer one does not take its device
    loose = [item for item in declared if id(item) not in found_for and _matches_loosely(item)]
    for item in sorted(loose, key=lambda item: -len(item.spec)):
        found = _loose_match(item, by_tag, claimed)
        if found is not None:
            claimed.add(id(found))
            found_for[id(item)] = found

    for item in declared:
        found = found_for.get(id(item))
        if found is not None:
            result.matched[item.where] = found
        if state == 'deleted':
            if found is not None:
                devices.remove(found)
                result.changes.append(Change('detach', item.label, old=found, verify_key=_stable_key(found)))
            continue
        if found is None:
            new, key = _new_element(item), item.key
            if item.derived is not None and key in by_key:
                new, key = _with_free_derived_value(item, new, domain.findtext('name') or '', by_key, declared)
            devices.append(new)
            result.changes.append(Change('attach', '%s %s' % (item.tag, describe_key(key)) if key != item.key
                                         else item.label, new=new, item=item, verify_key=key))
            continue
        new = _updated_element(item, found, reset=state in ('replaced', 'overridden'), live=live)
        if not _xml.same(new, found):
            devices.replace(found, new)
            result.changes.append(Change('update', item.label, old=found, new=new, item=item,
                                         verify_key=_stable_key(found)))

    if state == 'overridden':
        scope = DEVICE_TAGS if overridden_kinds is None else frozenset(overridden_kinds)
        for element in existing:
            if id(element) in claimed or element.tag not in scope:
                continue
            # asked in libvirt's device order, on what is left: a serial console whose serial port was
            # just removed, or the video of a removed graphics device, is no longer libvirt's own
            if is_implicit(element):
                result.implicit.append(result._describe(element))  # pylint: disable=protected-access
                continue
            devices.remove(element)
            result.changes.append(Change('detach', _existing_label(element), old=element,
                                         verify_key=_stable_key(element)))

    if state != 'deleted':
        _drop_default_boot(domain, declared)
    result.tree = domain
    return result


def _drop_default_boot(domain, declared):
    """Per-device boot order and ``<os><boot dev=...>`` exclude each other in libvirt. A lone
    ``<boot dev='hd'/>`` is what libvirt writes when no boot order was given (every guest created
    without one has it), so it gives way to a declared ``boot_order``; any other ``<os>`` boot order
    was chosen by someone and is refused, naming the device."""
    if not any(el.get('order') for el in domain.iterfind('devices/*/boot')):
        return
    boots = domain.findall('os/boot')
    if not boots:
        return
    if [el.get('dev') for el in boots] == ['hd']:
        boots[0].getparent().remove(boots[0])
        return
    asking = next((item.where for item in declared if item.spec and item.spec.get('boot_order')), 'config')
    raise SpecError(asking + '.boot_order', 'the domain boots by <os> order (%s), which libvirt does not allow '
                    'together with per-device boot order: set boot: {order: []} with virtdev.libvirt.domain first'
                    % ', '.join(el.get('dev') for el in boots))


def _domain(domain_xml):
    """A domain definition as an element: parsed from its XML text, or already parsed (read back once after a
    define, the check and the result read the same tree)."""
    return _xml.parse(domain_xml, 'domain XML') if isinstance(domain_xml, (str, bytes)) else domain_xml


def locate(domain_xml, tags=None):
    """Identity → first element, for finding planned devices in another view (read back, live XML); only of the
    element ``tags`` given (an identity starts with its tag, and positions count among equal identities only)."""
    elements = device_elements(devices_of(_domain(domain_xml)))
    if tags is not None:
        elements = [element for element in elements if element.tag in tags]
    return {key: found[0] for key, found in _index(elements).items()}


def verify(result, readback_xml):
    """After a write: every attached or updated device is in libvirt's XML as asked, every detached one
    is gone. Returns the problems, each naming the device."""
    present = locate(readback_xml, {change.verify_key[0] for change in result.changes if change.verify_key})
    problems = []
    for change in result.changes:
        if change.verify_key is None:
            continue  # libvirt chose the identity (a controller index) or position decides it
        element = present.get(change.verify_key)
        if change.op == 'detach':
            # libvirt puts its own default back in the place of some devices (a spice audio backend
            # removed with its display comes back as <audio type='none'/>): that is the removal done
            if element is not None and not is_implicit(element):
                problems.append('%s was removed but libvirt still has it' % change.label)
            continue
        where = change.item.where if change.item is not None else change.label
        if element is None:
            problems.append('%s (%s) is missing from the definition libvirt kept' % (where, change.label))
            continue
        if change.item is None or change.item.kind is None:
            continue
        kept = Reading(change.item.kind, element)  # only the declared options are compared
        secret = {field.option for field in change.item.kind.secret_fields}
        for option, value in change.item.spec.items():
            if change.item.derived and option == change.item.derived.option and option in kept:
                continue
            if option in secret:
                if value != _secrets.PLACEHOLDER and kept.get(option) != (value or None):
                    problems.append('%s (%s): libvirt did not keep the %s as asked (%s)' % (
                        where, change.label, option, 'removed' if value == _secrets.REMOVE else 'set'))
                continue
            if kept.get(option) != value:
                problems.append('%s (%s): libvirt kept %s=%r, asked %r'
                                % (where, change.label, option, kept.get(option), value))
    return problems


def render(declared):
    """The device XML that ``config`` produces (state rendered), secrets shown as the placeholder."""
    return [_xml.to_string(redact(item.element)) for item in declared]
