# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The base of a domain (_domain_spec, pure): a new definition, its summary, machine aliases and free PCIe
root ports; and the domain runner's guarded write against libvirt's test driver: a definition libvirt did
not keep as asked is replaced by the one found (docs/domain.md)."""

from __future__ import annotations

import re
import uuid

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _domain_spec, _libvirt, _xml
from ansible_collections.virtdev.libvirt.plugins.modules import domain
from ansible_collections.virtdev.libvirt.tests.unit.prepare_helpers import run_module

CAPABILITIES = """<capabilities><guest><arch name='x86_64'>
  <machine maxCpus='255'>pc-i440fx-7.2</machine><machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
  <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine><machine maxCpus='288'>pc-q35-7.2</machine>
</arch></guest></capabilities>"""
PORT = "<controller type='pci' index='%d' model='pcie-root-port'/>"
PLUGGED = "<interface type='user'><address type='pci' domain='0x0000' bus='%s' slot='0x00' function='0x0'/></interface>"


def test_machine_aliases_map_each_alias_to_its_canonical_machine():
    assert _domain_spec.machine_aliases(CAPABILITIES) == {'pc': 'pc-i440fx-7.2', 'q35': 'pc-q35-7.2'}


def test_new_definition_is_the_summary_it_was_made_from():
    params = {'type': 'qemu', 'name': 'web01', 'uuid': '6c1f3c3e-8a55-4e59-9a3c-0d6a2f1b7e02', 'memory': 512,
              'vcpus': 2, 'firmware': None, 'arch': 'x86_64', 'machine': 'q35'}
    xml = _domain_spec.new_definition(params)
    assert _domain_spec.settings_of(xml) == {
        'name': 'web01', 'uuid': params['uuid'], 'type': 'qemu', 'memory_mib': 512, 'vcpus': 2, 'machine': 'q35',
        'arch': 'x86_64', 'firmware': 'bios'}
    bare = _domain_spec.settings_of(_domain_spec.new_definition({'type': 'kvm', 'name': 'b'}))
    assert (bare['memory_mib'], bare['vcpus'], bare['uuid']) == (_domain_spec.DEFAULT_MEMORY_MIB,
                                                                 _domain_spec.DEFAULT_VCPUS, None)


def test_free_root_ports_count_ports_nothing_is_plugged_into():
    xml = "<domain><devices>%s</devices></domain>" % ''.join(PORT % index for index in (1, 2, 3))
    assert _domain_spec.free_root_ports(xml) == 3
    # bus numbers as libvirt reads them: hex and decimal are the same bus
    plugged = xml.replace('</devices>', PLUGGED % '0x01' + PLUGGED % '2' + '</devices>')
    assert _domain_spec.free_root_ports(plugged) == 1
    grown = _domain_spec.with_root_ports(plugged, 2)
    added = _xml.parse(grown).findall("devices/controller[@model='pcie-root-port']")
    assert len(added) == 5 and [port.get('index') for port in added[3:]] == [None, None]   # libvirt numbers them


class ForgetsTitle(_libvirt.Connection):
    """libvirt's test driver, except that the definitions it keeps lose their <title> (a setting libvirt
    did not keep as asked)."""

    def define(self, xml_text):
        return super().define(re.sub(r'<title>[^<]*</title>', '', xml_text))


@pytest.fixture
def test_driver():
    conn = _libvirt.Connection('test:///default')   # holds the driver's state for the test's module runs
    yield conn
    conn.close()


def test_a_definition_libvirt_did_not_keep_is_restored(capsys, monkeypatch, test_driver):
    name = 'restore-%s' % uuid.uuid4().hex[:8]
    created = run_module(capsys, domain, uri='test:///default', name=name, type='qemu', memory=256)
    assert created['rc'] == 0 and created['changed'] is True, created
    dom = test_driver.lookup(name)
    try:
        before = test_driver.xml(dom)
        monkeypatch.setattr(_common, 'connect', lambda module, readonly=False: ForgetsTitle(module.params['uri']))
        result = run_module(capsys, domain, uri='test:///default', name=name, type='qemu', memory=512, title='T')
        assert result['rc'] == 1 and result['changed'] is False, result
        assert result['msg'] == ('libvirt did not keep the requested settings of %s, the definition was restored: '
                                 "title: libvirt kept None, asked 'T'" % name)
        assert result['commands'] == ['define']
        assert test_driver.xml(dom) == before            # memory 256 again: the definition found, not half of ours
    finally:
        dom.undefine()
