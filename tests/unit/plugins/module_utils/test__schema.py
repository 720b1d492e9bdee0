# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""libvirt's schema rejections told per device and option: against libvirt's installed RNG schema, and end to
end through domain_devices on the test driver (which validates definitions with the same schema)."""

from __future__ import annotations

import os

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _libvirt, _schema, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import KINDS
from ansible_collections.virtdev.libvirt.plugins.modules import domain_devices
from ansible_collections.virtdev.libvirt.tests.unit.prepare_helpers import run_module
from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import FIXTURES

NEEDS_SCHEMA = pytest.mark.skipif(not os.path.exists(os.path.join(_schema.SCHEMA_DIR, 'domain.rng')),
                                  reason="libvirt's schemas are not installed")
TEST_URI = 'test://' + os.path.join(FIXTURES, 'libvirt-test-driver.xml')


@NEEDS_SCHEMA
@pytest.mark.parametrize('device, where', [
    ("<graphics type='vnc' listen='not an address'><listen type='address' address='not an address'/></graphics>",
     '<graphics><listen>: Invalid attribute address'),
    ("<watchdog model='i6300esb' action='explode'/>", '<watchdog>: Invalid attribute action'),
    ("<hostdev mode='subsystem' type='pci'><source><address bus='0X1F' slot='1'/></source></hostdev>",
     '<hostdev><source><address>: Invalid attribute bus'),
    ("<disk type='file' device='disk'><source file='/x'/><target dev='vdb'/><serial>a;b</serial></disk>",
     '<disk><serial>'),
])
def test_a_refused_device_is_told_by_element_and_attribute(device, where):
    problem = _schema.device_problem(_xml.parse(device))
    assert problem is not None and problem.startswith(where), problem


@NEEDS_SCHEMA
@pytest.mark.parametrize('device', [
    "<disk type='file' device='disk'><source file='/var/lib/x.qcow2'/><target dev='vdb' bus='virtio'/></disk>",
    "<graphics type='vnc' listen='127.0.0.1'><listen type='address' address='127.0.0.1'/></graphics>",
    "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/></interface>",
])
def test_a_valid_device_passes(device):
    assert _schema.device_problem(_xml.parse(device)) is None


def test_the_option_is_found_from_the_problem():
    graphics = KINDS['graphics']
    assert _schema.option_of(graphics, '<graphics><listen>: Invalid attribute address for element listen') == 'listen'
    disk = KINDS['disk']
    assert _schema.option_of(disk, '<disk><source>: Invalid attribute file for element source') == 'source.file'
    assert _schema.option_of(disk, '<disk><serial>: Error validating datatype string') == 'serial'
    assert _schema.option_of(None, 'anything') is None


def test_no_schema_no_translation(tmp_path):
    assert _schema.device_problem(_xml.parse("<watchdog model='x'/>"), str(tmp_path)) is None
    assert _schema.explain('g', [('config[0]', 'watchdog x', None, _xml.parse("<watchdog model='x'/>"))], 'said',
                           str(tmp_path)) is None


@NEEDS_SCHEMA
@pytest.mark.skipif(not _libvirt.HAS_LIBVIRT, reason='libvirt-python is not installed')
@pytest.mark.parametrize('config, expected', [
    ([{'kind': 'interface', 'source': {'network': 'default'}, 'mac': '52:54:00:00:00:31'},
      {'kind': 'graphics', 'type': 'vnc', 'listen': 'not an address'}],
     "domain fw: libvirt's schema refuses config[1].listen (graphics type vnc): <graphics><listen>: Invalid attribute "
     "address for element listen; the persistent definition was not changed (libvirt said: "),
    ([{'kind': 'xml', 'xml': "<watchdog model='i6300esb' action='explode'/>"}],
     "domain fw: libvirt's schema refuses config[0].xml (watchdog model i6300esb): <watchdog>: Invalid attribute action"),
])
def test_domain_devices_names_guest_device_and_option(capsys, config, expected):
    result = run_module(capsys, domain_devices, uri=TEST_URI, domain='fw', config=config, host_checks=False)
    assert result['rc'] == 1 and result['msg'].startswith(expected), result['msg']
    assert 'XML document failed to validate against schema' in result['msg']   # libvirt's words are kept
    assert result['changed'] is False


@NEEDS_SCHEMA
def test_planned_devices_are_checked_here_as_libvirt_would():
    """What defineXMLFlags(VALIDATE) would say of the devices, without libvirt loading its grammar per define."""
    good = [_xml.parse("<watchdog model='i6300esb' action='reset'/>"),
            _xml.parse("<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>")]
    bad = _xml.parse("<watchdog model='i6300esb' action='explode'/>")
    assert _schema.devices_pass(good) is True and _schema.devices_pass(good + [bad]) is False
    assert _schema.devices_pass([]) is True     # a plan that only removes devices
    assert bad.getparent() is None and good[0].getparent() is None  # copies were checked: the plan is untouched


def test_without_the_schema_here_libvirt_checks(tmp_path):
    assert _schema.devices_pass([_xml.parse("<watchdog model='i6300esb' action='reset'/>")], str(tmp_path)) is None


@NEEDS_SCHEMA
@pytest.mark.skipif(not _libvirt.HAS_LIBVIRT, reason='libvirt-python is not installed')
def test_a_define_on_this_machines_libvirt_is_checked_here(capsys, monkeypatch):
    """The test driver runs in this process: the same libvirt as the schema here, so the planned devices are checked
    here and libvirt is not asked to validate again; a device the check refuses is left to libvirt (above)."""
    flags, checked_tags = [], []
    real = _libvirt.Connection.define
    monkeypatch.setattr(_libvirt.Connection, 'define',
                        lambda self, text, checked=False: flags.append(checked) or real(self, text, checked))
    real_check = _schema.devices_pass
    monkeypatch.setattr(_schema, 'devices_pass', lambda elements, *args: checked_tags.append(
        [element.tag for element in elements]) or real_check(elements, *args))
    result = run_module(capsys, domain_devices, uri=TEST_URI, domain='fw', host_checks=False,
                        config=[{'kind': 'watchdog', 'model': 'i6300esb', 'action': 'reset'}])
    assert result['rc'] == 0 and result['changed'] is True, result.get('msg')
    assert flags == [True] and result['libvirt_calls']['version'] == 1
    assert checked_tags == [['watchdog']]   # only what the plan adds: the guest's other devices are libvirt's own
