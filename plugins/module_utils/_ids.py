# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Identifiers of devices, read exactly as libvirt reads them (pure: standard library only).

This is the one place that turns PCI, USB and SCSI addresses, MAC addresses and UUIDs into values.
Every path that reaches a passthrough guard (typed options, raw ``kind: xml``, ``<interface
type='hostdev'>``, other guests' XML, sysfs names) goes through it, so a device cannot escape a guard
by being written another way. libvirt's rules (docs: formatdomain.html "Device Addresses"; code:
``virXMLPropUInt``/``virStrToLong_uip``, ``virMacAddrParse``, ``virUUIDParse``):

* address attributes are C integers read by ``strtoul`` with base 0: ``0x1f`` is hex, ``027`` octal
  (23), ``27`` decimal; leading blanks and a ``+`` are accepted, a ``-``, trailing characters and
  values past 32 bits are not. Drive addresses (``type='drive'``) are read in base 10.
* a PCI ``<address>`` without ``domain``/``bus``/``slot``/``function`` has 0 there.
* a MAC is six octets of one or two hex digits; upper case is fine; multicast is refused.
* a UUID is 32 hex digits in pairs, with ``-`` or blanks between pairs and around it.

What cannot be read raises ``IdError`` naming the field and the value: a guard is never skipped
because an address was not understood.
"""

from __future__ import annotations

import collections
import re

_C_SPACE = ' \t\n\v\f\r'
_DIGITS = {8: frozenset('01234567'), 10: frozenset('0123456789'), 16: frozenset('0123456789abcdefABCDEF')}
UINT_MAX = 0xffffffff
ULLONG_MAX = 0xffffffffffffffff

PCI_HINT = 'expected DDDD:BB:SS.F (domain 4 to 8 hex digits, bus <= ff, slot <= 1f, function <= 7)'
# how the kernel names a PCI device in sysfs, and libvirt a node device: canonical form only
PCI_NAME_RE = re.compile(r'^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$')
NODEDEV_PCI_NAME_RE = re.compile(r'^pci_([0-9a-f]{4,8})_([0-9a-f]{2})_([0-9a-f]{2})_([0-7])$')
_PCI_TEXT_RE = re.compile(
    r'^(?:(?P<domain>[0-9a-f]+):)?(?P<bus>[0-9a-f]+):(?P<slot>[0-9a-f]+)\.(?P<function>[0-9a-f]+)$')
_MAC_RE = re.compile(r'^([0-9a-fA-F]{1,2})' + r':([0-9a-fA-F]{1,2})' * 5 + r'(?P<rest>.*)$', re.S)
# the name of a device mapping (docs/device_mappings.md), and how messages describe one
MAPPING_NAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')
MAPPING_NAME_HINT = 'a mapping name: letters, digits, ".", "_", "-", up to 64, starting with a letter or digit'
CANONICAL_UUID_RE = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
_HEX_ID_RE = re.compile(r'^(?:0x)?[0-9a-f]{1,4}$')

PCI_LIMITS = (('bus', 0xff), ('slot', 0x1f), ('function', 7))


class IdError(ValueError):
    """An identifier libvirt would not read (or read as something else). ``str()`` names field and value."""

    def __init__(self, field, reason):
        super().__init__('%s: %s' % (field, reason) if field else reason)
        self.field = field
        self.reason = reason


class PciAddress(collections.namedtuple('PciAddress', 'domain bus slot function')):
    """A host PCI address; ``str()`` is the canonical ``dddd:bb:ss.f``."""

    __slots__ = ()

    def __str__(self):
        return '%04x:%02x:%02x.%x' % self

    def attributes(self):
        """The ``<address>`` attributes libvirt itself writes."""
        return {'domain': '0x%04x' % self.domain, 'bus': '0x%02x' % self.bus, 'slot': '0x%02x' % self.slot,
                'function': '0x%x' % self.function}


# -- numbers ------------------------------------------------------------------------------------------

def c_uint(text, field, base=0, limit=UINT_MAX):
    """An unsigned number as ``virStrToLong_uip(text, NULL, base)`` reads it; IdError otherwise."""
    if not isinstance(text, str):
        raise IdError(field, '%r is not a number' % (text,))
    rest = text.lstrip(_C_SPACE)
    if rest[:1] == '+':
        rest = rest[1:]
    elif rest[:1] == '-':
        raise IdError(field, '%r is negative' % (text,))
    radix = base
    if base in (0, 16) and rest[:2] in ('0x', '0X') and rest[2:3] and rest[2] in _DIGITS[16]:
        rest, radix = rest[2:], 16
    elif base == 0:
        radix = 8 if rest[:1] == '0' else 10
    if not rest or any(char not in _DIGITS[radix] for char in rest):
        how = 'hex with 0x, octal with a leading 0, else decimal' if base == 0 else 'base %d' % base
        raise IdError(field, '%r is not a number as libvirt reads it (%s)' % (text, how))
    value = int(rest, radix)
    if value > limit:
        raise IdError(field, '%r is out of range (at most %d)' % (text, limit))
    return value


def _attr(attrs, name, field, base=0, required=False, default=0, limit=UINT_MAX):
    value = attrs.get(name)
    if value is None:
        if required:
            raise IdError(field, 'the %s attribute is missing (libvirt requires it)' % name)
        return default
    return c_uint(value, '%s@%s' % (field, name), base, limit)


# -- PCI ----------------------------------------------------------------------------------------------

def _check_pci(numbers, field, shown, prefix=''):
    for (part, limit), number in zip(PCI_LIMITS, numbers[1:]):
        if number > limit:
            raise IdError(field, '%s is not a PCI address: %s %s%x is greater than %s%x'
                          % (shown, part, prefix, number, prefix, limit))
    return PciAddress(*numbers)


def pci_from_attrs(attrs, field):
    """A PCI ``<address>`` element's attributes (a mapping) → PciAddress, missing parts 0, as libvirt does."""
    numbers = [_attr(attrs, name, field) for name in PciAddress._fields]
    return _check_pci(numbers, field, repr(dict(attrs)), '0x')


