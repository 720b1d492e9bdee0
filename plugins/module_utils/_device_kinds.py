# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The device kinds: one table row per kind (pure, no libvirt, no Ansible).

A row says which element it manages, which options it has (fields), how a device is identified (the
key that matches a declared device to an existing one), which class of hardware it is (emulated,
virtio, passthrough) and whether libvirt/QEMU can hot-plug it. Devices of element types without a
typed row are still matched and kept, by ``ELEMENT_KEYS`` below, and handled as raw ``xml``.
"""

from __future__ import annotations

import hashlib

from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import (
    Field, Flag, PciAddress, Source, SpecError, Text, Variant, YesNo,
)

EMULATED, VIRTIO, PASSTHROUGH = 'emulated', 'virtio', 'passthrough'
MAC_RE = r'^[0-9a-f]{2}(:[0-9a-f]{2}){5}$'
# libvirt's own children of every device: never ours to set, never a reason for a change
LIBVIRT_OWNED = ('address', 'alias')


class Kind:
    """A typed device kind. ``key`` maps a normalized spec to its identity tuple."""

    def __init__(self, name, tag, fields, key, device_class, hotplug, fixed=None, new_attrs=None, required=(),
                 description=''):
        self.name = name
        self.tag = tag
        self.fields = {field.option: field for field in fields}
        self.key = key
        self.device_class = device_class
        self.hotplug = hotplug
        self.fixed = fixed or {}  # attributes every device of this kind carries (hostdev mode=...)
        self.new_attrs = new_attrs or {}  # starting attributes of a new element, which fields may override
        self.required = required
        self.description = description

    def normalize(self, spec, where):
        """Validate a user spec; return only this kind's options, normalized, with defaults."""
        foreign = sorted(option for option, value in spec.items()
                         if value is not None and option not in self.fields and option not in ('kind', 'class'))
        if foreign:
            raise SpecError(where, 'option(s) %s do not belong to kind %s (its options: %s)'
                            % (', '.join(foreign), self.name, ', '.join(sorted(self.fields))))
        result = {'kind': self.name}
        for option, field in self.fields.items():
            value = field.normalize(spec.get(option), '%s.%s' % (where, option))
            if value is None and option in self.required:
                raise SpecError(where, 'kind %s requires option %s' % (self.name, option))
            if value is not None:
                result[option] = value
        return result

    def parse(self, element):
        """Read an element into this kind's option format (only options that are set)."""
        result = {'kind': self.name}
        for option, field in self.fields.items():
            value = field.read(element)
            if value is not None:
                result[option] = value
        return result

    def apply(self, element, spec, reset):
        """Write ``spec`` onto ``element``. With ``reset`` (state replaced) unlisted options are cleared."""
        for name, value in self.fixed.items():
            element.set(name, value)
        for option, field in self.fields.items():
            if option in spec:
                field.write(element, spec[option])
            elif reset and not field.libvirt_fills:
                field.clear(element)
        return element

    def render(self, spec):
        return self.apply(_xml.new_element(self.tag, self.new_attrs), spec, reset=False)

    def lossless(self, element):
        """True when this kind's options describe the element completely (safe to show it typed)."""
        rendered = self.render(self.parse(element))
        return _xml.same(rendered, element, ignore=LIBVIRT_OWNED)


def derived_mac(domain_name, source, ordinal):
    """A stable MAC for an interface declared without one: same domain, source and position, same MAC.

    The domain *name* is used (not its UUID) so ``rendered`` without a connection predicts the same MAC
    that a real run writes. 52:54:00 is QEMU's locally administered prefix.
    """
    seed = '%s|%s|%d' % (domain_name, sorted(source.items()) if source else '', ordinal)
    digest = hashlib.sha256(seed.encode('utf-8')).hexdigest()
    return '52:54:00:%s:%s:%s' % (digest[0:2], digest[2:4], digest[4:6])


def _interface_class(spec):
    return VIRTIO if spec.get('model') == 'virtio' else EMULATED


