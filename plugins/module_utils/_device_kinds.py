# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The device kinds: one table row per kind (pure, no libvirt, no Ansible).

A row says which element it manages, which options it has (fields), how a device is identified (the
key that matches a declared device to an existing one), which class of hardware it is (emulated,
virtio, passthrough), whether QEMU can hot-plug it, whether libvirt adds it by itself (``implicit``),
which option is derived when left out (an interface's MAC), whether removing it from a running guest
needs consent and which host devices it takes. Device elements without typed options (``<hub>``,
``<audio>``, ...) are rows of the same table (``Untyped``): matched, kept and handled as raw ``xml``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids, _secrets, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import (
    KIB_PER, DriverAttr, Field, Flag, HexId, HexInteger, Integer, Mac, NumberTuple, OnOff, PciAddress, ResolvedOnHost,
    Source, SpecError, Text, Uuid, Variant, YesNo,
)

EMULATED, VIRTIO, PASSTHROUGH = 'emulated', 'virtio', 'passthrough'
# libvirt's own children of every device: never ours to set, never a reason for a change
LIBVIRT_OWNED = ('address', 'alias')
CHAR_TYPES = ('pty', 'file', 'unix', 'tcp', 'udp', 'null', 'stdio', 'dev', 'spicevmc', 'qemu-vdagent')


def _never(_element):
    return False


class Reading(Mapping):
    """An element's options, each read when first asked: an identity or a class asks two or three of a
    kind's options where a full ``parse`` reads them all (the read-back of a written guest asks the identity
    of every device). Holds what ``parse`` would return; the element must not change while it is read."""

    __slots__ = ('_kind', '_element', '_values')
    _ABSENT = object()

    def __init__(self, kind, element):
        self._kind, self._element, self._values = kind, element, {'kind': kind.name}

    def get(self, key, default=None):  # Mapping's own goes through __getitem__ and KeyError: the hot path
        value = self._values.get(key, self._ABSENT)
        if value is self._ABSENT:
            field = self._kind.fields.get(key)
            value = self._values[key] = field.read(self._element) if field is not None else None
        return default if value is None else value

    def __getitem__(self, option):
        value = self.get(option)
        if value is None:
            raise KeyError(option)
        return value

    def __contains__(self, key):
        return self.get(key) is not None

    def __iter__(self):
        return iter([option for option in ['kind'] + list(self._kind.fields) if option in self])

    def __len__(self):
        return len(list(iter(self)))


def _always(_element):
    return True


def _no_host_devices(_element, _where):
    return []


class KindDocs:
    """The row's summary in the Markdown kind and identity tables (docs/domain_devices.md, README.md), which
    ``scripts/gen_device_docs.py`` writes from the table: the hardware class, the identity and what a
    running guest takes, in words."""

    def __init__(self, hw_class, identity, hotplug):
        self.hw_class = hw_class
        self.identity = identity
        self.hotplug = hotplug


class Derived:
    """An identity option a kind derives when a spec leaves it out (an interface's MAC): stable across runs,
    from the domain name, the ``basis`` option and the position among the declared devices with the same
    basis. A spec that derives it matches an existing device by ``basis`` (which keeps the value it has);
    raw XML of the kind must carry it, as it is the identity (``xml_hint`` says how)."""

    def __init__(self, option, basis, make, noun, xml_hint):
        self.option = option
        self.basis = basis
        self.make = make            # (domain name, basis value, ordinal) -> value
        self.noun = noun
        self.xml_hint = xml_hint

    def group(self, spec):
        """The devices that count positions together (the n-th NIC without MAC on this source)."""
        return (self.option, repr(sorted(spec[self.basis].items())))


class Kind:
    """A typed device kind.

    ``key(spec)`` gives the identity tuple, or None when the spec leaves its identity to libvirt (a
    controller without index); such a spec matches the first unclaimed device whose ``loose`` options
    are equal. ``repeatable`` kinds have no natural identity (a second spicevmc redirection looks like
    the first): their n-th declaration matches their n-th device.
    """

    def __init__(self, name, tag, fields, key, device_class, hotplug, fixed=None, new_attrs=None, required=(),
                 loose=(), repeatable=False, live_update=None, label=None, description='', example=None, implied=(),
                 live_fills=(), implicit=_never, derived=None, removal_consent=None, host_devices=_no_host_devices,
                 docs=None, limits=(), assigned=(), pci_slot=False):
        self.name = name
        self.tag = tag
        self.label = label or name   # 'hostdev type=usb' for family members
        self.fields = {field.option: field for field in fields}
        self.key = key
        self.loose = loose
        # limits only libvirt or QEMU enforce (at define or start): spec -> (option, problem) or None
        self.limits = limits
        self.repeatable = repeatable
        self.device_class = device_class
        self.hotplug = hotplug if callable(hotplug) else (lambda spec, _answer=hotplug: _answer)
        # spec -> True when the device takes a PCI slot of its own (a virtio NIC or disk, a PCI host device),
        # so that hot-plugging it needs a guest that can take PCI devices (PCI_HOTPLUG_LIMITS); asked only of
        # what the hotplug column allows, and only when the element has no <address> that says where it goes
        self.pci_slot = pci_slot if callable(pci_slot) else (lambda spec, _answer=pci_slot: _answer)
        # which updates of a device QEMU applies to a running guest (updateDeviceFlags); others wait
        self.live_update = live_update or (lambda old, new: False)
        self.fixed = fixed or {}          # attributes every device of this kind carries (hostdev mode=...)
        self.new_attrs = new_attrs or {}  # starting attributes of a new element, which fields may override
        self.required = required
        self.description = description
        self.example = example
        # children libvirt adds by itself that mean "the default" (graphics <listen type='address'/>):
        # (tag, attributes) pairs, ignored when deciding whether the options describe an element fully
        self.implied = implied
        # options libvirt fills in the running guest's definition when they are absent from the persistent
        # one (a graphics listen address from qemu.conf): replaced leaves them alone on the live side
        self.live_fills = live_fills
        self.secret_fields = [field for field in fields if field.secret]
        # element -> True for the devices libvirt adds by itself (overridden leaves them, lists them in implicit)
        self.implicit = implicit
        self.derived = derived            # a Derived identity option, or None
        # the allow_live_removal class a live removal needs ('disk'); passthrough devices need 'passthrough'
        self.removal_consent = removal_consent
        # (element, where) -> the passthrough guards' requests for the host devices it takes
        self.host_devices = host_devices
        self.docs = docs                  # KindDocs: the row in the generated Markdown tables
        # (path, attribute) pairs libvirt assigns by itself on every define: never an option, never a difference
        self.assigned = assigned

    # -- what an existing element is (the same questions Untyped rows answer) ------------------------
    def element_identity(self, element):
        """(base identity, repeatable) of an existing element, or None when its options leave it open."""
        key = self.key(Reading(self, element))
        return None if key is None else ((element.tag,) + key, self.repeatable)

    def class_of(self, element):
        return self.device_class(Reading(self, element))

    def consent_to_remove(self, element):
        """What allow_live_removal must name to remove the element from a running guest, or None."""
        if self.removal_consent is not None:
            return self.removal_consent
        return PASSTHROUGH if self.class_of(element) == PASSTHROUGH else None

    def kind_for_spec(self, _spec):
        return self

    def kind_for_element(self, _element):
        return self

    def normalize(self, spec, where):
        """Validate a user spec; return only this kind's options, normalized, with defaults."""
        foreign = sorted(option for option, value in spec.items()
                         if value is not None and option not in self.fields and option not in ('kind', 'class'))
        if foreign:
            raise SpecError(where, 'option(s) %s do not belong to %s (its options: %s)'
                            % (', '.join(foreign), self.label, ', '.join(sorted(self.fields))))
        result = {'kind': self.name}
        for option, field in self.fields.items():
            value = _normalize_field(field, spec.get(option), '%s.%s' % (where, option))
            if value is None and option in self.required:
                raise SpecError(where, '%s requires option %s' % (self.label, option))
            if value is not None:
                result[option] = value
        for limit in self.limits:
            found = limit(result)
            if found is not None:
                raise SpecError('%s.%s' % (where, found[0]), found[1])
        return result

    def parse(self, element, secrets=True):
        """Read an element into this kind's option format (only options that are set). Without ``secrets``
        a secret that is set shows as the placeholder (present, value hidden)."""
        result = {'kind': self.name}
        for option, field in self.fields.items():
            value = field.read(element)
            if value is not None:
                result[option] = _secrets.PLACEHOLDER if field.secret and not secrets else value
        return result

    def apply(self, element, spec, reset, live=False):
        """Write ``spec`` onto ``element``. With ``reset`` (state replaced) unlisted options are cleared;
        ``live``: the element is from a running guest's definition."""
        for name, value in self.fixed.items():
            element.set(name, value)
        for option, field in self.fields.items():
            if option in spec:
                field.write(element, spec[option])
            elif reset and not field.libvirt_fills and not (live and option in self.live_fills):
                field.clear(element)
        return element

    def render(self, spec):
        return self.apply(_xml.new_element(self.tag, self.new_attrs), spec, reset=False)

    def redact(self, element):
        """A copy whose secrets show as the placeholder, for anything shown to the user."""
        present = [field for field in self.secret_fields if _secrets.is_real(field.read(element))]
        if not present:
            return element
        element = _xml.copy(element)
        for field in present:
            _secrets.remember(field.read(element))
            field.show_placeholder(element)
        return element

    def without_implied(self, element):
        """The element without what libvirt adds or assigns by itself (for comparisons)."""
        if not self.assigned and not any(_is_implied(child, self.implied) for child in element):
            return element
        element = _xml.copy(element)
        for child in [child for child in element if _is_implied(child, self.implied)]:
            element.remove(child)
        for path, attr in self.assigned:
            node = _xml.child(element, path)
            if node is not None:
                node.attrib.pop(attr, None)
        return element

    def keep_implied(self, new, existing):
        """Give a raw-XML device libvirt's defaults that ``existing`` has and ``new`` does not mention (the
        device would otherwise differ on every run, as libvirt adds them again), and the numbers libvirt assigned."""
        for child in existing:
            if _is_implied(child, self.implied) and new.find(child.tag) is None:
                new.append(_xml.copy(child))
        for path, attr in self.assigned:
            theirs, ours = _xml.child(existing, path), _xml.child(new, path)
            if theirs is not None and ours is not None and theirs.get(attr) is not None and ours.get(attr) is None:
                ours.set(attr, theirs.get(attr))
        # what libvirt fills in when it is left out (a graphics port of -1 with autoport), as for a typed spec
        # that leaves the option out: a raw entry without it keeps what libvirt wrote instead of dropping it
        # (secrets are settled before, by settle_secrets: an empty one there means "remove")
        for field in self.fields.values():
            if field.libvirt_fills and not field.secret and field.read(new) is None and field.read(existing) is not None:
                field.write(new, field.read(existing))
        return new

    def check_limits(self, element, where):
        """The limits only libvirt or QEMU enforce on a value, on a raw-XML element of this kind that gives that
        value (as on a typed spec; what raw XML leaves out is libvirt's to judge)."""
        parsed = self.parse(element)
        for limit in self.limits:
            found = limit(parsed)
            if found is not None and found[0] in parsed:
                raise SpecError(where, '%s: %s' % (found[0], found[1]))

    def lossless(self, element, parsed=None):
        """True when this kind's options describe the element completely (safe to show it typed); what
        libvirt adds by itself (addresses, aliases, implied defaults) does not count. ``parsed``: the element
        already read with ``parse`` (reading it costs more than the check itself)."""
        rendered = self.render(self.parse(element) if parsed is None else parsed)
        return _xml.same(self.without_implied(rendered), self.without_implied(element), ignore=LIBVIRT_OWNED)


def _is_implied(child, implied):
    return any(child.tag == tag and dict(child.attrib) == attrib and not len(child) for tag, attrib in implied)


def _normalize_field(field, value, where):
    """A field's normalized value; a secret's errors never quote it (they name the field only)."""
    if not field.secret:
        return field.normalize(value, where)
    try:
        return field.normalize(value, where)
    except SpecError as exc:
        masked = _secrets.Masker([value if isinstance(value, str) else str(value)]).text(str(exc))
        raise SpecError(exc.where, masked[len(exc.where) + 2:]) from None


class SecretAttr(Field):
    """A secret in an attribute (a console ``passwd``). Never shown: read back it is the placeholder.

    Written values: the placeholder keeps the current secret, ``''`` removes it, anything else sets it;
    an omitted option keeps it too (it is ``libvirt_fills``, so ``replaced`` never clears it).
    """

    def __init__(self, option, path, attr, **kwargs):
        super().__init__(option, path, attr, secret=True, **kwargs)

    def write(self, element, value):
        if value == _secrets.PLACEHOLDER:
            return
        if value == _secrets.REMOVE:
            self.clear(element)
            return
        super().write(element, value)

    def show_placeholder(self, element):
        _xml.child(element, self.path).set(self.attr, _secrets.PLACEHOLDER)


class KindFamily(Kind):
    """One user-facing kind whose members differ by a type attribute (hostdev pci/usb/mdev/scsi)."""

    def __init__(self, name, tag, selector, members, default, description='', docs=None):
        self.members = {member.fixed[selector]: member for member in members}
        self.selector = selector
        self.default = default
        fields = {}
        for member in members:
            for option, field in member.fields.items():
                fields.setdefault(option, field)
        super().__init__(name, tag, list(fields.values()), key=None, device_class=None, hotplug=False,
                         description=description, docs=docs)
        # an element of the family no member describes (<hostdev mode='capabilities'>) is still of its class
        self.device_class = lambda _spec: members[0].device_class({})
        self.host_devices = members[0].host_devices

    def element_identity(self, element):
        member = self.kind_for_element(element)
        return member.element_identity(element) if member is not None else None

    def class_of(self, element):
        member = self.kind_for_element(element)
        return member.class_of(element) if member is not None else self.device_class({})

    def kind_for_spec(self, spec):
        return self.members[spec.get(self.selector) or self.default]

    def kind_for_element(self, element):
        return self.members.get(element.get(self.selector))

    def normalize(self, spec, where):
        value = spec.get(self.selector) or self.default
        if value not in self.members:
            raise SpecError('%s.%s' % (where, self.selector),
                            '%r is not one of: %s' % (value, ', '.join(self.members)))
        return self.members[value].normalize(dict(spec, **{self.selector: value}), where)


def ident(label, *options):
    """Identity from options: (label, values...), or None while any of them is unknown."""
    def key(spec):
        values = tuple(spec.get(option) for option in options)
        return None if any(value is None for value in values) else (label,) + values
    return key


def only_differ(*options):
    """Live-updatable when nothing but these options changed."""
    def check(old, new):
        rest = set(old) | set(new)
        return all(old.get(name) == new.get(name) for name in rest if name not in options)
    return check


def derived_mac(domain_name, source, ordinal):
    """A stable MAC for an interface declared without one: same domain, source and position, same MAC.

    The domain *name* is used (not its UUID) so ``rendered`` without a connection predicts the same MAC
    that a real run writes. 52:54:00 is QEMU's locally administered prefix.
    """
    seed = '%s|%s|%d' % (domain_name, sorted(source.items()) if source else '', ordinal)
    digest = hashlib.sha256(seed.encode('utf-8')).hexdigest()
    return '52:54:00:%s:%s:%s' % (digest[0:2], digest[2:4], digest[4:6])


def _bus_from_target(target):
    for prefix, bus in (('vd', 'virtio'), ('sd', 'scsi'), ('hd', 'ide'), ('fd', 'fdc'), ('xvd', 'xen')):
        if target.startswith(prefix):
            return bus
    return None


def _disk_bus(spec):
    return spec.get('bus') or _bus_from_target(spec.get('target', ''))


def _rng_backend_type(path):
    return 'builtin' if path == 'builtin' else 'random'


def _virtio_if(option, *values):
    return lambda spec: VIRTIO if spec.get(option) in values else EMULATED


class RngBackend(Text):
    """``backend: /dev/urandom`` → ``<backend model='random'>/dev/urandom</backend>``; ``builtin`` too."""

    def write(self, element, value):
        node = _xml.child(element, self.path, create=True)
        node.set('model', _rng_backend_type(value))
        node.text = None if value == 'builtin' else value

    def read(self, element):
        node = _xml.child(element, self.path)
        if node is None:
            return None
        if node.get('model') == 'builtin':
            return 'builtin'
        return (node.text or '').strip() or None


class VsockCid(Field):
    """``cid: auto`` → ``<cid auto='yes'/>``; ``cid: 5`` → ``<cid auto='no' address='5'/>``."""

    def normalize(self, value, where):
        if value is None:
            return self.default
        text = str(value)
        if text == 'auto':
            return text
        if not text.isdigit() or not 3 <= int(text) <= 0xfffffffe:
            raise SpecError(where, "%r is not 'auto' or a guest CID from 3 to 4294967294" % (value,))
        return str(int(text))

    def read(self, element):
        node = _xml.child(element, 'cid')
        if node is None:
            return None
        if node.get('auto') == 'yes' or node.get('address') is None:
            return 'auto'
        return node.get('address')

    def write(self, element, value):
        node = _xml.child(element, 'cid', create=True)
        node.attrib.clear()
        if value == 'auto':
            node.set('auto', 'yes')
        else:
            node.attrib.update({'auto': 'no', 'address': value})

    def clear(self, element):
        node = _xml.child(element, 'cid')
        if node is not None:
            element.remove(node)


class GraphicsListen(Field):
    """libvirt keeps the listen address twice: ``listen=`` and ``<listen type='address' address=>``."""

    def read(self, element):
        return element.get('listen')

    def write(self, element, value):
        element.set('listen', value)
        node = _xml.child(element, 'listen', create=True)
        node.attrib.update({'type': 'address', 'address': value})

    def clear(self, element):
        element.attrib.pop('listen', None)
        node = _xml.child(element, 'listen')
        # a bare <listen type='address'/> is libvirt's own default: leave it, or it comes back every run
        if node is not None and node.get('type') == 'address' and node.get('address') is not None:
            element.remove(node)


class GraphicsListenType(Field):
    """``listen_type: none``: a display without a network listener (SPICE with a local client only);
    ``address``, libvirt's default, reads as unset, like the bare ``<listen type='address'/>`` libvirt adds."""

    def read(self, element):
        value = super().read(element)
        return None if value == 'address' else value

    def clear(self, element):
        node = _xml.child(element, self.path)
        if node is not None and node.get(self.attr) == 'none':
            element.remove(node)


def _listen_none_has_no_address(spec):
    if spec.get('listen_type') == 'none' and spec.get('listen') is not None:
        return 'listen_type', "'none' listens nowhere, but listen gives an address (%s)" % spec['listen']
    return None


class GraphicsPort(Integer):
    """``port: -1`` with ``autoport``: QEMU picks the port at start; the running guest shows the one it got,
    which is no difference from -1.

    libvirt ties the two together when it stores a definition: with autoport='yes' it drops a fixed port
    (stored as -1), with autoport='no' it drops port -1. So a port is written with the autoport it means, or
    the device would be written again on every run."""

    def write(self, element, value):
        element.set('autoport', 'yes' if value == -1 else 'no')
        if value == -1 and element.get(self.attr) is not None:
            return
        super().write(element, value)


def _port_agrees_with_autoport(spec):
    """libvirt drops a fixed port under autoport and port -1 without it (see GraphicsPort)."""
    port, autoport = spec.get('port'), spec.get('autoport')
    if port is None or autoport is None or (port == -1) == autoport:
        return None
    return 'port', ('%d with autoport %s: libvirt keeps %s (give port -1 with autoport true, or a port with '
                    'autoport false)' % (port, autoport, 'no port' if port == -1 else 'port -1'))


class SizeMiB(Integer):
    """``size_mib: 128`` → ``<size unit='KiB'>131072</size>``: written in the unit libvirt stores for the element
    (KiB for memory devices, M for shmem), so a device read back is described exactly by its options."""

    def __init__(self, option, path, unit='KiB', **kwargs):
        super().__init__(option, path, None, **kwargs)
        self.unit = unit

    def read(self, element):
        node = _xml.child(element, self.path)
        if node is None or not (node.text or '').strip().isdigit():
            return None
        kib = int(node.text.strip()) * KIB_PER.get(node.get('unit', 'KiB').lower(), 1)
        return int(kib // 1024)

    def write(self, element, value):
        if self.read(element) == value:
            return  # libvirt keeps KiB; the same size in another unit is no change
        node = _xml.child(element, self.path, create=True)
        node.set('unit', self.unit)
        node.text = str(int(value * 1024 // KIB_PER[self.unit.lower()]))

    def clear(self, element):
        node = _xml.child(element, self.path)
        if node is not None:
            node.getparent().remove(node)


class TextInteger(Text):
    """A number as element text (``<node>0</node>``)."""

    value_type = 'int'

    def __init__(self, option, path, minimum=None, maximum=None, **kwargs):
        super().__init__(option, path, **kwargs)
        self.minimum, self.maximum = minimum, maximum

    normalize = Integer.normalize

    def read(self, element):
        text = super().read(element)
        return int(text) if text is not None and text.isdigit() else text


# a device option naming a mapping, resolved on the host before the guest is planned (_device_mappings.py)
MAPPING_FIELD = Field('mapping', '', '', pattern=_ids.MAPPING_NAME_RE.pattern, pattern_hint=_ids.MAPPING_NAME_HINT)


# --- limits only libvirt's QEMU driver enforces (each refused by libvirt 9.0 at define time) ------------

def _power_of_two(*options):
    def check(spec):
        for option in options:
            value = spec.get(option)
            if value is not None and value & (value - 1):
                return option, '%d is not a power of two (libvirt refuses it)' % value
        return None
    return check


def _isa_serial_port(spec):
    if spec.get('target_type') == 'isa-serial' and spec.get('port') is not None and spec['port'] > 3:
        return 'port', '%d is out of range: QEMU has four ISA serial ports (0..3)' % spec['port']
    return None


def _xhci_ports(spec):
    if spec.get('model') in ('qemu-xhci', 'nec-xhci') and spec.get('ports') is not None and spec['ports'] > 15:
        return 'ports', '%d is out of range: a %s controller has at most 15 ports' % (spec['ports'], spec['model'])
    return None


def _video_heads(spec):
    if (spec.get('heads') or 1) > 1 and spec.get('model') not in ('qxl', 'virtio'):
        return 'heads', '%d heads: only qxl and virtio video adapters have more than one' % spec['heads']
    return None


def _one_ide_or_fdc_controller(spec):
    """QEMU's x86 machines have one IDE controller (hda..hdd) and one floppy controller (fda, fdb)."""
    target = spec.get('target') or ''
    if (target.startswith('hd') and target > 'hdd') or (target.startswith('fd') and target > 'fdb'):
        return 'target', ('%r is beyond the one %s controller QEMU has (%s)'
                          % (target, 'IDE' if target.startswith('hd') else 'floppy',
                             'hda..hdd' if target.startswith('hd') else 'fda, fdb'))
    return None


# --- the table ---------------------------------------------------------------------------------------

INTERFACE = Kind(
    'interface', 'interface',
    docs=KindDocs(
        hw_class='virtio (model virtio), emulated (e1000, e1000e, rtl8139), passthrough (`source.hostdev` or `source.pf` + `vf`: '
                 'an SR-IOV VF)',
        identity='`mac`; without one, a MAC derived from the domain name, the source and the position among '
                 'NICs on that source — or an existing NIC that agrees on every declared option (a loose match never '
                 'changes the NIC it finds; when none agrees, the NIC is added) — so re-runs never add NICs',
        hotplug='yes; `link_state` live'),
    fields=[
        Mac('mac', 'mac', 'address', libvirt_fills=True,
            description='MAC address (unicast, any case; stored lower case); when omitted a stable one is derived.'),
        Source('source', [
            Variant('network', 'network', [Field('network', 'source', 'network')]),
            Variant('bridge', 'bridge', [Field('bridge', 'source', 'bridge')]),
            Variant('direct', 'direct', [Field('direct', 'source', 'dev'),
                                         Field('mode', 'source', 'mode',
                                               choices=('vepa', 'bridge', 'private', 'passthrough'))]),
            Variant('user', 'user', flag=True),
            # pf + vf: resolved by the runner to the VF's address (a hostdev source) before planning
            Variant('pf', 'hostdev', [ResolvedOnHost('pf', PciAddress('pf', '')),
                                      ResolvedOnHost('vf', Integer('vf', '', '', minimum=0, maximum=65535))], needs=('vf',)),
            # mapping: resolved by the runner to a free VF of the named device mapping (docs/device_mappings.md)
            Variant('mapping', 'hostdev', [ResolvedOnHost('mapping', MAPPING_FIELD)]),
            Variant('hostdev', 'hostdev', [PciAddress('hostdev', 'source/address', pci_type=True)]),
        ], description='Where the NIC is plugged: exactly one of network (a libvirt network, also a hostdev '
                       'VF pool), bridge, direct (a host device, with optional mode), user: true, hostdev '
                       '(an SR-IOV VF by PCI address, passed through), or pf with vf (the VF with index vf, '
                       'as the kernel numbers them in virtfnN, of the SR-IOV PF at PCI address pf: read from '
                       'the host, sysfs or, over a remote URI, libvirt node devices, and written as a hostdev '
                       'source with that VF address), or mapping (a device mapping by name, resolved on the host to a '
                       'VF the guest holds or a free one, docs/device_mappings.md).'),
        # libvirt passes the model through to QEMU (formatdomain: "any model QEMU supports"), so any name
        # of libvirt's schema is taken; virtio* is para-virtualized, every other model emulated
        Field('model', 'model', 'type', pattern=r'^[a-zA-Z0-9_\-]+$', pattern_hint='virtio, e1000, pcnet ...',
              libvirt_fills=True,
              description='NIC model, any model libvirt passes to QEMU: virtio (para-virtualized) or e1000, e1000e, '
                          'rtl8139, pcnet, ne2k_pci, i82559er, vmxnet3 ... (emulated).'),
        Integer('queues', 'driver', 'queues', minimum=1, maximum=256, description='virtio-net multiqueue count.'),
        Field('driver', 'driver', 'name', choices=('vhost', 'qemu'), description='virtio-net backend.'),
        Integer('rx_queue_size', 'driver', 'rx_queue_size', minimum=256, maximum=1024,
                description='virtio-net receive queue size (a power of two).'),
        Integer('tx_queue_size', 'driver', 'tx_queue_size', minimum=256, maximum=1024,
                description='virtio-net transmit queue size (a power of two).'),
        Integer('boot_order', 'boot', 'order', minimum=1, maximum=1000, description='Boot priority (network boot).'),
        Integer('mtu', 'mtu', 'size', minimum=68, maximum=65535, description='MTU the guest sees.'),
        Integer('vlan', 'vlan/tag', 'id', minimum=0, maximum=4095, description='VLAN tag (hostdev VFs, Open vSwitch).'),
        YesNo('managed', '', 'managed', description='For a hostdev source: libvirt detaches the VF from its host driver.'),
        # libvirt applies trustGuestRxFilters to macvtap (direct) and SR-IOV VF (hostdev) NICs (formatdomain)
        YesNo('trust', '', 'trustGuestRxFilters',
              description='trustGuestRxFilters: the guest may change its MAC and receive filters (direct and hostdev VF '
                          'sources).'),
        Field('link_state', 'link', 'state', choices=('up', 'down'), libvirt_fills=True,
              description='Virtual link state; changed live without a restart.'),
    ],
    key=ident('mac', 'mac'),
    device_class=lambda spec: (PASSTHROUGH if {'hostdev', 'pf', 'mapping'} & set(spec.get('source', {}))
                               else VIRTIO if str(spec.get('model', '')).startswith('virtio') else EMULATED),
    hotplug=True, required=('source',), live_update=only_differ('link_state'),
    pci_slot=lambda spec: spec.get('model') != 'usb-net',
    limits=(_power_of_two('rx_queue_size', 'tx_queue_size'),),
    derived=Derived('mac', 'source', derived_mac, 'the MAC', "<mac address='...'/>"),
    host_devices=_ids.host_device_requests,   # type='hostdev': an SR-IOV virtual function
    description='A network interface.',
    example={'kind': 'interface', 'source': {'network': 'default'}, 'model': 'virtio', 'queues': 2})


def _disk_source_paths(element, where):
    """The host paths a disk, cdrom or floppy reads (type file or block): judged by the source_exists guard
    (host/preflight.py) before anything is written, as libvirt would only find them missing at start."""
    source = element.find('source')
    option, attr = {'file': ('file', 'file'), 'block': ('block', 'dev')}.get(element.get('type'), (None, None))
    if source is None or option is None or not source.get(attr):
        return []
    return [{'type': 'path', 'option': option, 'path': source.get(attr), 'where': '%s.source.%s' % (where, option)}]


DISK = Kind(
    'disk', 'disk',
    docs=KindDocs(
        hw_class='virtio (bus virtio) or emulated (sata, scsi, ide, usb, fdc)',
        identity='`target` (vda, sdb, ...)',
        hotplug='virtio/scsi/usb; cdrom media live'),
    fields=[
        Field('target', 'target', 'dev', pattern=r'^(vd|sd|hd|xvd|fd)[a-z]{1,3}$',
              pattern_hint='vda, sdb, hdc, fda ...', description='Guest device name; the identity of a disk.'),
        Field('bus', 'target', 'bus', choices=('virtio', 'sata', 'scsi', 'ide', 'usb', 'fdc'), libvirt_fills=True,
              description='Disk bus: virtio (para-virtualized) or sata, scsi, ide, usb, fdc (emulated).'),
        Field('device', '', 'device', choices=('disk', 'cdrom', 'floppy', 'lun'), default='disk',
              description='What the guest sees.'),
        Source('source', [
            Variant('file', 'file', [Field('file', 'source', 'file', absolute_path=True)]),
            Variant('block', 'block', [Field('block', 'source', 'dev', absolute_path=True)]),
            Variant('volume', 'volume', [Field('volume', 'source', 'volume'), Field('pool', 'source', 'pool')],
                    needs=('pool',)),
        ], description='Backing store: exactly one of file, block (absolute paths), or volume with pool.'),
        DriverAttr('format', 'type', driver_name='qemu', choices=('raw', 'qcow2', 'vmdk', 'vdi', 'vpc', 'qed'),
                   libvirt_fills=True, description='Image format of the source.'),
        DriverAttr('cache', 'cache', driver_name='qemu',
                   choices=('default', 'none', 'writethrough', 'writeback', 'directsync', 'unsafe'),
                   description='Host page cache mode.'),
        DriverAttr('io', 'io', driver_name='qemu', choices=('native', 'threads', 'io_uring'),
                   description='Asynchronous I/O mode.'),
        DriverAttr('discard', 'discard', driver_name='qemu', choices=('unmap', 'ignore'),
                   description='Pass discard (TRIM) requests to the image.'),
        Integer('iothread', 'driver', 'iothread', minimum=1, maximum=1024,
                description='virtio-blk: IOThread that serves the disk (the domain must define it).'),
        DriverAttr('error_policy', 'error_policy', driver_name='qemu', choices=('stop', 'report', 'ignore', 'enospace'),
                   description='What a write error does to the guest.'),
        DriverAttr('rerror_policy', 'rerror_policy', driver_name='qemu', choices=('stop', 'report', 'ignore'),
                   description='What a read error does to the guest.'),
        DriverAttr('detect_zeroes', 'detect_zeroes', driver_name='qemu', choices=('off', 'on', 'unmap'),
                   description='Detect writes of zeroes (unmap: discard them).'),
        Flag('shareable', 'shareable', description='Shared between guests (no host caching).'),
        Integer('boot_order', 'boot', 'order', minimum=1, maximum=1000,
                description='Boot priority. It replaces libvirt\'s default <os><boot dev=\'hd\'/>; another <os> boot '
                            'order is refused (remove it with virtdev.libvirt.domain boot: {order: []}).'),
        Text('serial', 'serial', pattern=r'^[A-Za-z0-9_.+\- ]+$', pattern_hint='letters, digits, _ . + - and blanks',
             description='Serial number the guest sees (letters, digits, _ . + - and blanks).'),
        Flag('readonly', 'readonly', description='Present the disk read-only.'),
    ],
    key=ident('target', 'target'),
    device_class=lambda spec: VIRTIO if _disk_bus(spec) == 'virtio' else EMULATED,
    hotplug=lambda spec: _disk_bus(spec) in ('virtio', 'scsi', 'usb'), pci_slot=lambda spec: _disk_bus(spec) == 'virtio',
    # changing the medium of a cdrom or floppy is what a running guest can take
    live_update=lambda old, new: new.get('device') in ('cdrom', 'floppy') and only_differ('source')(old, new),
    required=('target',), limits=(_one_ide_or_fdc_controller,),
    new_attrs={'type': 'file'},  # what libvirt writes for an empty cdrom; a source sets its own type
    removal_consent='disk',  # the guest may still write to it
    host_devices=_disk_source_paths,
    description='A disk, cdrom or floppy drive.',
    example={'kind': 'disk', 'target': 'vdb', 'source': {'file': '/var/lib/libvirt/images/data.qcow2'},
             'format': 'qcow2', 'cache': 'none', 'io': 'native', 'discard': 'unmap'})

CONTROLLER_MODELS = (
    'piix3-uhci', 'piix4-uhci', 'ehci', 'ich9-ehci1', 'ich9-uhci1', 'ich9-uhci2', 'ich9-uhci3', 'vt82c686b-uhci',
    'pci-ohci', 'nec-xhci', 'qemu-xhci', 'qusb1', 'qusb2', 'none',
    'auto', 'buslogic', 'lsilogic', 'lsisas1068', 'vmpvscsi', 'ibmvscsi', 'virtio-scsi', 'lsisas1078',
    'virtio-transitional', 'virtio-non-transitional', 'ncr53c90', 'am53c974', 'dc390',
    'pci-root', 'pcie-root', 'pci-bridge', 'dmi-to-pci-bridge', 'pcie-root-port', 'pcie-switch-upstream-port',
    'pcie-switch-downstream-port', 'pci-expander-bus', 'pcie-expander-bus', 'pcie-to-pci-bridge')

CONTROLLER = Kind(
    'controller', 'controller',
    docs=KindDocs(
        hw_class='emulated, virtio (virtio-scsi, virtio-serial)',
        identity='`type` + `index` (or `type` + `model` without index)',
        hotplug='scsi, virtio-serial'),
    fields=[
        Field('type', '', 'type', choices=('usb', 'scsi', 'pci', 'virtio-serial', 'sata', 'ide', 'fdc', 'ccid'),
              description='Controller type.'),
        Integer('index', '', 'index', minimum=0, maximum=255, libvirt_fills=True,
                description='Controller index; with the type, its identity. When omitted libvirt assigns one '
                            'and the spec matches an existing controller of the same type and model.'),
        Field('model', '', 'model', choices=CONTROLLER_MODELS, libvirt_fills=True,
              description='Controller model: usb piix3-uhci, ich9-ehci1, qemu-xhci...; scsi lsilogic, '
                          'virtio-scsi...; pci pcie-root-port, pci-bridge, pcie-to-pci-bridge...'),
        Integer('ports', '', 'ports', minimum=1, maximum=255, description='USB or virtio-serial port count.'),
        Integer('queues', 'driver', 'queues', minimum=1, maximum=1024, description='virtio-scsi queue count.'),
        Integer('iothread', 'driver', 'iothread', minimum=1, maximum=1024, description='virtio-scsi IOThread.'),
        Integer('master_startport', 'master', 'startport', minimum=0, maximum=255,
                description='USB companion controllers (ich9-uhci*): the first port on the master.'),
        Integer('vectors', '', 'vectors', minimum=1, maximum=1024, description='virtio-serial MSI vectors.'),
        # what libvirt fills in for PCI controllers (formatdomain "Controllers", PCI): the QEMU device it uses
        # for the model, and the chassis and port numbers of root and downstream ports
        Field('model_name', 'model', 'name', pattern=r'^[a-zA-Z0-9_.\-]+$', pattern_hint='pcie-root-port, '
              'pcie-pci-bridge, ...', libvirt_fills=True,
              description='PCI controllers: the QEMU device libvirt uses for the model (filled in by libvirt).'),
        Integer('chassis', 'target', 'chassis', minimum=0, maximum=255, libvirt_fills=True,
                description='PCIe root and downstream ports, pci-bridge: chassis number (filled in by libvirt).'),
        HexInteger('port', 'target', 'port', minimum=0, maximum=255, libvirt_fills=True,
                   description='PCIe root and downstream ports: port number (filled in by libvirt).'),
        Integer('bus_nr', 'target', 'busNr', minimum=0, maximum=254,
                description='pci-expander-bus, pcie-expander-bus: the bus number of the new root bus.'),
        TextInteger('numa_node', 'target/node', minimum=0, maximum=255,
                    description='pci-expander-bus, pcie-expander-bus: guest NUMA node.'),
        OnOff('hotplug', 'target', 'hotplug', description='PCIe ports: allow hotplug into the port (default on).'),
    ],
    # USB2 companion controllers (ich9-uhci*) share their master's index, told apart by start port
    key=lambda spec: (None if spec.get('index') is None
                      else ('type', spec['type'], spec['index'], spec.get('master_startport'))),
    loose=('type', 'model'),
    device_class=lambda spec: (VIRTIO if str(spec.get('model', '')).startswith('virtio')
                               or spec.get('type') == 'virtio-serial' else EMULATED),
    hotplug=lambda spec: spec.get('type') in ('scsi', 'virtio-serial'),
    pci_slot=lambda spec: spec.get('type') in ('scsi', 'virtio-serial'),
    required=('type',), limits=(_xhci_ports,),
    # libvirt adds the first controller of each type a device needs (PCI root, USB, SATA, IDE, SCSI,
    # virtio-serial, ...) and the PCI(e) buses (root ports, bridges) it places devices on
    implicit=lambda element: element.get('index') == '0' or element.get('type') == 'pci',
    description='A USB, SCSI, PCI/PCIe, virtio-serial, SATA or IDE controller.',
    example={'kind': 'controller', 'type': 'pci', 'model': 'pcie-root-port', 'index': 9})


def _first_video_of_a_display(element):
    """libvirt gives a guest with a graphics device a video adapter when it has none."""
    devices = element.getparent()
    return (devices is not None and devices.find('graphics') is not None
            and devices.find('video') is element)


VIDEO = Kind(
    'video', 'video',
    docs=KindDocs(
        hw_class='virtio (virtio-gpu) or emulated (vga, cirrus, bochs, qxl, ramfb)',
        identity='position among videos',
        hotplug='no'),
    fields=[
        Field('model', 'model', 'type', choices=('vga', 'cirrus', 'bochs', 'qxl', 'ramfb', 'virtio', 'none'),
              description='Video adapter: virtio (virtio-gpu) or vga, cirrus, bochs, qxl, ramfb (emulated).'),
        Integer('vram', 'model', 'vram', minimum=1024, maximum=4194304, libvirt_fills=True,
                description='Video memory in KiB.'),
        Integer('heads', 'model', 'heads', minimum=1, maximum=16, libvirt_fills=True, description='Screens.'),
        Integer('ram', 'model', 'ram', minimum=1024, maximum=4194304, libvirt_fills=True,
                description='qxl: secondary bar memory in KiB.'),
        Integer('vgamem', 'model', 'vgamem', minimum=1024, maximum=4194304, libvirt_fills=True,
                description='qxl: VGA framebuffer memory in KiB.'),
        YesNo('primary', 'model', 'primary', libvirt_fills=True, description='The primary adapter.'),
        YesNo('accel3d', 'model/acceleration', 'accel3d', description='virtio-gpu 3D acceleration (virgl).'),
    ],
    key=lambda spec: ('video',), repeatable=True,
    device_class=_virtio_if('model', 'virtio'), hotplug=False, required=('model',), limits=(_video_heads,),
    implicit=_first_video_of_a_display,
    description='A video adapter; the first one declared is matched to the first one defined.',
    example={'kind': 'video', 'model': 'virtio', 'heads': 1})

SOUND = Kind(
    'sound', 'sound',
    docs=KindDocs(
        hw_class='emulated',
        identity='`model`',
        hotplug='no'),
    fields=[Field('model', '', 'model', choices=('ich6', 'ich9', 'ac97', 'es1370', 'sb16', 'usb', 'ich7', 'pcspk'),
                  description='Sound card model.'),
            Field('codec', 'codec', 'type', choices=('duplex', 'micro', 'output'),
                  description='ich6, ich9, ich7: the HDA codec the guest sees.'),
            Integer('audio', 'audio', 'id', minimum=1, maximum=65535,
                    description='The audio backend (kind audio, by id) the card plays through.')],
    key=ident('model', 'model'),
    device_class=lambda spec: EMULATED, hotplug=False, required=('model',),
    description='An emulated sound card.', example={'kind': 'sound', 'model': 'ich9'})


def _audio_of_a_device(element):
    """libvirt adds an audio backend by itself; a spice one goes with the spice display (libvirt refuses
    spice audio without spice graphics)."""
    devices = element.getparent()
    return (element.get('type') != 'spice' or devices is None
            or devices.find("graphics[@type='spice']") is not None)


AUDIO = Kind(
    'audio', 'audio',
    docs=KindDocs(
        hw_class='emulated (the host side of sound cards)',
        identity='`id`',
        hotplug='no'),
    fields=[Integer('id', '', 'id', minimum=1, maximum=65535,
                    description='Audio backend id; sound cards and graphics name it (``<audio id=\'1\'/>``).'),
            Field('type', '', 'type', choices=('none', 'alsa', 'coreaudio', 'dbus', 'jack', 'oss', 'pulseaudio',
                                               'pipewire', 'sdl', 'spice', 'file'),
                  description='Host audio backend.'),
            Field('path', '', 'path', absolute_path=True, description='For type file: the output file.')],
    key=ident('id', 'id'),
    device_class=lambda spec: EMULATED, hotplug=False, required=('id', 'type'),
    implicit=_audio_of_a_device,
    description='An audio backend (where the guest\'s sound goes on the host); libvirt adds one by itself.',
    example={'kind': 'audio', 'id': 1, 'type': 'none'})

WATCHDOG = Kind(
    'watchdog', 'watchdog',
    docs=KindDocs(
        hw_class='emulated',
        identity='`model`',
        hotplug='no'),
    fields=[
        Field('model', '', 'model', choices=('i6300esb', 'ib700', 'itco', 'diag288'), description='Watchdog model.'),
        Field('action', '', 'action', choices=('reset', 'shutdown', 'poweroff', 'pause', 'none', 'dump',
                                               'inject-nmi'), libvirt_fills=True,
              description='What happens when the guest stops feeding the watchdog.'),
    ],
    key=ident('model', 'model'),
    device_class=lambda spec: EMULATED, hotplug=False, required=('model',),
    description='An emulated hardware watchdog.', example={'kind': 'watchdog', 'model': 'i6300esb', 'action': 'reset'})

INPUT = Kind(
    'input', 'input',
    docs=KindDocs(
        hw_class='virtio (bus virtio) or emulated (ps2, usb)',
        identity='`type` + `bus`',
        hotplug='usb, virtio'),
    fields=[
        Field('type', '', 'type', choices=('mouse', 'keyboard', 'tablet', 'passthrough', 'evdev'),
              description='Input device type.'),
        Field('bus', '', 'bus', choices=('ps2', 'usb', 'virtio', 'xen'), libvirt_fills=True,
              description='Bus: virtio (virtio-input) or ps2, usb (emulated).'),
        Field('source_dev', 'source', 'dev', absolute_path=True,
              description='For evdev and passthrough: the host input device (/dev/input/...).'),
    ],
    key=ident('input', 'type', 'bus'),
    loose=('type',),
    device_class=_virtio_if('bus', 'virtio'), hotplug=lambda spec: spec.get('bus') in ('usb', 'virtio'),
    pci_slot=lambda spec: spec.get('bus') == 'virtio',
    required=('type',), implicit=lambda element: element.get('bus') == 'ps2',
    description='A mouse, keyboard or tablet.', example={'kind': 'input', 'type': 'tablet', 'bus': 'usb'})


def _char_fields(target_types, port=True):
    fields = [
        Field('type', '', 'type', choices=CHAR_TYPES, default='pty', description='Host side of the character device.'),
        Field('source_path', 'source', 'path', libvirt_fills=True,
              description='Host path for file, unix and dev types.'),
        Field('source_mode', 'source', 'mode', choices=('bind', 'connect'), libvirt_fills=True,
              description='Unix or TCP socket mode.'),
        Field('source_host', 'source', 'host', description='For tcp and udp: host address.'),
        Field('source_service', 'source', 'service', pattern=r'^[0-9]+$', pattern_hint='a port number',
              description='For tcp and udp: port.'),
        Field('protocol', 'protocol', 'type', choices=('raw', 'telnet', 'telnets', 'tls'), libvirt_fills=True,
              description='For tcp: the wire protocol.'),
        Field('target_type', 'target', 'type', choices=target_types, libvirt_fills=True,
              description='Guest side of the character device.'),
        Field('log_file', 'log', 'file', description='Host file that also receives what the guest writes.'),
        OnOff('log_append', 'log', 'append', description='With log_file: append to it rather than truncate it.'),
    ]
    if port:
        fields.append(Integer('port', 'target', 'port', minimum=0, maximum=255, libvirt_fills=True,
                              description='Guest port number; with the target type, the identity.'))
    return fields


SERIAL = Kind(
    'serial', 'serial',
    docs=KindDocs(
        hw_class='emulated',
        identity='`port`',
        hotplug='usb-serial, pci-serial'),
    fields=_char_fields(('isa-serial', 'usb-serial', 'pci-serial', 'spapr-vio-serial', 'system-serial',
                         'sclp-serial', 'isa-debug')) + [
        Field('target_model', 'target/model', 'name', libvirt_fills=True, description='Guest-side device model.')],
    key=ident('port', 'port'), loose=('target_type',), limits=(_isa_serial_port,),
    device_class=lambda spec: EMULATED, hotplug=lambda spec: spec.get('target_type') in ('usb-serial', 'pci-serial'),
    pci_slot=lambda spec: spec.get('target_type') == 'pci-serial',
    description='A serial port.', example={'kind': 'serial', 'type': 'pty', 'port': 0})

PARALLEL = Kind(
    'parallel', 'parallel',
    docs=KindDocs(
        hw_class='emulated',
        identity='`port`',
        hotplug='no'),
    fields=_char_fields(('isa-parallel',)),
    key=ident('port', 'port'), loose=('type',),
    device_class=lambda spec: EMULATED, hotplug=False,
    description='A parallel port.', example={'kind': 'parallel', 'type': 'file', 'source_path': '/tmp/lp0'})

CONSOLE = Kind(
    # libvirt numbers consoles itself (ports 0, 1, ... in order), so a console is matched by position
    'console', 'console',
    docs=KindDocs(
        hw_class='virtio (hvc) or emulated',
        identity='position per target type',
        hotplug='virtio'),
    fields=_char_fields(('serial', 'virtio', 'xen', 'sclp', 'sclplm'), port=False),
    # libvirt numbers consoles itself, again on every define (a virtio console after the serial one is port 1)
    assigned=(('target', 'port'),),
    key=lambda spec: ('console', spec.get('target_type') or 'serial'), repeatable=True,
    device_class=_virtio_if('target_type', 'virtio'), hotplug=lambda spec: spec.get('target_type') == 'virtio',
    # the serial console libvirt mirrors from the first serial port (it goes with that port)
    implicit=lambda element: (element.find('target') is not None and element.find('target').get('type') == 'serial'
                              and (element.getparent() is None or element.getparent().find('serial') is not None)),
    description='A console: the serial console, or a virtio console (hvc); matched in order of declaration.',
    example={'kind': 'console', 'type': 'pty', 'target_type': 'virtio'})

CHANNEL = Kind(
    'channel', 'channel',
    docs=KindDocs(
        hw_class='virtio',
        identity='`target_name`',
        hotplug='yes'),
    fields=_char_fields(('virtio', 'guestfwd', 'xen'), port=False) + [
        Field('target_name', 'target', 'name', description='Channel name; its identity (org.qemu.guest_agent.0, '
                                                           'com.redhat.spice.0, ...).')],
    key=ident('name', 'target_name'),
    device_class=lambda spec: VIRTIO, hotplug=True, required=('target_name',),
    new_attrs={'type': 'unix'},
    description='A virtio-serial channel (QEMU guest agent, SPICE agent).',
    example={'kind': 'channel', 'type': 'unix', 'target_type': 'virtio', 'target_name': 'org.qemu.guest_agent.0'})

TPM = Kind(
    'tpm', 'tpm',
    docs=KindDocs(
        hw_class='emulated (swtpm) or passthrough',
        identity='one per guest',
        hotplug='no'),
    fields=[
        Field('model', '', 'model', choices=('tpm-tis', 'tpm-crb', 'tpm-spapr', 'spapr-tpm-proxy'), libvirt_fills=True,
              description='TPM frontend.'),
        Field('backend', 'backend', 'type', choices=('emulator', 'passthrough'), default='emulator',
              description='emulator (swtpm) or passthrough of a host TPM.'),
        Field('version', 'backend', 'version', choices=('1.2', '2.0'), libvirt_fills=True, description='TPM version.'),
        Field('device_path', 'backend/device', 'path', description='Host TPM for passthrough, e.g. /dev/tpm0.'),
    ],
    key=lambda spec: ('tpm',),
    device_class=lambda spec: PASSTHROUGH if spec.get('backend') == 'passthrough' else EMULATED, hotplug=False,
    description='A TPM (emulated by swtpm, or the host TPM passed through).',
    example={'kind': 'tpm', 'model': 'tpm-crb', 'backend': 'emulator', 'version': '2.0'})

PANIC = Kind(
    'panic', 'panic',
    docs=KindDocs(
        hw_class='emulated',
        identity='`model`',
        hotplug='no'),
    fields=[Field('model', '', 'model', choices=('isa', 'pseries', 'hyperv', 's390', 'pvpanic'),
                  description='Panic notifier model.')],
    key=ident('model', 'model'),
    device_class=lambda spec: EMULATED, hotplug=False, required=('model',),
    description='A guest panic notifier.', example={'kind': 'panic', 'model': 'isa'})

SMARTCARD = Kind(
    'smartcard', 'smartcard',
    docs=KindDocs(
        hw_class='emulated',
        identity='`mode`',
        hotplug='no'),
    fields=[Field('mode', '', 'mode', choices=('host', 'host-certificates', 'passthrough'), description='Mode.'),
            Field('type', '', 'type', choices=CHAR_TYPES, description='For passthrough: the host channel type.')],
    key=ident('mode', 'mode'),
    device_class=lambda spec: EMULATED, hotplug=False, required=('mode',),
    description='A CCID smartcard reader.', example={'kind': 'smartcard', 'mode': 'passthrough', 'type': 'spicevmc'})

REDIRDEV = Kind(
    'redirdev', 'redirdev',
    docs=KindDocs(
        hw_class='emulated',
        identity='position among redirections',
        hotplug='yes'),
    fields=[Field('type', '', 'type', choices=('spicevmc', 'tcp'), description='Redirection channel.'),
            Field('bus', '', 'bus', choices=('usb',), default='usb', description='Bus.'),
            Field('host', 'source', 'host', description='For tcp: the usbredir server host.'),
            Field('service', 'source', 'service', description='For tcp: the usbredir server port.'),
            Field('source_mode', 'source', 'mode', choices=('bind', 'connect'), libvirt_fills=True,
                  description='For tcp: socket mode.'),
            Field('protocol', 'protocol', 'type', choices=('raw', 'telnet', 'telnets', 'tls'), libvirt_fills=True,
                  description='For tcp: the wire protocol.'),
            Integer('boot_order', 'boot', 'order', minimum=1, maximum=1000, description='Boot priority.')],
    key=lambda spec: ('redir', spec.get('type'), spec.get('host'), spec.get('service')), repeatable=True,
    device_class=lambda spec: EMULATED, hotplug=True, required=('type',),
    description='USB redirection (SPICE or usbredir over TCP); repeat the entry for several channels.',
    example={'kind': 'redirdev', 'type': 'spicevmc'})


def _vnc_password_length(spec):
    """libvirt's QEMU driver refuses a VNC password longer than 8 characters (VNC authentication uses 8)."""
    password = spec.get('password')
    if spec.get('type') == 'vnc' and password and password != _secrets.PLACEHOLDER and len(password) > 8:
        return 'password', ('a VNC password has at most 8 characters (libvirt refuses a longer one); this one has %d'
                            % len(password))
    return None


GRAPHICS = Kind(
    'graphics', 'graphics',
    docs=KindDocs(
        hw_class='emulated',
        identity='`type`',
        hotplug='password live'),
    fields=[Field('type', '', 'type', choices=('vnc', 'spice', 'egl-headless', 'dbus', 'sdl'), description='Protocol.'),
            GraphicsListen('listen', '', 'listen', description='Listen address.'),
            GraphicsListenType('listen_type', 'listen', 'type', choices=('none', 'address'), libvirt_fills=True,
                               description='none: no network listener (SPICE with a local client only; libvirt '
                                           'writes it for a SPICE display without port); address (the default): '
                                           'listen on an address.'),
            GraphicsPort('port', '', 'port', minimum=-1, maximum=65535, libvirt_fills=True,
                         description='TCP port; -1 with autoport.'),
            YesNo('autoport', '', 'autoport', libvirt_fills=True, description='Pick a free port at start.'),
            Field('image_compression', 'image', 'compression',
                  choices=('auto_glz', 'auto_lz', 'quic', 'glz', 'lz', 'off'),
                  description='SPICE: image compression (off suits a local client).'),
            YesNo('gl', 'gl', 'enable', description='SPICE: OpenGL acceleration (virgl).'),
            SecretAttr('password', '', 'passwd',
                       description="Console password (VNC: at most 8 characters). Never shown: results show "
                                   "C(%s) when a password is set, and that value given back keeps the current "
                                   "password; an empty string removes it; omitted, the current password is kept "
                                   "under every state. Changed live on a running guest." % _secrets.PLACEHOLDER)],
    key=ident('type', 'type'),
    device_class=lambda spec: EMULATED, hotplug=False, required=('type',),
    live_update=only_differ('password'), implied=(('listen', {'type': 'address'}),), live_fills=('listen',),
    limits=(_vnc_password_length, _listen_none_has_no_address, _port_agrees_with_autoport),
    description='A graphical console (VNC, SPICE).',
    example={'kind': 'graphics', 'type': 'vnc', 'listen': '127.0.0.1', 'autoport': True})

MEMBALLOON = Kind(
    'memballoon', 'memballoon',
    docs=KindDocs(
        hw_class='virtio',
        identity='one per guest',
        hotplug='no'),
    fields=[Field('model', '', 'model', choices=('virtio', 'virtio-transitional', 'virtio-non-transitional', 'none'),
                  default='virtio', description='Balloon model; none removes it.'),
            Integer('stats_period', 'stats', 'period', minimum=0, maximum=86400,
                    description='Seconds between guest memory statistics updates.'),
            OnOff('autodeflate', '', 'autodeflate', description='Deflate before the guest runs out of memory.'),
            OnOff('free_page_reporting', '', 'freePageReporting',
                  description='Guest reports free pages so the host can reclaim them.')],
    key=lambda spec: ('memballoon',),
    device_class=_virtio_if('model', 'virtio', 'virtio-transitional', 'virtio-non-transitional'), hotplug=False,
    implicit=_always,
    description='The memory balloon (one per guest).',
    example={'kind': 'memballoon', 'model': 'virtio', 'stats_period': 10, 'free_page_reporting': True})

VSOCK = Kind(
    'vsock', 'vsock',
    docs=KindDocs(
        hw_class='virtio',
        identity='one per guest',
        hotplug='yes'),
    fields=[VsockCid('cid', 'cid', None, default='auto', description="Guest context id: 'auto' or a number >= 3.")],
    key=lambda spec: ('vsock',), fixed={'model': 'virtio'},
    device_class=lambda spec: VIRTIO, hotplug=True, pci_slot=True,
    description='A virtio-vsock socket device.', example={'kind': 'vsock', 'cid': 'auto'})

FILESYSTEM = Kind(
    'filesystem', 'filesystem',
    docs=KindDocs(
        hw_class='virtio',
        identity='`target`',
        hotplug='virtiofs'),
    fields=[Field('driver', 'driver', 'type', choices=('virtiofs', 'path', 'handle', 'loop', 'nbd', 'ploop'),
                  description='virtiofs, or path (9p).'),
            Source('source', [Variant('dir', 'mount', [Field('dir', 'source', 'dir', absolute_path=True)])],
                   description='Host directory to share: dir (an absolute path).'),
            Field('target', 'target', 'dir', description='Mount tag in the guest; the identity.'),
            Field('accessmode', '', 'accessmode', choices=('passthrough', 'mapped', 'squash'), libvirt_fills=True,
                  description='9p permission model.'),
            Flag('readonly', 'readonly', description='Share read-only.')],
    key=ident('target', 'target'),
    device_class=lambda spec: VIRTIO, hotplug=lambda spec: spec.get('driver') == 'virtiofs', pci_slot=True,
    required=('source', 'target'),
    description='A shared host directory (virtiofs needs shared memory backing; 9p does not).',
    example={'kind': 'filesystem', 'driver': 'virtiofs', 'source': {'dir': '/srv/share'}, 'target': 'share'})

IOMMU = Kind(
    'iommu', 'iommu',
    docs=KindDocs(
        hw_class='virtio or emulated (intel)',
        identity='one per guest',
        hotplug='no'),
    fields=[Field('model', '', 'model', choices=('intel', 'virtio', 'smmuv3'), description='vIOMMU model.'),
            OnOff('intremap', 'driver', 'intremap', description='Interrupt remapping (intel).'),
            OnOff('caching_mode', 'driver', 'caching_mode', description='Caching mode (intel; needed for VFIO).')],
    key=lambda spec: ('iommu',),
    device_class=_virtio_if('model', 'virtio'), hotplug=False, required=('model',),
    description='A virtual IOMMU (q35 for intel).', example={'kind': 'iommu', 'model': 'virtio'})

RNG = Kind(
    'rng', 'rng',
    docs=KindDocs(
        hw_class='virtio',
        identity='model + backend type',
        hotplug='yes'),
    fields=[
        Field('model', '', 'model', choices=('virtio', 'virtio-transitional', 'virtio-non-transitional'),
              default='virtio', description='RNG device model.'),
        RngBackend('backend', 'backend', choices=('/dev/urandom', '/dev/random', 'builtin'), default='/dev/urandom',
                   description='Host entropy source.'),
        Integer('rate_bytes', 'rate', 'bytes', minimum=1, maximum=2 ** 31, description='Rate limit: bytes per period.'),
        Integer('rate_period', 'rate', 'period', minimum=1, maximum=2 ** 31, description='Rate limit period in ms.'),
    ],
    key=lambda spec: ('rng', spec.get('model'), _rng_backend_type(spec.get('backend'))),
    device_class=lambda spec: VIRTIO, hotplug=True, pci_slot=True,
    description='A para-virtualized random number generator (one per model and backend type).',
    example={'kind': 'rng', 'backend': '/dev/urandom', 'rate_bytes': 1024, 'rate_period': 1000})


MEMORY = Kind(
    'memory', 'memory',
    docs=KindDocs(
        hw_class='virtio (virtio-pmem, virtio-mem) or emulated (dimm, nvdimm)',
        identity='model + backing file, then position',
        hotplug='dimm, virtio-mem'),
    fields=[Field('model', '', 'model', choices=('dimm', 'nvdimm', 'virtio-pmem', 'virtio-mem'),
                  description='Memory device: virtio-pmem, virtio-mem (para-virtualized) or dimm, nvdimm (emulated).'),
            Field('access', '', 'access', choices=('shared', 'private'), libvirt_fills=True,
                  description='Whether writes reach the backing file (virtio-pmem, nvdimm need shared).'),
            Text('source_path', 'source/path', absolute_path=True,
                 description='Backing file (absolute path) of a virtio-pmem or nvdimm device.'),
            SizeMiB('size_mib', 'target/size', minimum=1, maximum=16 * 1024 * 1024, description='Size in MiB.'),
            TextInteger('node', 'target/node', minimum=0, maximum=255, description='Guest NUMA node (dimm, nvdimm).')],
    key=lambda spec: ('memory', spec.get('model'), spec.get('source_path')), repeatable=True,
    device_class=_virtio_if('model', 'virtio-pmem', 'virtio-mem'),
    hotplug=lambda spec: spec.get('model') in ('dimm', 'virtio-mem'),
    pci_slot=lambda spec: spec.get('model') in ('virtio-mem', 'virtio-pmem'),
    required=('model', 'size_mib'),
    description='A memory device: persistent memory (virtio-pmem, nvdimm) or hot-pluggable RAM (dimm, '
                'virtio-mem); the domain needs <maxMemory slots=...> and a NUMA cell.',
    example={'kind': 'memory', 'model': 'virtio-pmem', 'access': 'shared', 'source_path': '/var/lib/pmem/guest0',
             'size_mib': 128})


def _usb_key(spec):
    """vendor:product, plus bus.device when given (the same model plugged twice)."""
    if spec.get('address') is None and (spec.get('vendor') is None or spec.get('product') is None):
        return None
    return ('usb', spec.get('vendor'), spec.get('product'), spec.get('address'))


def _alone_with_mapping(exclusive):
    """A limit: ``mapping`` names the host device, so the options it resolves to are not given with it."""
    def limit(spec):
        given = [option for option in exclusive if option in spec]
        if 'mapping' in spec and given:
            return given[0], 'does not go with mapping (the mapping gives it on each host)'
        return None
    return limit


def _address_or_mapping(spec):
    """A hostdev pci names its host device by address or by mapping, exactly one."""
    if 'mapping' not in spec and 'address' not in spec:
        return 'address', 'hostdev type=pci requires option address (or mapping)'
    return _alone_with_mapping(('address',))(spec)


def _uuid_or_mapping(spec):
    """A hostdev mdev names its mediated device by uuid (with its model) or by an mdev mapping, which gives the
    uuid on each host and the model from the mdev type unless it is given."""
    if 'mapping' in spec:
        return _alone_with_mapping(('uuid',))(spec)
    for option in ('uuid', 'model'):
        if option not in spec:
            return option, 'hostdev type=mdev requires option %s (or mapping)' % option
    return None


# the hostdev types QEMU gives a PCI slot of their own: a PCI device, and a mediated device of the vfio-pci API
_HOSTDEV_PCI_SLOT = {'pci': True, 'mdev': lambda spec: spec.get('model') == 'vfio-pci'}


def _hostdev(subtype, fields, key, required, description, example, fixed=None, limits=()):
    return Kind('hostdev', 'hostdev', fields=[Field('type', '', 'type', choices=(subtype,), default=subtype,
                                                    description='Host device type.')] + fields,
                key=key, device_class=lambda spec: PASSTHROUGH, hotplug=True,
                pci_slot=_HOSTDEV_PCI_SLOT.get(subtype, False),
                host_devices=_ids.host_device_requests,
                fixed=dict({'mode': 'subsystem', 'type': subtype}, **(fixed or {})), required=required,
                label='hostdev type=%s' % subtype, description=description, example=example, limits=limits)


HOSTDEV = KindFamily('hostdev', 'hostdev', 'type', default='pci', docs=KindDocs(
    hw_class='passthrough',
    identity='pci: `address` (host `DDDD:BB:SS.F`); usb: `vendor` + `product` (+ `address` BUS.DEVICE); mdev: '
             '`uuid`; scsi: `adapter` + `address`',
    hotplug='yes'), members=[
    _hostdev('pci', [
        PciAddress('address', 'source/address', description='Host PCI address DDDD:BB:SS.F.'),
        YesNo('managed', '', 'managed', default=True,
              description='Let libvirt detach the device from its host driver and reattach it.'),
        Field('rom_file', 'rom', 'file', absolute_path=True,
              description='Option ROM image (absolute path) to expose instead of the device\'s own.'),
        YesNo('rom_enabled', 'rom', 'enabled', description='Expose an option ROM at all.'),
        OnOff('rom_bar', 'rom', 'bar', description='Map the option ROM into the guest\'s memory (off breaks hotplug).'),
        Integer('boot_order', 'boot', 'order', minimum=1, maximum=1000, description='Boot priority.'),
        PciAddress('guest_address', 'address', pci_type=True, libvirt_fills=True,
                   description='Where the guest sees the device (DDDD:BB:SS.F); libvirt chooses when omitted. '
                               'Give the functions of one host device the same guest slot to keep them one '
                               'multi-function device (a GPU and its audio function).'),
        OnOff('multifunction', 'address', 'multifunction', libvirt_fills=True,
              description='On function 0 of a guest slot shared by several functions.'),
        ResolvedOnHost('mapping', MAPPING_FIELD,
                       description='Instead of address: the name of a device mapping (O(mappings)), resolved on the '
                                   'host to a device the guest holds or a free one (docs/device_mappings.md).'),
    ], key=ident('pci', 'address'), required=(), limits=(_address_or_mapping,),
        description='A host PCI device (or SR-IOV VF) passed through with VFIO.',
        example={'kind': 'hostdev', 'type': 'pci', 'address': '0000:65:00.0', 'managed': True,
                 'guest_address': '0000:00:10.0', 'multifunction': True}),
    _hostdev('usb', [
        HexId('vendor', 'source/vendor', 'id', description='USB vendor id, e.g. 0x046d.'),
        HexId('product', 'source/product', 'id', description='USB product id.'),
        NumberTuple('address', 'source/address', ('bus', 'device'), '.',
                    description='USB BUS.DEVICE, when vendor:product is ambiguous or not known.'),
        ResolvedOnHost('mapping', MAPPING_FIELD,
                       description='Instead of vendor/product: the name of a usb device mapping (O(mappings)).'),
        YesNo('managed', '', 'managed', libvirt_fills=True, description='Let libvirt detach the device from its '
              'host driver (libvirt writes no for USB, SCSI and mdev devices).'),
        Integer('boot_order', 'boot', 'order', minimum=1, maximum=1000, description='Boot priority.'),
    ], key=_usb_key, required=(), limits=(_alone_with_mapping(('vendor', 'product', 'address')),),
        description='A host USB device passed through.',
        example={'kind': 'hostdev', 'type': 'usb', 'vendor': '0x046d', 'product': '0xc52b'}),
    _hostdev('mdev', [
        Uuid('uuid', 'source/address', 'uuid',
             description='UUID of the mediated device (any case; stored lower case); its identity.'),
        Field('model', '', 'model', choices=('vfio-pci', 'vfio-ccw', 'vfio-ap'), description='mdev device API.'),
        OnOff('display', '', 'display', description='vGPU display (vfio-pci).'),
        OnOff('ramfb', '', 'ramfb', description='Boot display through ramfb (vfio-pci).'),
        YesNo('managed', '', 'managed', libvirt_fills=True, description='Written by libvirt (no).'),
        ResolvedOnHost('mapping', MAPPING_FIELD,
                       description='Instead of uuid: the name of an mdev device mapping (O(mappings)), resolved on '
                                   'the host to an existing mdev of its type the guest holds or a free one; model '
                                   'defaults to the type\'s device_api (docs/device_mappings.md).'),
    ], key=ident('mdev', 'uuid'), required=(), limits=(_uuid_or_mapping,),
        description='A mediated device (vGPU, vfio-ccw, vfio-ap).',
        example={'kind': 'hostdev', 'type': 'mdev', 'model': 'vfio-pci',
                 'uuid': 'c2177883-f1bb-47f0-914d-32a22e3a8804'}),
    _hostdev('scsi', [
        Field('adapter', 'source/adapter', 'name', pattern=r'^scsi_host[0-9]+$', pattern_hint='scsi_hostN',
              description='Host SCSI adapter (scsi_hostN).'),
        NumberTuple('address', 'source/address', ('bus', 'target', 'unit'), ':',
                    description='SCSI BUS:TARGET:UNIT on the adapter.'),
        Flag('readonly', 'readonly', description='Read-only LUN.'),
        YesNo('managed', '', 'managed', libvirt_fills=True, description='Written by libvirt (no).'),
    ], key=ident('scsi', 'adapter', 'address'), required=('adapter', 'address'),
        description='A host SCSI LUN passed through.',
        example={'kind': 'hostdev', 'type': 'scsi', 'adapter': 'scsi_host0', 'address': '0:0:1'}),
], description='A host device passed through: pci (VFIO), usb, mdev or scsi.')

HUB = Kind(
    'hub', 'hub',
    docs=KindDocs(hw_class='emulated', identity='position among hubs', hotplug='no'),
    fields=[Field('type', '', 'type', choices=('usb',), default='usb', description='Hub type.')],
    key=lambda spec: ('hub', spec.get('type')), repeatable=True,
    device_class=lambda spec: EMULATED, hotplug=False,
    description='A USB hub (more ports on a USB bus); repeat the entry for several hubs.',
    example={'kind': 'hub', 'type': 'usb'})

SHMEM = Kind(
    'shmem', 'shmem',
    docs=KindDocs(hw_class='emulated', identity='`name`', hotplug='no'),
    fields=[Field('name', '', 'name', pattern=r'^[A-Za-z0-9_.\-]+$', pattern_hint='letters, digits, _ . -',
                  description='Name of the shared memory region on the host; its identity.'),
            Field('model', 'model', 'type', choices=('ivshmem', 'ivshmem-plain', 'ivshmem-doorbell'),
                  libvirt_fills=True, description='Device model.'),
            SizeMiB('size_mib', 'size', unit='M', minimum=1, maximum=16 * 1024 * 1024, libvirt_fills=True,
                    description='Size in MiB (a power of two).')],
    key=ident('name', 'name'),
    device_class=lambda spec: EMULATED, hotplug=False, required=('name',),
    description='Shared memory between guests and the host (ivshmem).',
    example={'kind': 'shmem', 'name': 'ivshmem0', 'model': 'ivshmem-plain', 'size_mib': 4})

KINDS = {kind.name: kind for kind in (
    INTERFACE, DISK, CONTROLLER, VIDEO, SOUND, AUDIO, WATCHDOG, INPUT, SERIAL, PARALLEL, CONSOLE, CHANNEL, TPM, PANIC,
    SMARTCARD, REDIRDEV, GRAPHICS, MEMBALLOON, VSOCK, FILESYSTEM, IOMMU, RNG, MEMORY, HOSTDEV, HUB, SHMEM)}
KINDS_BY_TAG = {kind.tag: kind for kind in KINDS.values()}


def _attrs(*names):
    """Identity from attributes at paths: _attrs('@type', 'target@port')."""
    def key(element):
        values = []
        for name in names:
            path, _sep, attr = name.rpartition('@')
            node = _xml.child(element, path)
            values.append(None if node is None else node.get(attr))
        return tuple(values)
    return key


class Untyped:
    """A device element without typed options (only ``kind: xml`` writes it): identified by attributes and
    matched by position among equals (repeatable); always emulated, never hot-plugged."""

    def __init__(self, tag, identity_attrs, implicit=_never):
        self.tag = tag
        self.name = tag
        self.identity_attrs = identity_attrs
        self.docs = KindDocs('emulated', ' + '.join('`%s`' % attr.lstrip('@') for attr in identity_attrs)
                             + (', then position' if identity_attrs else 'position'), 'no')
        self.identity = _attrs(*identity_attrs)
        self.implicit = implicit
        self.removal_consent = None
        self.host_devices = _no_host_devices
        self.derived = None

    def element_identity(self, element):
        return (element.tag, 'attrs') + self.identity(element), True

    def class_of(self, _element):
        return EMULATED

    def consent_to_remove(self, _element):
        return None


UNTYPED = {row.tag: row for row in (
    Untyped('crypto', ('@model', '@type')),
    Untyped('pstore', ('@backend',)),
    Untyped('redirfilter', ()),
)}
# Every device element libvirt has: the typed kinds and the untyped rows, one row per element tag.
ROWS_BY_TAG = dict(UNTYPED, **KINDS_BY_TAG)
# Elements of <devices> that are not devices: never matched, added or removed.
NOT_DEVICES = frozenset(('emulator',))
DEVICE_TAGS = frozenset(ROWS_BY_TAG)


def kind_of_element(element):
    """The typed kind (or family member) that describes an element, or None."""
    kind = KINDS_BY_TAG.get(element.tag)
    return kind.kind_for_element(element) if kind is not None else None


def element_key(element):
    """(base identity, repeatable) of an existing device element: its row's identity, else its content."""
    row = ROWS_BY_TAG.get(element.tag)
    found = row.element_identity(element) if row is not None else None
    if found is not None:
        return found
    return (element.tag, 'xml', _xml.canonical(element, ignore=LIBVIRT_OWNED)), True


def element_class(element):
    row = ROWS_BY_TAG.get(element.tag)
    return row.class_of(element) if row is not None else EMULATED


def is_implicit(element):
    """A device libvirt adds by itself (the table's implicit column): overridden leaves it in place."""
    row = ROWS_BY_TAG.get(element.tag)
    return row is not None and bool(row.implicit(element))


def removal_consent(element):
    """What allow_live_removal must name to remove the element from a running guest ('disk',
    'passthrough'), or None when no consent is needed."""
    row = ROWS_BY_TAG.get(element.tag)
    return row.consent_to_remove(element) if row is not None else None


def takes_pci_slot(element):
    """Whether plugging the device into a running guest (or unplugging it) needs a PCI slot there: its
    <address> says so when it has one, else its row's pci_slot column (elements without typed options are
    never hot-plugged)."""
    address = element.find('address')
    if address is not None and address.get('type') is not None:
        return address.get('type') == 'pci'
    kind = kind_of_element(element)
    return kind is not None and bool(kind.pci_slot(Reading(kind, element)))


# --- what a running guest's PCI topology lets QEMU hot-plug (docs/domain_devices.md, "Running guests") --------

I440FX, Q35 = 'i440fx', 'q35'
X86 = ('x86_64', 'i686')
# controllers of a free slot libvirt can hot-plug a device into on q35 (libvirt's formatdomain, "Controllers":
# a pcie-root-port or a downstream port holds one device; hotplug='off' on one keeps devices out)
PCIE_PORTS = ('pcie-root-port', 'pcie-switch-downstream-port')
# controllers with slots for hot-plugged conventional PCI devices (QEMU docs/pcie.txt: SHPC or ACPI hot-plug)
PCI_BRIDGES = ('pci-bridge', 'pcie-to-pci-bridge')


def _number(value):
    """A PCI address attribute as libvirt reads it (``_ids.c_uint``), or None."""
    try:
        return _ids.c_uint(value, 'address') if value is not None else None
    except _ids.IdError:
        return None


class PciTopology:
    """What a running guest's live XML says about its PCI buses: machine family, ACPI, PCI controllers and
    the buses devices sit on."""

    def __init__(self, domain, devices):
        os_type = domain.find('os/type')
        self.arch = os_type.get('arch') if os_type is not None else None
        self.machine = (os_type.get('machine') or '') if os_type is not None else ''
        # libvirt's machine names: pc, pc-i440fx-X.Y (and the old pc-0.N, pc-1.N) for i440fx; q35, pc-q35-X.Y
        if self.arch not in X86 or not self.machine:
            self.family = None
        elif self.machine == 'q35' or self.machine.startswith('pc-q35-'):
            self.family = Q35
        elif self.machine == 'pc' or self.machine.startswith('pc-'):
            self.family = I440FX
        else:
            self.family = None
        self.acpi = domain.find('features/acpi') is not None
        self.controllers = [element for element in devices
                            if element.tag == 'controller' and element.get('type') == 'pci']
        self.used_buses = set()
        for element in devices:
            address = element.find('address')
            if address is not None and address.get('type') == 'pci':
                self.used_buses.add(_number(address.get('bus')))

    def models(self, *models):
        return [element for element in self.controllers if element.get('model') in models]

    def free_ports(self):
        return [port for port in self.models(*PCIE_PORTS)
                if _hotplug_on(port) and _number(port.get('index')) not in self.used_buses]


def _hotplug_on(controller):
    target = controller.find('target')
    return target is None or target.get('hotplug') != 'off'


def _root_bus(element):
    """Hot-plugged where libvirt chooses, or given an address on bus 0 (the root bus)."""
    address = element.find('address')
    return address is None or _number(address.get('bus')) == 0


def _unaddressed(element):
    return element.find('address') is None


class PciLimit:
    """One row of PCI_HOTPLUG_LIMITS: a guest whose topology ``holds`` cannot take the live ``ops`` of a device
    that takes a PCI slot where ``covers`` says (its element); ``reason`` is formatted with the topology."""

    def __init__(self, name, holds, ops, covers, reason):
        self.name = name
        self.holds = holds
        self.ops = ops
        self.covers = covers
        self.reason = reason


# What keeps a running guest from taking a PCI device it did not boot with: the first row that holds names the
# reason, and the change is planned for the next start (waiting_for_restart) without a live attempt, in check
# mode as on a real run. A row holds only when libvirt or QEMU is sure to refuse: where either might still find a
# slot (a PCI bridge), the hot-plug is tried and a refusal reported as it happens.
PCI_HOTPLUG_LIMITS = (
    # QEMU hot-plugs PCI devices on i440fx only through ACPI (PIIX4 PM, hw/acpi/piix4.c); libvirt leaves it out
    # (acpi=off) when the definition has no <features><acpi/>
    PciLimit('i440fx-no-acpi', lambda topo: topo.family == I440FX and not topo.acpi, ('attach', 'detach'),
             _root_bus, 'its machine type %(machine)s has no ACPI (<features><acpi/></features>), which PCI '
             'hot-plug on i440fx needs'),
    # libvirt's formatdomain: <target hotplug='off'/> on the pci-root controller of a pc machine turns hot-plug
    # on the root bus off; without a pci-bridge no slot is left for a device
    PciLimit('i440fx-root-hotplug-off',
             lambda topo: topo.family == I440FX and any(not _hotplug_on(root) for root in topo.models('pci-root'))
             and not topo.models('pci-bridge'),
             ('attach', 'detach'), _root_bus, "its pci-root controller has hotplug='off' and it has no pci-bridge"),
    # q35 has no hot-plug on pcie.0: a new device needs a free pcie-root-port (or switch downstream port), which
    # libvirt adds at define time only (libvirt's pci-hotplug docs); without a PCI bridge there is no other slot
    PciLimit('q35-no-free-port',
             lambda topo: topo.family == Q35 and not topo.free_ports() and not topo.models(*PCI_BRIDGES),
             ('attach',), _unaddressed, 'its machine type %(machine)s has no free pcie-root-port with hotplug on '
             '(libvirt adds root ports only when the guest is defined)'),
)


def pci_hotplug_limits(domain, devices):
    """The rows of PCI_HOTPLUG_LIMITS that hold for a running guest (its live <domain> and device elements),
    each with its reason: [(row, reason)]."""
    topology = PciTopology(domain, devices)
    if topology.family is None:
        return []
    return [(row, row.reason % {'machine': topology.machine}) for row in PCI_HOTPLUG_LIMITS if row.holds(topology)]


def pci_hotplug_refusal(limits, op, element):
    """Why a guest with these ``limits`` (pci_hotplug_limits) cannot take the live ``op`` of ``element``, or None."""
    if not limits or not takes_pci_slot(element):
        return None
    return next((reason for row, reason in limits if op in row.ops and row.covers(element)), None)


def host_devices(element, where):
    """The passthrough guards' requests for the host devices an element takes (the table's host_devices
    column); IdError (naming ``where``) when an address cannot be read the way libvirt reads it."""
    row = ROWS_BY_TAG.get(element.tag)
    return row.host_devices(element, where) if row is not None else []


def redact(element):
    """The element with its secrets (graphics passwords) shown as the placeholder, for results and diffs."""
    kind = kind_of_element(element)
    return kind.redact(element) if kind is not None else element


def secrets_of(element):
    """{option: value} of the secrets an element carries (raw attribute values, placeholder included)."""
    kind = kind_of_element(element)
    if kind is None or not kind.secret_fields:
        return {}
    found = {field.option: field.read(element) for field in kind.secret_fields}
    return {option: value for option, value in found.items() if value is not None}


def remember_secrets(elements):
    """Note every secret the elements carry, so that outputs mask them (see _secrets)."""
    for element in elements:
        for value in secrets_of(element).values():
            _secrets.remember(value)


def settle_secrets(new, existing, where):
    """Resolve the secrets of a raw-XML device about to replace ``existing`` (None: a new device).

    As for the typed option: a secret attribute that is absent or the placeholder keeps the current
    secret, an empty one removes it, any other value sets it. The placeholder on a device that has no
    secret is an error: a console would otherwise silently lose its password.
    """
    kind = kind_of_element(new)
    for field in kind.secret_fields if kind is not None else ():
        given = field.read(new)
        current = field.read(existing) if existing is not None else None
        if given == _secrets.REMOVE:
            field.clear(new)
        elif given in (None, _secrets.PLACEHOLDER) and current is not None:
            _xml.child(new, field.path, create=True).set(field.attr, current)
        elif given == _secrets.PLACEHOLDER:
            raise SpecError(where, 'the %s %r means "keep the current %s", but %s has none; give the %s itself '
                            '(or leave it out)' % (field.option, _secrets.PLACEHOLDER, field.option,
                                                   'this new device' if existing is None else 'the device',
                                                   field.option))
    return new


def all_kinds():
    """Every concrete kind, family members included (for docs and tests)."""
    for kind in KINDS.values():
        if isinstance(kind, KindFamily):
            yield from kind.members.values()
        else:
            yield kind


def device_argument_spec():
    """The union of every kind's options, as Ansible suboptions (types only).

    Choices, defaults and requirements differ per kind, so they are checked by ``Kind.normalize``,
    which names the kind in its messages; the argspec only converts types.
    """
    spec = {
        'kind': {'type': 'str', 'required': True, 'choices': sorted(KINDS) + ['xml']},
        'xml': {'type': 'str'},
        'class': {'type': 'str'},
    }
    for kind in all_kinds():
        for option, field in kind.fields.items():
            entry = {'type': field.value_type}
            if field.secret:
                entry['no_log'] = True
            if isinstance(field, Source):
                entry['options'] = {key: {'type': value_type} for key, value_type in field.suboptions().items()}
            previous = spec.get(option)
            if previous is not None and previous['type'] != entry['type']:
                raise TypeError('option %s has type %s in one kind and %s in another'
                                % (option, previous['type'], entry['type']))
            if previous is not None and 'options' in entry:
                entry['options'].update(previous.get('options', {}))
            spec[option] = entry
    return spec