def parse_pci(text, field='address'):
    """The option form ``DDDD:BB:SS.F`` or ``BB:SS.F`` (domain 0000), any case → PciAddress.

    Domains of 4 to 8 hex digits are accepted (hosts with Intel VMD have 10000:...).
    """
    if not isinstance(text, str):
        raise IdError(field, 'PCI address %r is not a string (%s)' % (text, PCI_HINT))
    match = _PCI_TEXT_RE.match(text.strip().lower())
    if not match:
        raise IdError(field, '%r is not a PCI address (%s)' % (text, PCI_HINT))
    domain = match.group('domain')
    if domain is not None and not 4 <= len(domain) <= 8:
        raise IdError(field, '%r is not a PCI address: the domain %r must have 4 to 8 hex digits' % (text, domain))
    numbers = [int(domain or '0', 16)] + [int(match.group(part), 16) for part in ('bus', 'slot', 'function')]
    address = _check_pci(numbers, field, repr(text))
    for part in ('bus', 'slot', 'function'):
        if len(match.group(part)) > 2:
            raise IdError(field, '%r is not a PCI address: %s %s has more than 2 digits'
                          % (text, part, match.group(part)))
    return address


def pci_text(text, field='address'):
    """``parse_pci`` as the canonical string."""
    return str(parse_pci(text, field))


def pci_of_nodedev_name(name):
    """``pci_0000_01_00_0`` (libvirt's node device name) → '0000:01:00.0', or None."""
    match = NODEDEV_PCI_NAME_RE.match(name or '')
    return '%s:%s:%s.%s' % match.groups() if match else None


# -- USB and SCSI -------------------------------------------------------------------------------------

def usb_from_attrs(attrs, field):
    """A hostdev USB source ``<address bus= device=/>`` → (bus, device); libvirt requires both."""
    return tuple(_attr(attrs, name, field, required=True) for name in ('bus', 'device'))


def usb_id_from_attr(text, field):
    """A ``<vendor id=>``/``<product id=>`` attribute (base 0: ``1133`` is 0x046d) → '0x046d'."""
    return '0x%04x' % c_uint(text, field, limit=0xffff)