def _disk_class(spec):
    return VIRTIO if (spec.get('bus') or _bus_from_target(spec.get('target', ''))) == 'virtio' else EMULATED


def _bus_from_target(target):
    for prefix, bus in (('vd', 'virtio'), ('sd', 'scsi'), ('hd', 'ide'), ('fd', 'fdc'), ('xvd', 'xen')):
        if target.startswith(prefix):
            return bus
    return None


def _rng_backend_type(path):
    return 'builtin' if path == 'builtin' else 'random'


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


class DiskFormat(Field):
    """``format`` is ``<driver type=...>``; QEMU also needs the driver name beside it."""

    def write(self, element, value):
        _xml.child(element, 'driver', create=True).attrib.update({'name': 'qemu', 'type': value})


INTERFACE = Kind(
    'interface', 'interface',
    fields=[
        Source('source', [
            Variant('network', 'network', {'network': ('source', 'network')}),
            Variant('bridge', 'bridge', {'bridge': ('source', 'bridge')}),
            Variant('direct', 'direct', {'direct': ('source', 'dev')},
                    extras={'mode': ('vepa', 'bridge', 'private', 'passthrough')}),
            Variant('user', 'user', {}, flag=True),
        ], description='Where the NIC is plugged: exactly one of network, bridge, direct (host device, '
                       'with optional mode) or user: true.'),
        Field('model', 'model', 'type', choices=('virtio', 'e1000', 'e1000e', 'rtl8139'), libvirt_fills=True,
              description='NIC model: virtio (para-virtualized) or e1000, e1000e, rtl8139 (emulated).'),
        Field('mac', 'mac', 'address', pattern=MAC_RE, pattern_hint='six colon-separated hex octets',
              libvirt_fills=True, description='MAC address; when omitted a stable one is derived.'),
    ],
    key=lambda spec: ('mac', spec.get('mac')),
    device_class=_interface_class, hotplug=True, required=('source',),
    description='A network interface.')

DISK = Kind(
    'disk', 'disk',
    fields=[
        Field('target', 'target', 'dev', pattern=r'^(vd|sd|hd|xvd|fd)[a-z]{1,3}$',
              pattern_hint='vda, sdb, hdc, fda ...', description='Guest device name; the identity of a disk.'),
        Field('bus', 'target', 'bus', choices=('virtio', 'sata', 'scsi', 'ide', 'usb', 'fdc'), libvirt_fills=True,
              description='Disk bus: virtio (para-virtualized) or sata, scsi, ide, usb, fdc (emulated).'),
        Field('device', '', 'device', choices=('disk', 'cdrom', 'floppy', 'lun'), default='disk',
              description='What the guest sees.'),
        Source('source', [
            Variant('file', 'file', {'file': ('source', 'file')}),
            Variant('block', 'block', {'block': ('source', 'dev')}),
            Variant('volume', 'volume', {'volume': ('source', 'volume'), 'pool': ('source', 'pool')}),
        ], description='Backing store: exactly one of file, block, or volume together with pool.'),
        DiskFormat('format', 'driver', 'type', choices=('raw', 'qcow2', 'vmdk', 'vdi', 'vpc', 'qed'), libvirt_fills=True,
              description='Image format of the source.'),
        Flag('readonly', 'readonly', description='Present the disk read-only.'),
    ],
    key=lambda spec: ('target', spec.get('target')),
    device_class=_disk_class, hotplug=True, required=('target',),
    new_attrs={'type': 'file'},  # what libvirt writes for an empty cdrom; a source sets its own type
    description='A disk, cdrom or floppy drive.')

RNG = Kind(
    'rng', 'rng',
    fields=[
        Field('model', '', 'model', choices=('virtio', 'virtio-transitional', 'virtio-non-transitional'),
              default='virtio', description='RNG device model.'),
        RngBackend('backend', 'backend', choices=('/dev/urandom', '/dev/random', 'builtin'), default='/dev/urandom',
                   description='Host entropy source.'),
    ],
    key=lambda spec: ('rng', spec.get('model'), _rng_backend_type(spec.get('backend'))),
    device_class=lambda spec: VIRTIO, hotplug=True,
    description='A para-virtualized random number generator (one per model and backend type).')

