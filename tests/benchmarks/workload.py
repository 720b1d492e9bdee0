# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The benchmark workload: N guests x M devices, in every tool's input format, and the correctness check.

Every guest starts bare (libvirt's default devices only) and is given M devices drawn from a fixed cycle
that mixes the three classes: emulated (e1000 and rtl8139 NICs, SATA disks, a raw-XML i6300esb watchdog),
para-virtualized (virtio NIC, virtio disks, virtio RNG) and passthrough (a PCI hostdev, persistent only:
the guests never run). The same declaration is rendered as

* the module's ``domains:`` manifest (``manifest``),
* libvirt device XML per device (``device_xml``: the floor, ``virsh attach-device`` and the
  community.libvirt template all use it), and
* ``virt-xml`` command-line options (``virt_xml_args``).

``signature`` reads the managed devices back out of a definition so each tool's result can be compared
with the declaration (``expected_signature``) without trusting what the tool reported.
"""

from __future__ import annotations

import os
import uuid
from xml.sax.saxutils import quoteattr

from lxml import etree

SCENARIOS = ('check', 'first', 'nochange', 'change')
SCENARIO_TITLES = {
    'check': 'check mode (first apply predicted)',
    'first': 'first apply',
    'nochange': 'no-change re-apply',
    'change': 'one device changed on every guest',
}
MANAGED_TAGS = ('interface', 'disk', 'rng', 'watchdog', 'hostdev')
# the device that the 'change' scenario edits on every guest: the first virtio disk gets a new image
CHANGED_TARGET = 'vdb'

BASE_CYCLE = ('e1000', 'virtio-nic', 'virtio-disk', 'sata-disk', 'rng', 'watchdog', 'hostdev', 'rtl8139',
              'virtio-disk', 'sata-disk')
EXTRA_CYCLE = ('virtio-nic', 'virtio-disk', 'e1000', 'sata-disk', 'hostdev')
CLASSES = {'e1000': 'emulated', 'rtl8139': 'emulated', 'sata-disk': 'emulated', 'watchdog': 'emulated',
           'virtio-nic': 'virtio', 'virtio-disk': 'virtio', 'rng': 'virtio', 'hostdev': 'passthrough'}


def guest_name(index):
    return 'bench-%04d' % index


def guest_uuid(name):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, 'virtdev-bench/' + name))


def bare_xml(name):
    """A guest with nothing but what libvirt adds by itself (TCG, i440fx, never started)."""
    return ("<domain type='qemu'><name>%s</name><uuid>%s</uuid><memory unit='MiB'>256</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
            "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>"
            % (name, guest_uuid(name)))


def _letters(index):
    """0 -> 'a', 25 -> 'z', 26 -> 'aa' (disk target suffixes)."""
    text = ''
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        text = chr(ord('a') + rest) + text
    return text


class Device:
    """One declared device of one guest, with everything each tool needs to declare it."""

    def __init__(self, guest, position, flavour, serial, image_dir):
        self.guest = guest
        self.position = position
        self.flavour = flavour
        self.device_class = CLASSES[flavour]
        self.is_changed = False
        gi = guest_index(guest)
        if flavour in ('e1000', 'rtl8139', 'virtio-nic'):
            self.tag = 'interface'
            self.mac = '52:54:00:%02x:%02x:%02x' % (gi // 256, gi % 256, position)
            self.model = 'virtio' if flavour == 'virtio-nic' else flavour
            self.source = ('bridge', 'br0') if flavour == 'virtio-nic' else ('network', 'default')
        elif flavour in ('virtio-disk', 'sata-disk'):
            self.tag = 'disk'
            virtio = flavour == 'virtio-disk'
            self.target = ('vd' if virtio else 'sd') + _letters(serial + (1 if virtio else 0))
            self.bus = 'virtio' if virtio else 'sata'
            self.format = 'qcow2' if virtio else 'raw'
            self.path = os.path.join(image_dir, '%s-%s.img' % (guest, self.target))
        elif flavour == 'rng':
            self.tag = 'rng'
        elif flavour == 'watchdog':
            self.tag = 'watchdog'
        elif flavour == 'hostdev':
            self.tag = 'hostdev'
            # host addresses that do not exist: a persistent-only definition never touches the host
            self.address = '0000:%02x:%02x.0' % (0x40 + serial, position % 32)

    def changed(self):
        """The same device with a new backing image (the 'change' scenario)."""
        other = Device.__new__(Device)
        other.__dict__.update(self.__dict__)
        other.path = self.path.replace('.img', '-v2.img')
        other.is_changed = True
        return other

    # -- the module's option format -------------------------------------------------------------
    def spec(self):
        if self.tag == 'interface':
            return {'kind': 'interface', 'mac': self.mac, 'model': self.model, 'source': {self.source[0]: self.source[1]}}
        if self.tag == 'disk':
            return {'kind': 'disk', 'target': self.target, 'bus': self.bus, 'format': self.format,
                    'source': {'file': self.path}}
        if self.tag == 'rng':
            return {'kind': 'rng', 'model': 'virtio', 'backend': '/dev/urandom'}
        if self.tag == 'watchdog':
            return {'kind': 'xml', 'xml': "<watchdog model='i6300esb' action='reset'/>"}
        return {'kind': 'hostdev', 'type': 'pci', 'address': self.address, 'managed': True}

    # -- libvirt device XML ---------------------------------------------------------------------
    def xml(self):
        if self.tag == 'interface':
            return ("<interface type='%s'><mac address='%s'/><source %s=%s/><model type='%s'/></interface>"
                    % (self.source[0], self.mac, self.source[0], quoteattr(self.source[1]), self.model))
        if self.tag == 'disk':
            return ("<disk type='file' device='disk'><driver name='qemu' type='%s'/><source file=%s/>"
                    "<target dev='%s' bus='%s'/></disk>" % (self.format, quoteattr(self.path), self.target, self.bus))
        if self.tag == 'rng':
            return "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"
        if self.tag == 'watchdog':
            return "<watchdog model='i6300esb' action='reset'/>"
        dom, bus, rest = self.address.split(':')
        slot, function = rest.split('.')
        return ("<hostdev mode='subsystem' type='pci' managed='yes'><source>"
                "<address domain='0x%s' bus='0x%s' slot='0x%s' function='0x%s'/></source></hostdev>"
                % (dom, bus, slot, function))

    def grep_marker(self):
        """A string that is in libvirt's XML of the guest exactly when this device is (the guarded shell loop)."""
        if self.tag == 'interface':
            return "<mac address='%s'/>" % self.mac
        if self.tag == 'disk':
            return "<source file='%s'/>" % self.path
        if self.tag == 'rng':
            return '/dev/urandom</backend>'
        if self.tag == 'watchdog':
            return "<watchdog model='i6300esb'"
        dom, bus, rest = self.address.split(':')
        slot, function = rest.split('.')
        return "<address domain='0x%s' bus='0x%s' slot='0x%s' function='0x%s'/>" % (dom, bus, slot, function)

    # -- virt-xml ---------------------------------------------------------------------------------
    def virt_xml_args(self):
        if self.tag == 'interface':
            return ['--network', '%s=%s,model=%s,mac=%s' % (self.source[0], self.source[1], self.model, self.mac)]
        if self.tag == 'disk':
            return ['--disk', 'path=%s,target.dev=%s,target.bus=%s,driver.name=qemu,driver.type=%s'
                    % (self.path, self.target, self.bus, self.format)]
        if self.tag == 'rng':
            return ['--rng', '/dev/urandom']
        if self.tag == 'watchdog':
            return ['--watchdog', 'model=i6300esb,action=reset']
        return ['--hostdev', self.address]

    # -- what the definition must contain ---------------------------------------------------------
    def signature(self):
        if self.tag == 'interface':
            return ('interface', self.source[0], self.source[1], self.model, self.mac)
        if self.tag == 'disk':
            return ('disk', self.target, self.bus, self.path, self.format)
        if self.tag == 'rng':
            return ('rng', 'virtio', 'random', '/dev/urandom')
        if self.tag == 'watchdog':
            return ('watchdog', 'i6300esb', 'reset')
        return ('hostdev', self.address, 'yes')


def guest_index(name):
    return int(name.rsplit('-', 1)[1])


def devices_for(guest, count, image_dir):
    """The ``count`` devices of ``guest``: the base cycle of ten, then more NICs, disks and hostdevs."""
    devices, serial = [], {}
    for position in range(count):
        flavour = BASE_CYCLE[position] if position < len(BASE_CYCLE) else \
            EXTRA_CYCLE[(position - len(BASE_CYCLE)) % len(EXTRA_CYCLE)]
        family = 'hostdev' if flavour == 'hostdev' else flavour if 'disk' in flavour else 'other'
        devices.append(Device(guest, position, flavour, serial.get(family, 0), image_dir))
        serial[family] = serial.get(family, 0) + 1
    return devices


class Workload:
    """N guests x M devices; ``declared(scenario)`` is what each tool is asked to make true."""

    def __init__(self, guests, devices, image_dir):
        self.guests = [guest_name(i) for i in range(guests)]
        self.devices_per_guest = devices
        self.image_dir = image_dir
        self.base = {g: devices_for(g, devices, image_dir) for g in self.guests}
        self.changed = {g: [d.changed() if d.tag == 'disk' and d.target == CHANGED_TARGET else d for d in devs]
                        for g, devs in self.base.items()}

    def declared(self, scenario, guests=None):
        """{guest: [Device]} for a scenario (``change`` declares the new image of vdb)."""
        table = self.changed if scenario == 'change' else self.base
        return {g: table[g] for g in (guests or self.guests)}

    def class_mix(self):
        mix = {}
        for device in self.base[self.guests[0]]:
            mix.setdefault(device.device_class, []).append(device.flavour)
        return mix

    def make_images(self):
        """Empty image files for every disk (virt-xml refuses paths that do not exist)."""
        os.makedirs(self.image_dir, exist_ok=True)
        for table in (self.base, self.changed):
            for devices in table.values():
                for device in devices:
                    if device.tag == 'disk' and not os.path.exists(device.path):
                        with open(device.path, 'wb'):
                            pass

    def full_xml(self, guest, scenario='first'):
        """The whole definition of an applied guest: the bare guest plus its declared device XML."""
        devices = ''.join(d.xml() for d in self.declared(scenario, [guest])[guest])
        return bare_xml(guest).replace('</devices>', devices + '</devices>')


def manifest(declared):
    """The module's ``domains:`` option for {guest: [Device]}."""
    return [{'domain': guest, 'config': [d.spec() for d in devices]} for guest, devices in declared.items()]


def expected_signature(devices):
    return sorted(d.signature() for d in devices)


def _hex(value):
    return '%x' % int(value, 16) if value else None


def signature(domain):
    """The managed devices of a parsed <domain>, in ``Device.signature`` form (sorted multiset)."""
    found = []
    for element in domain.find('devices'):
        tag = element.tag
        if tag == 'interface':
            source = element.find('source')
            attr = element.get('type')
            found.append(('interface', attr, source.get('network' if attr == 'network' else 'bridge')
                          if source is not None else None,
                          element.find('model').get('type') if element.find('model') is not None else None,
                          element.find('mac').get('address') if element.find('mac') is not None else None))
        elif tag == 'disk':
            target, driver, source = element.find('target'), element.find('driver'), element.find('source')
            found.append(('disk', target.get('dev'), target.get('bus'),
                          source.get('file') if source is not None else None,
                          driver.get('type') if driver is not None else None))
        elif tag == 'rng':
            backend = element.find('backend')
            found.append(('rng', element.get('model'), backend.get('model'), (backend.text or '').strip()))
        elif tag == 'watchdog':
            found.append(('watchdog', element.get('model'), element.get('action')))
        elif tag == 'hostdev':
            address = element.find('source/address')
            found.append(('hostdev', '%04x:%02x:%02x.%x' % tuple(int(address.get(k), 16) for k in (
                'domain', 'bus', 'slot', 'function')), element.get('managed')))
    return sorted(found)


def parse_definition(path):
    parser = etree.XMLParser(remove_blank_text=True, remove_comments=True, resolve_entities=False, no_network=True)
    return etree.parse(path, parser).getroot()


def compare(expected, actual):
    """'' when equal, else a short reason (first missing or extra device)."""
    if expected == actual:
        return ''
    remaining = list(actual)
    missing = []
    for item in expected:
        if item in remaining:
            remaining.remove(item)
        else:
            missing.append(item)
    parts = []
    if missing:
        more = ' (+%d)' % (len(missing) - 1) if len(missing) > 1 else ''
        parts.append('missing %s%s' % (' '.join(str(x) for x in missing[0][:3]), more))
    if remaining:
        more = ' (+%d)' % (len(remaining) - 1) if len(remaining) > 1 else ''
        parts.append('extra %s%s' % (' '.join(str(x) for x in remaining[0][:3]), more))
    return '; '.join(parts)