def hex_id(value, field):
    """The option form of a 16-bit PCI/USB id: '0x8086', '8086' (hex), 32902 → '0x8086'; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise IdError(field, '%r is not a hex id like 0x8086' % (value,))
    if isinstance(value, int):
        if not 0 <= value <= 0xffff:
            raise IdError(field, '%r is not a 16-bit id' % (value,))
        return '0x%04x' % value
    text = str(value).strip().lower()
    if not _HEX_ID_RE.match(text):
        raise IdError(field, '%r is not a hex id like 0x8086' % (value,))
    return '0x%04x' % int(text[2:] if text.startswith('0x') else text, 16)


def scsi_host_from_attrs(attrs, field):
    """A hostdev SCSI source ``<address bus= target= unit=/>`` → (bus, target, unit); all required, base 0."""
    return (_attr(attrs, 'bus', field, required=True), _attr(attrs, 'target', field, required=True),
            _attr(attrs, 'unit', field, required=True, limit=ULLONG_MAX))


def drive_from_attrs(attrs, field):
    """A guest ``<address type='drive'>`` → (controller, bus, target, unit); base 10, missing parts 0."""
    return tuple(_attr(attrs, name, field, base=10) for name in ('controller', 'bus', 'target', 'unit'))


# -- MAC and UUID -------------------------------------------------------------------------------------

def parse_mac(text, field='mac', unicast=True, trailing_blank=False):
    """'52:54:00:AA:B:c' → '52:54:00:aa:0b:0c' (``virMacAddrParse``); multicast refused like libvirt does.

    ``trailing_blank``: accept what libvirt ignores after the sixth octet in XML (blanks).
    """
    match = _MAC_RE.match(text) if isinstance(text, str) else None
    rest = match.group('rest') if match else None
    if match is None or (rest and not (trailing_blank and not rest.strip(_C_SPACE))):
        raise IdError(field, '%r is not a MAC address (six colon-separated hex octets, 52:54:00:12:34:56)' % (text,))
    octets = [int(group, 16) for group in match.groups()[:6]]
    if unicast and octets[0] & 1:
        raise IdError(field, '%r is a multicast MAC address (odd first octet); libvirt takes only unicast ones'
                      % (text,))
    return ':'.join('%02x' % octet for octet in octets)


def parse_uuid(text, field='uuid'):
    """A UUID as ``virUUIDParse`` reads it (any case, '-' or blanks between digit pairs) → canonical lower case."""
    if not isinstance(text, str):
        raise IdError(field, '%r is not a UUID' % (text,))
    digits, rest = [], text.strip(_C_SPACE)
    index = 0
    while index < len(rest) and len(digits) < 32:
        char = rest[index]
        if char in '- ':
            index += 1
            continue
        pair = rest[index:index + 2]
        if len(pair) < 2 or any(c not in _DIGITS[16] for c in pair):
            break
        digits.extend(pair.lower())
        index += 2
    if len(digits) != 32 or index != len(rest):
        raise IdError(field, '%r is not a UUID like 8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e' % (text,))
    flat = ''.join(digits)
    return '%s-%s-%s-%s-%s' % (flat[:8], flat[8:12], flat[12:16], flat[16:20], flat[20:])


def is_uuid(text):
    try:
        parse_uuid(text)
    except IdError:
        return False
    return True


# -- host devices named by a device element -----------------------------------------------------------

def hostdev_keys(element, where='hostdev'):
    """Identity keys of the host devices a ``<hostdev>`` or ``<interface type='hostdev'>`` element uses.

    ('pci', 'dddd:bb:ss.f'), ('usb', '0xvvvv:0xpppp'), ('usb-address', 'bus.device'), ('mdev', uuid),
    ('scsi', 'adapter bus:target:unit'). Raises IdError (naming ``where``) when an address of the element
    cannot be read the way libvirt reads it: the caller refuses rather than skip a guard.
    """
    source = element.find('source')
    if element.tag == 'interface':
        if element.get('type') != 'hostdev':
            return []
        address = source.find('address') if source is not None else None
        here = '%s <source><address>' % where
        if address is None or address.get('type') not in ('pci', 'usb'):
            # libvirt refuses it too ("missing source address type")
            raise IdError(here, "an <interface type='hostdev'> needs <address type='pci' .../> (or type='usb'), "
                                'found %r' % (dict(address.attrib) if address is not None else None,))
        if address.get('type') == 'usb':
            return [('usb-address', '%d.%d' % usb_from_attrs(address.attrib, here))]
        return [('pci', str(pci_from_attrs(address.attrib, here)))]
    if element.tag != 'hostdev' or element.get('mode', 'subsystem') != 'subsystem' or source is None:
        return []
    kind, keys = element.get('type'), []
    address = source.find('address')
    here = '%s <source><address>' % where
    if kind == 'pci':
        keys.append(('pci', str(pci_from_attrs(address.attrib if address is not None else {}, here))))
    elif kind == 'usb':
        vendor, product = source.find('vendor'), source.find('product')
        if vendor is not None or product is not None:
            ids = [usb_id_from_attr(node.get('id') if node is not None else None, '%s <source><%s id>' % (where, tag))
                   for tag, node in (('vendor', vendor), ('product', product))]
            keys.append(('usb', '%s:%s' % tuple(ids)))
        if address is not None:
            keys.append(('usb-address', '%d.%d' % usb_from_attrs(address.attrib, here)))
    elif kind == 'mdev':
        keys.append(('mdev', parse_uuid(address.get('uuid') if address is not None else None, here + '@uuid')))
    elif kind == 'scsi' and source.get('protocol') is None:
        adapter = source.find('adapter')
        bus, target, unit = scsi_host_from_attrs(address.attrib if address is not None else {}, here)
        keys.append(('scsi', '%s %d:%d:%d' % (adapter.get('name') if adapter is not None else '', bus, target, unit)))
    return keys


def host_device_requests(element, where):
    """The passthrough guards' requests (docs/host_devices.md) for the host devices a device element takes
    (none for other devices): a PCI device is a 'pci' request, or 'sriov_vf' when an ``<interface>`` takes
    it; addresses read as libvirt reads them (``hostdev_keys``; IdError naming ``where``)."""
    keys = dict(hostdev_keys(element, where))
    if 'pci' in keys:
        kind = 'sriov_vf' if element.tag == 'interface' else 'pci'
        return [{'type': kind, 'address': keys['pci'], 'managed': element.get('managed', 'no') == 'yes',
                 'where': where}]
    if 'usb' in keys or 'usb-address' in keys:
        vendor, _sep, product = keys.get('usb', ':').partition(':')
        bus, _sep, device = keys.get('usb-address', '.').partition('.')
        return [{'type': 'usb', 'vendor': vendor or None, 'product': product or None,
                 'bus': int(bus) if bus else None, 'device': int(device) if device else None, 'where': where}]
    if 'mdev' in keys:
        return [{'type': 'mdev', 'uuid': keys['mdev'], 'where': where}]
    return []