HOSTDEV = Kind(
    'hostdev', 'hostdev',
    fields=[
        Field('type', '', 'type', choices=('pci',), default='pci', description='Host device type.'),
        PciAddress('address', 'source/address', description='Host PCI address DDDD:BB:SS.F.'),
        YesNo('managed', '', 'managed', default=True,
              description='Let libvirt detach the device from its host driver and reattach it.'),
    ],
    key=lambda spec: (spec.get('type'), spec.get('address')),
    device_class=lambda spec: PASSTHROUGH, hotplug=True, fixed={'mode': 'subsystem'}, required=('address',),
    description='A host device passed through to the guest.')

KINDS = {kind.name: kind for kind in (INTERFACE, DISK, RNG, HOSTDEV)}
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


def _text(path):
    def key(element):
        node = _xml.child(element, path)
        return ((node.text or '').strip() if node is not None else None,)
    return key


# Identity of elements that have no typed kind yet (REFERENCE §1): kept, matched, never duplicated.
ELEMENT_KEYS = {
    'controller': _attrs('@type', '@index', 'master@startport'),  # USB companions share an index
    'interface': _attrs('mac@address'),
    'disk': _attrs('target@dev'),
    'channel': _attrs('@type', 'target@type', 'target@name'),
    'serial': _attrs('target@port'),
    'parallel': _attrs('target@port'),
    'console': _attrs('target@type', 'target@port'),
    'filesystem': _attrs('target@dir'),
    'memballoon': _attrs(),
    'rng': _attrs('@model', 'backend@model'),
    'tpm': _attrs(),
    'watchdog': _attrs('@model'),
    'vsock': _attrs(),
    'iommu': _attrs(),
    'panic': _attrs('@model'),
    'video': _attrs('model@type'),
    'sound': _attrs('@model'),
    'input': _attrs('@type', '@bus'),
    'graphics': _attrs('@type'),
    'audio': _attrs('@id'),
    'hub': _attrs('@type'),
    'smartcard': _attrs('@mode'),
    'redirdev': _attrs('@bus', '@type', 'source@path', 'address@port'),  # identical ones differ by USB port
    'shmem': _attrs('@name'),
    'lease': _text('lockspace'),
    'memory': _attrs('@model', 'target/size@unit'),
}
# Elements of <devices> that are not devices: never matched, added or removed.
NOT_DEVICES = frozenset(('emulator',))
DEVICE_TAGS = frozenset(ELEMENT_KEYS) | frozenset(KINDS_BY_TAG) | frozenset(('hostdev', 'redirfilter'))


def element_key(element):
    """The identity of an existing device element, typed kind first, then by tag, then by content."""
    kind = KINDS_BY_TAG.get(element.tag)
    if kind is not None:
        spec = kind.parse(element)
        key = kind.key(spec)
        if all(part is not None for part in key[1:]):
            return (element.tag,) + key
    by_tag = ELEMENT_KEYS.get(element.tag)
    if by_tag is not None:
        return (element.tag, 'attrs') + by_tag(element)
    return (element.tag, 'xml', _xml.canonical(element, ignore=LIBVIRT_OWNED))


def element_class(element):
    kind = KINDS_BY_TAG.get(element.tag)
    if kind is not None:
        return kind.device_class(kind.parse(element))
    return _TAG_CLASS.get(element.tag, EMULATED)


_TAG_CLASS = {'hostdev': PASSTHROUGH, 'vsock': VIRTIO, 'memballoon': VIRTIO, 'filesystem': VIRTIO,
              'channel': VIRTIO}


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
    for kind in KINDS.values():
        for option, field in kind.fields.items():
            entry = {'type': field.value_type}
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
