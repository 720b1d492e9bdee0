# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_ids reads addresses, MACs and UUIDs as libvirt does: each notation is checked against libvirt itself
(the in-process test driver parses domain XML with the same code as the QEMU driver)."""

from __future__ import annotations

import re

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids, _libvirt, _xml

NEEDS_LIBVIRT = pytest.mark.skipif(not _libvirt.HAS_LIBVIRT, reason='libvirt-python is not installed')
DOMAIN = ("<domain type='test'><name>ids-probe</name><memory>65536</memory><os><type>hvm</type></os>"
          "<devices>%s</devices></domain>")


@pytest.fixture(scope='module')
def libvirt_reads():
    """Define a one-device domain on test:///default and return libvirt's own <devices> XML (or None when
    libvirt refuses it): what libvirt made of the notation."""
    libvirt = _libvirt.libvirt
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open('test:///default')

    def read(device_xml):
        try:
            dom = conn.defineXML(DOMAIN % device_xml)
        except libvirt.libvirtError:
            return None
        try:
            return _xml.parse(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).find('devices')
        finally:
            dom.undefine()

    yield read
    conn.close()


def attrs(text):
    return dict(re.findall(r"(\w+)='([^']*)'", text))


# -- PCI: every notation libvirt accepts means what libvirt makes of it, everything else is refused ---------

PCI_NOTATIONS = [
    ("domain='0x0000' bus='0x02' slot='0x00' function='0x0'", '0000:02:00.0'),
    ("bus='2' slot='0'", '0000:02:00.0'),                          # domain and function missing: 0
    ("bus='027' slot='0x1f' function='7'", '0000:17:1f.7'),        # 027 is octal
    ("bus='0X1F' slot='1'", '0000:1f:01.0'),
    ("bus=' 2' slot='+3'", '0000:02:03.0'),                        # strtoul: leading blank, plus sign
    ("bus='&#9;2' slot='1'", '0000:02:01.0'),
    ("bus='00000000000000000003' slot='1'", '0000:03:01.0'),
    ("domain='65536' bus='1' slot='1'", '10000:01:01.0'),
    ("function='3'", '0000:00:00.3'),
    ('', '0000:00:00.0'),                                          # nothing: the host bridge
    ("bus='2 ' slot='0'", None),                                   # trailing blank
    ("bus='0x' slot='0'", None),
    ("bus='08' slot='0'", None),                                   # 8 is no octal digit
    ("bus='-0' slot='1'", None),
    ("bus='1_0' slot='1'", None),                                  # Python would read it, C does not
    ("bus='0b1' slot='1'", None),
    ("bus='\u0663' slot='1'", None),                               # an Arabic-Indic digit
    ("bus='256' slot='1'", None),
    ("bus='1' slot='32'", None),
    ("bus='1' slot='1' function='8'", None),
    ("domain='4294967296' bus='1' slot='1'", None),
]


@NEEDS_LIBVIRT
@pytest.mark.parametrize('notation, expected', PCI_NOTATIONS)
def test_pci_hostdev_addresses_read_as_libvirt_reads_them(notation, expected, libvirt_reads):
    hostdev = "<hostdev mode='subsystem' type='pci' managed='yes'><source><address %s/></source></hostdev>" % notation
    devices = libvirt_reads(hostdev)
    element = _xml.parse(hostdev)
    if expected is None:
        assert devices is None, 'libvirt accepted %s' % notation
        with pytest.raises(_ids.IdError) as caught:
            _ids.hostdev_keys(element, 'config[0].xml')
        assert str(caught.value).startswith('config[0].xml <source><address>')
        return
    stored = devices.find('hostdev/source/address')
    assert str(_ids.pci_from_attrs(stored.attrib, 'libvirt')) == expected       # what libvirt made of it
    assert _ids.hostdev_keys(element, 'x') == [('pci', expected)]               # what we make of it


@NEEDS_LIBVIRT
@pytest.mark.parametrize('notation, expected', [
    ("<vendor id='1133'/><product id='0xc52b'/>", [('usb', '0x046d:0xc52b')]),       # decimal 1133 = 0x046d
    ("<vendor id='0x046D'/><product id='0xC52B'/>", [('usb', '0x046d:0xc52b')]),
    ("<address bus='010' device='0x4'/>", [('usb-address', '8.4')]),                 # octal bus
    ("<vendor id='046d'/><product id='0xc52b'/>", None),                             # neither octal nor decimal
    ("<address bus='1'/>", None),
    ("<vendor id='0x46d'/>", None),
])
def test_usb_sources_read_as_libvirt_reads_them(notation, expected, libvirt_reads):
    hostdev = "<hostdev mode='subsystem' type='usb'><source>%s</source></hostdev>" % notation
    devices = libvirt_reads(hostdev)
    element = _xml.parse(hostdev)
    if expected is None:
        assert devices is None
        with pytest.raises(_ids.IdError):
            _ids.hostdev_keys(element)
        return
    assert _ids.hostdev_keys(devices.find('hostdev')) == expected == _ids.hostdev_keys(element)


@NEEDS_LIBVIRT
@pytest.mark.parametrize('notation, expected', [
    ("bus='0' target='010' unit='0x1'", (0, 8, 1)),
    ("bus='0' target='0'", None),
])
def test_scsi_host_sources_read_as_libvirt_reads_them(notation, expected, libvirt_reads):
    hostdev = ("<hostdev mode='subsystem' type='scsi'><source><adapter name='scsi_host0'/><address %s/></source>"
               "</hostdev>" % notation)
    devices = libvirt_reads("<controller type='scsi' index='0' model='virtio-scsi'/>" + hostdev)
    if expected is None:
        assert devices is None
        with pytest.raises(_ids.IdError, match="the unit attribute is missing"):
            _ids.scsi_host_from_attrs(attrs(notation), 'source')
        return
    stored = devices.find('hostdev/source/address').attrib
    assert _ids.scsi_host_from_attrs(stored, 'x') == expected == _ids.scsi_host_from_attrs(attrs(notation), 'x')


@NEEDS_LIBVIRT
@pytest.mark.parametrize('mac, expected', [
    ('52:54:00:AA:BB:CC', '52:54:00:aa:bb:cc'),
    ('52:54:0:a:b:c', '52:54:00:0a:0b:0c'),
    ('00:00:00:00:00:00', '00:00:00:00:00:00'),
    ('01:00:5e:00:00:01', None),             # multicast
    ('ff:ff:ff:ff:ff:ff', None),
    ('52-54-00-aa-bb-cc', None),
    ('525400aabbcc', None),
    (' 52:54:00:aa:bb:cc', None),
])
def test_macs_read_as_libvirt_reads_them(mac, expected, libvirt_reads):
    devices = libvirt_reads("<interface type='network'><mac address='%s'/><source network='default'/></interface>"
                            % mac)
    if expected is None:
        assert devices is None
        with pytest.raises(_ids.IdError) as caught:
            _ids.parse_mac(mac, 'config[0].mac')
        assert str(caught.value).startswith('config[0].mac: %r' % mac)
        return
    assert devices.find('interface/mac').get('address') == expected == _ids.parse_mac(mac)


@NEEDS_LIBVIRT
@pytest.mark.parametrize('uuid, ok', [
    ('C2177883-F1BB-47F0-914D-32A22E3A8804', True),
    ('c2177883f1bb47f0914d32a22e3a8804', True),
    (' c2177883-f1bb-47f0-914d-32a22e3a8804', True),
    ('c2-177883-f1bb-47f0-914d-32a22e3a8804', True),
    ('{c2177883-f1bb-47f0-914d-32a22e3a8804}', False),
    ('c2177883-f1bb-47f0-914d-32a22e3a88041', False),
    ('c-2177883-f1bb-47f0-914d-32a22e3a8804', False),
])
def test_uuids_read_as_libvirt_reads_them(uuid, ok, libvirt_reads):
    devices = libvirt_reads("<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source><address uuid='%s'/>"
                            "</source></hostdev>" % uuid)
    if not ok:
        assert devices is None
        with pytest.raises(_ids.IdError):
            _ids.parse_uuid(uuid)
        return
    stored = devices.find('hostdev/source/address').get('uuid')
    assert stored == _ids.parse_uuid(uuid) == 'c2177883-f1bb-47f0-914d-32a22e3a8804'


# -- the element forms every guard path reads -------------------------------------------------------------

@pytest.mark.parametrize('xml, keys', [
    ("<interface type='hostdev'><source><address type='pci' bus='0x1f' slot='6'/></source></interface>",
     [('pci', '0000:1f:06.0')]),
    ("<interface type='hostdev'><source><address type='usb' bus='1' device='2'/></source></interface>",
     [('usb-address', '1.2')]),
    ("<interface type='network'><source network='default'/></interface>", []),
    ("<hostdev mode='subsystem' type='mdev'><source><address uuid='C2177883F1BB47F0914D32A22E3A8804'/></source>"
     "</hostdev>", [('mdev', 'c2177883-f1bb-47f0-914d-32a22e3a8804')]),
    ("<hostdev type='pci'><source><address bus='2'/></source></hostdev>", [('pci', '0000:02:00.0')]),  # mode: subsystem
    ("<hostdev mode='capabilities' type='storage'><source><block>/dev/sdb</block></source></hostdev>", []),
])
def test_hostdev_keys(xml, keys):
    assert _ids.hostdev_keys(_xml.parse(xml)) == keys


@pytest.mark.parametrize('xml', [
    "<interface type='hostdev'><source><address bus='3' slot='0'/></source></interface>",    # no type: libvirt too
    "<interface type='hostdev'/>",
    "<hostdev mode='subsystem' type='mdev'><source><address uuid='not-a-uuid'/></source></hostdev>",
    "<hostdev mode='subsystem' type='pci'><source><address bus='0x1g'/></source></hostdev>",
])
def test_unreadable_elements_are_refused_not_skipped(xml):
    with pytest.raises(_ids.IdError):
        _ids.hostdev_keys(_xml.parse(xml), 'config[3].xml')


def test_c_uint_bases_and_limits():
    assert [_ids.c_uint(text, 'f') for text in ('0x10', '010', '10', '+7', ' 9', '0')] == [16, 8, 10, 7, 9, 0]
    assert _ids.c_uint('010', 'f', base=10) == 10     # drive addresses are decimal
    assert _ids.drive_from_attrs({'controller': '0', 'unit': '010'}, 'f') == (0, 0, 0, 10)
    with pytest.raises(_ids.IdError, match="f: '0x10' is not a number as libvirt reads it"):
        _ids.c_uint('0x10', 'f', base=10)
    with pytest.raises(_ids.IdError, match='out of range'):
        _ids.c_uint('65536', 'f', limit=0xffff)
    with pytest.raises(_ids.IdError, match='is not a number'):
        _ids.c_uint(None, 'f')


def test_option_forms():
    assert _ids.pci_text('01:00.0') == '0000:01:00.0'
    assert _ids.pci_text(' 10000:3B:1F.7 ') == '10000:3b:1f.7'
    assert _ids.parse_pci('0000:65:00.0').attributes() == {
        'domain': '0x0000', 'bus': '0x65', 'slot': '0x00', 'function': '0x0'}
    assert _ids.hex_id('046D', 'v') == _ids.hex_id(0x46d, 'v') == _ids.hex_id('0x46d', 'v') == '0x046d'
    assert _ids.pci_of_nodedev_name('pci_0000_01_00_1') == '0000:01:00.1'
    assert _ids.pci_of_nodedev_name('usb_1_2') is None
    for bad in ('0000:01:00', '0000:001:00.0', '00:01:00.0', 0x100, None):
        with pytest.raises(_ids.IdError):
            _ids.parse_pci(bad)
    with pytest.raises(_ids.IdError, match='is a multicast MAC'):
        _ids.parse_mac('03:00:00:00:00:01', 'mac')
    assert _ids.parse_mac('03:00:00:00:00:01', 'mac', unicast=False) == '03:00:00:00:00:01'
    assert _ids.parse_mac('52:54:00:aa:bb:cc \n', 'mac', trailing_blank=True) == '52:54:00:aa:bb:cc'
    with pytest.raises(_ids.IdError):
        _ids.parse_mac('52:54:00:aa:bb:cc \n', 'mac')
