# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Field types: how one module option maps onto a device element (pure, no libvirt, no Ansible).

A device kind (see ``_device_kinds``) is a list of fields. Every field can

* ``normalize`` a user value (validate, canonicalize, or raise ``SpecError`` naming the field),
* ``read`` its value from an element (``None`` when absent),
* ``write`` a value onto an element, touching nothing it does not own,
* ``clear`` itself from an element (used by ``replaced`` to reset unlisted options).

Because writes only touch the field's own attribute or element, a device keeps every part of its XML
that no field manages (hand-made customizations, libvirt's addresses and aliases).
"""

from __future__ import annotations

import re

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids, _xml

# libvirt's memory units (formatdomain "Memory Allocation"), in KiB: what a size in any unit is in KiB
KIB_PER = {'b': 1 / 1024, 'bytes': 1 / 1024, 'kb': 1000 / 1024, 'k': 1, 'kib': 1, 'mb': 1000 ** 2 / 1024,
           'm': 1024, 'mib': 1024, 'gb': 1000 ** 3 / 1024, 'g': 1024 ** 2, 'gib': 1024 ** 2, 'tib': 1024 ** 3,
           't': 1024 ** 3}


class SpecError(ValueError):
    """A user-supplied device spec is invalid. ``str()`` names the field and the value."""

    def __init__(self, where, message):
        super().__init__('%s: %s' % (where, message))
        self.where = where


class Field:
    """An attribute at ``path``/@``attr`` holding a string (or a converted value)."""

    value_type = 'str'

    def __init__(self, option, path, attr, choices=None, pattern=None, pattern_hint=None,
                 default=None, libvirt_fills=False, secret=False, absolute_path=False, description=''):
        self.option = option
        # libvirt's schema takes only absolute paths here (absFilePath); '..' is refused as a traversal
        self.absolute_path = absolute_path
        self.path = path
        self.attr = attr
        self.choices = tuple(choices) if choices else None
        self.pattern = re.compile(pattern) if pattern else None
        self.pattern_hint = pattern_hint
        self.default = default
        # libvirt computes a value when the option is absent (disk bus from the target name, ...);
        # ``replaced`` must then leave the current value alone or it would change on every run.
        self.libvirt_fills = libvirt_fills or secret
        # a secret (a graphics password) is written but never shown back: gathered, before/after and
        # diff leave it out, and an omitted secret keeps its current value
        self.secret = secret
        self.description = description

    # conversion between option values and XML text --------------------------------------------
    def to_text(self, value):
        return str(value)

    def from_text(self, text):
        return text

    # the four operations -----------------------------------------------------------------------
    def normalize(self, value, where):
        if value is None:
            return self.default
        if self.value_type == 'str' and not isinstance(value, str):
            value = str(value)
        if self.value_type == 'str' and value == '' and not self.secret:
            if self.pattern_hint:
                raise SpecError(where, "'' is not %s" % self.pattern_hint)
            raise SpecError(where, "'' is empty: libvirt's schema refuses it (leave the option out instead)")
        if self.absolute_path and not value.startswith('/'):
            raise SpecError(where, '%r is not an absolute path (libvirt takes only absolute paths here)' % (value,))
        if self.absolute_path and '..' in value.split('/'):
            raise SpecError(where, "%r contains '..': give the path without parent-directory steps" % (value,))
        if self.choices is not None and value not in self.choices:
            raise SpecError(where, '%r is not one of: %s' % (value, ', '.join(self.choices)))
        if self.pattern is not None and not self.pattern.fullmatch(value):  # no "$" before a trailing newline
            raise SpecError(where, '%r is not valid (%s)' % (value, self.pattern_hint or self.pattern.pattern))
        return value

    def read(self, element):
        node = _xml.child(element, self.path)
        if node is None or node.get(self.attr) is None:
            return None
        return self.from_text(node.get(self.attr))

    def write(self, element, value):
        _xml.child(element, self.path, create=True).set(self.attr, self.to_text(value))

    def clear(self, element):
        node = _xml.child(element, self.path)
        if node is not None and self.attr in node.attrib:
            del node.attrib[self.attr]
            _xml.prune_empty(element, self.path)


class Bool(Field):
    """A boolean kept as two words in an attribute: 'yes'/'no' (``managed``) or 'on'/'off'."""

    value_type = 'bool'

    def __init__(self, option, path, attr, words=('yes', 'no'), **kwargs):
        super().__init__(option, path, attr, **kwargs)
        self.words = words

    def normalize(self, value, where):
        if value is None:
            return self.default
        if not isinstance(value, bool):
            raise SpecError(where, '%r is not a boolean' % (value,))
        return value

    def to_text(self, value):
        return self.words[0] if value else self.words[1]

    def from_text(self, text):
        return text == self.words[0]


def YesNo(option, path, attr, **kwargs):
    return Bool(option, path, attr, words=('yes', 'no'), **kwargs)


def OnOff(option, path, attr, **kwargs):
    return Bool(option, path, attr, words=('on', 'off'), **kwargs)


class Integer(Field):
    value_type = 'int'

    def __init__(self, option, path, attr, minimum=None, maximum=None, **kwargs):
        super().__init__(option, path, attr, **kwargs)
        self.minimum = minimum
        self.maximum = maximum

    def normalize(self, value, where):
        if value is None:
            return self.default
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(where, '%r is not an integer' % (value,))
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise SpecError(where, '%r is out of range (%s..%s)' % (value, self.minimum, self.maximum))
        return value

    def from_text(self, text):
        try:
            return int(text, 0)
        except ValueError:
            return text


class HexInteger(Integer):
    """A number libvirt writes in hex (a PCIe root port's ``<target port='0x10'/>``): written the same way, so a
    device read back is described exactly by its options."""

    def to_text(self, value):
        return '0x%x' % value


class Flag(Field):
    """A boolean expressed by the presence of an empty element (``<readonly/>``)."""

    value_type = 'bool'

    def __init__(self, option, path, **kwargs):
        super().__init__(option, path, None, **kwargs)

    normalize = Bool.normalize

    def read(self, element):
        return _xml.child(element, self.path) is not None

    def write(self, element, value):
        if value:
            _xml.child(element, self.path, create=True)
        else:
            self.clear(element)

    def clear(self, element):
        node = _xml.child(element, self.path)
        if node is not None:
            node.getparent().remove(node)


class Text(Field):
    """The text content of an element (``<backend model='random'>/dev/urandom</backend>``)."""

    def __init__(self, option, path, **kwargs):
        super().__init__(option, path, None, **kwargs)

    def read(self, element):
        node = _xml.child(element, self.path)
        if node is None or not (node.text or '').strip():
            return None
        return node.text.strip()

    def write(self, element, value):
        _xml.child(element, self.path, create=True).text = self.to_text(value)

    def clear(self, element):
        node = _xml.child(element, self.path)
        if node is not None:
            node.text = None
            _xml.prune_empty(element, self.path)


def normalize_pci_address(value, where):
    """'0000:01:00.0' style (``_ids.parse_pci``: 4 to 8 hex-digit domains, slot <= 1f, function <= 7)."""
    try:
        return _ids.pci_text(value, None)
    except _ids.IdError as exc:
        raise SpecError(where, exc.reason)


class Identifier(Field):
    """A MAC address or UUID: normalized by ``_ids`` the way libvirt reads it (``52:54:00:AA:BB:CC`` is
    stored as ``52:54:00:aa:bb:cc``), so the identity a user writes and the one libvirt keeps are equal."""

    def __init__(self, option, path, attr, parse, hint, **kwargs):
        super().__init__(option, path, attr, pattern_hint=hint, **kwargs)
        self.parse = parse

    def normalize(self, value, where):
        if value is None:
            return self.default
        try:
            return self.parse(value, None)
        except _ids.IdError as exc:
            raise SpecError(where, exc.reason)

    def from_text(self, text):
        try:
            return self.parse(text, None)
        except _ids.IdError:
            return text


def Mac(option, path, attr, **kwargs):
    return Identifier(option, path, attr, lambda text, field: _ids.parse_mac(text, field, trailing_blank=True),
                      'six colon-separated hex octets, unicast', **kwargs)


def Uuid(option, path, attr, **kwargs):
    return Identifier(option, path, attr, _ids.parse_uuid, 'a UUID', **kwargs)


class PciAddress(Field):
    """A host PCI address in an ``<address domain= bus= slot= function=/>`` element."""

    PARTS = ('domain', 'bus', 'slot', 'function')

    def __init__(self, option, path, pci_type=False, **kwargs):
        super().__init__(option, path, None, **kwargs)
        self.pci_type = pci_type  # <interface type='hostdev'> wants type='pci' on the address

    def normalize(self, value, where):
        if value is None:
            return self.default
        return normalize_pci_address(value, where)

    def read(self, element):
        node = _xml.child(element, self.path)
        if node is None or (self.pci_type and node.get('type') not in (None, 'pci')):
            return None
        try:  # as libvirt reads it: base-0 numbers, missing parts 0
            return str(_ids.pci_from_attrs(node.attrib, self.option))
        except _ids.IdError:
            return None

    def write(self, element, value):
        node = _xml.child(element, self.path, create=True)
        domain, bus, rest = value.split(':')
        slot, function = rest.split('.')
        for name in self.PARTS + ('type',):  # other attributes (multifunction) are other fields' business
            node.attrib.pop(name, None)
        if self.pci_type:
            node.set('type', 'pci')
        node.set('domain', '0x' + domain)
        node.set('bus', '0x' + bus)
        node.set('slot', '0x' + slot)
        node.set('function', '0x' + function)

    def clear(self, element):
        node = _xml.child(element, self.path)
        if node is not None:
            node.getparent().remove(node)


class NumberTuple(Field):
    """Decimal numbers joined by a separator, kept in several attributes of one element.

    ``address: "1.4"`` → ``<address bus='1' device='4'/>`` (USB), ``"0:0:1"`` → bus/target/unit (SCSI).
    """

    def __init__(self, option, path, parts, separator, **kwargs):
        super().__init__(option, path, None, **kwargs)
        self.parts = parts
        self.separator = separator

    def normalize(self, value, where):
        if value is None:
            return self.default
        pieces = str(value).split(self.separator)
        if len(pieces) != len(self.parts) or not all(piece.isdigit() for piece in pieces):
            raise SpecError(where, '%r is not valid (expected %s)' % (value, self.separator.join(
                part.upper() for part in self.parts)))
        return self.separator.join(str(int(piece)) for piece in pieces)

    def read(self, element):
        node = _xml.child(element, self.path)
        if node is None or any(node.get(part) is None for part in self.parts):
            return None
        try:  # libvirt reads these attributes in base 0 ('010' is 8)
            return self.separator.join(str(_ids.c_uint(node.get(part), self.option, limit=_ids.ULLONG_MAX))
                                       for part in self.parts)
        except _ids.IdError:
            return None

    def write(self, element, value):
        node = _xml.child(element, self.path, create=True)
        for part, number in zip(self.parts, value.split(self.separator)):
            node.set(part, number)

    def clear(self, element):
        node = _xml.child(element, self.path)
        if node is not None:
            for part in self.parts:
                node.attrib.pop(part, None)
            _xml.prune_empty(element, self.path)


class HexId(Field):
    """A 16-bit USB/PCI id written as libvirt does (``0x046d``); accepts ``046d`` or ``0x046D``."""

    def normalize(self, value, where):
        if value is None:
            return self.default
        try:
            return _ids.hex_id(value, None)
        except _ids.IdError as exc:
            raise SpecError(where, exc.reason)

    def from_text(self, text):
        try:  # libvirt reads id='1133' as decimal (0x046d)
            return _ids.usb_id_from_attr(text, None)
        except _ids.IdError:
            return text


class DriverAttr(Field):
    """An attribute of a disk's or NIC's ``<driver>``; QEMU disks also need ``name='qemu'`` there."""

    def __init__(self, option, attr, driver_name=None, **kwargs):
        super().__init__(option, 'driver', attr, **kwargs)
        self.driver_name = driver_name

    def write(self, element, value):
        node = _xml.child(element, 'driver', create=True)
        if self.driver_name and node.get('name') is None:
            node.set('name', self.driver_name)
        node.set(self.attr, self.to_text(value))


class ResolvedOnHost(Field):
    """An option naming something of the host that the runner resolves before planning (an SR-IOV VF by its
    PF and index becomes the VF's PCI address): validated like ``inner``, it never reaches the XML."""

    def __init__(self, option, inner, description=''):
        super().__init__(option, '', None, description=description)
        self.inner = inner
        self.value_type = inner.value_type

    def normalize(self, value, where):
        return self.inner.normalize(value, where)

    def read(self, element):
        return None

    def write(self, element, value):
        pass  # replaced by what it names on the host before any plan is made

    def clear(self, element):
        pass


class Variant:
    """One form of a polymorphic ``source`` option: which key selects it and where its values go."""

    def __init__(self, selector, type_value, fields=(), flag=False, needs=()):
        self.selector = selector      # the option key that picks this form ('network', 'file', ...)
        self.type_value = type_value  # the device's type attribute for this form
        self.fields = {field.option: field for field in fields}  # the selector's field and companions
        self.flag = flag              # the selector is a boolean marker with no XML value ('user')
        self.needs = tuple(needs)     # companions that must be given with the selector


class Source(Field):
    """``source: {network: default}`` style option selecting the device type and its source element."""

    value_type = 'dict'

    def __init__(self, option, variants, type_attr='type', **kwargs):
        super().__init__(option, '', type_attr, **kwargs)
        self.variants = {variant.selector: variant for variant in variants}
        self.by_type = {variant.type_value: variant for variant in variants}

    def suboptions(self):
        keys = {}
        for variant in self.variants.values():
            keys[variant.selector] = 'bool' if variant.flag else 'str'
            for name, field in variant.fields.items():
                keys.setdefault(name, field.value_type)
        return keys

    def normalize(self, value, where):
        if value is None:
            return self.default
        if not isinstance(value, dict):
            raise SpecError(where, '%r must be a dictionary with one of: %s' % (value, ', '.join(self.variants)))
        given = {key: val for key, val in value.items() if val is not None}
        selectors = [key for key in given if key in self.variants]
        if len(selectors) != 1:
            raise SpecError(where, '%r must name exactly one of: %s' % (value, ', '.join(self.variants)))
        variant = self.variants[selectors[0]]
        allowed = set(variant.fields) | {variant.selector}
        unknown = sorted(set(given) - allowed)
        if unknown:
            raise SpecError(where, 'key(s) %s do not belong to a %s source (allowed: %s)'
                            % (', '.join(unknown), variant.selector, ', '.join(sorted(allowed))))
        result = {}
        if variant.flag:
            if given[variant.selector] is not True:
                raise SpecError('%s.%s' % (where, variant.selector), '%r must be true' % (given[variant.selector],))
            result[variant.selector] = True
        for name, field in variant.fields.items():
            if name in given:
                if field.value_type == 'str' and str(given[name]) == '':
                    raise SpecError('%s.%s' % (where, name), 'must not be empty')
                result[name] = field.normalize(given[name], '%s.%s' % (where, name))
        missing = sorted(name for name in variant.needs if name not in result)
        if missing:
            raise SpecError(where, 'a %s source also needs: %s' % (variant.selector, ', '.join(missing)))
        return result

    def read(self, element):
        variant = self.by_type.get(element.get(self.attr))
        if variant is None:
            return None
        result = {variant.selector: True} if variant.flag else {}
        for name, field in variant.fields.items():
            value = field.read(element)
            if value is not None:
                result[name] = value
        if variant.selector not in result:
            return None  # e.g. an empty cdrom drive: type='file' but no source
        return result

    def write(self, element, value):
        variant = next(self.variants[key] for key in value if key in self.variants)
        if element.get(self.attr) != variant.type_value:
            # a different kind of source: the old source element's attributes mean nothing now
            self.clear(element)
        element.set(self.attr, variant.type_value)
        for name, field in variant.fields.items():
            if name in value:
                field.write(element, value[name])
            else:
                field.clear(element)

    def clear(self, element):
        node = _xml.child(element, 'source')
        if node is not None:
            node.getparent().remove(node)
