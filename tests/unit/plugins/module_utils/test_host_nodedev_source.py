# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The node-device reader: libvirt's node device XML becomes the host model, and the real guards judge it."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _libvirt
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import guards, nodedev_source, preflight
from ansible_collections.virtdev.libvirt.tests.unit import nodedev_docs as docs

# as this machine's private libvirtd formats a real device (no IOMMU here: no <iommuGroup>)
BALLOON = """<device>
  <name>pci_0000_00_01_0</name>
  <path>/sys/devices/pci0000:00/0000:00:01.0</path>
  <parent>computer</parent>
  <driver>
    <name>virtio-pci</name>
  </driver>
  <capability type='pci'>
    <class>0xffff00</class>
    <domain>0</domain>
    <bus>0</bus>
    <slot>1</slot>
    <function>0</function>
    <product id='0x1045'>Virtio 1.0 memory balloon</product>
    <vendor id='0x1af4'>Red Hat, Inc.</vendor>
  </capability>
</device>"""


@pytest.fixture(name='host')
def host_fixture():
    return nodedev_source.read_host(docs.sriov_host())


def _guards(check):
    return sorted({finding['guard'] for finding in check.findings})


def test_pci_facts_are_read_from_the_documents(host):
    pf = host.pci[docs.PF]
    assert (pf.vendor, pf.device, pf.class_code, pf.driver) == ('0x8086', '0x1521', '0x020000', 'igb')
    assert pf.vfs == [docs.VF0, docs.VF4] and pf.sriov_numvfs == 2 and pf.sriov_totalvfs == 7
    assert host.pci[docs.VF4].physfn == docs.PF
    assert pf.parent == '0000:00:1c.0' and host.pci['0000:00:1c.0'].children == [docs.PF, docs.VF0, docs.VF4]
    assert not host.pci['0000:00:1c.0'].endpoint
    assert host.groups[6] == [docs.SHARED_A, docs.SHARED_B]
    assert host.group_members(docs.SHARED_A) == [docs.SHARED_A, docs.SHARED_B]
    assert host.iommu_enabled and host.pci[docs.GPU].numa_node == 0
    assert host.critical == {'0000:00:00.0': ['a chipset function (host bridge, class 0x060000)']}
    assert pf.names == {'vendor': 'vendor 0x8086', 'device': 'device 0x1521'}


def test_mdevs_usb_and_interfaces(host):
    assert host.mdevs[docs.MDEV_UUID].parent == docs.MDEV_PARENT
    assert host.mdevs[docs.MDEV_UUID].type_id == 'nvidia-63' and host.mdevs[docs.MDEV_UUID].iommu_group == 9
    types = {t.type_id: t for t in host.pci[docs.MDEV_PARENT].mdev_types}
    assert types['nvidia-63'].available_instances == 3 and types['nvidia-63'].devices == [docs.MDEV_UUID]
    assert host.usb['usb1'].hub and not host.usb['1-1'].hub
    assert (host.usb['1-1'].bus, host.usb['1-1'].device, host.usb['1-1'].vendor) == (1, 2, '0x046d')
    assert host.inputs == {'0000:00:14.0': ['1-1 (vendor product)']}


@pytest.mark.parametrize('requests, guard', [
    ([{'type': 'pci', 'address': '0000:09:00.0'}], 'exists'),
    ([{'type': 'pci', 'address': docs.PF}, {'type': 'pci', 'address': docs.VF0}], 'pf_vf'),
    ([{'type': 'pci', 'address': docs.SHARED_A}], 'group'),
    ([{'type': 'pci', 'address': '0000:00:1c.0'}], 'endpoint'),
    ([{'type': 'pci', 'address': '0000:00:00.0'}], 'host_critical'),
    ([{'type': 'sriov_vf', 'address': docs.GPU}], 'sriov'),
    ([{'type': 'pci', 'address': docs.GPU, 'vendor': '0x1002'}], 'ids'),
    ([{'type': 'usb', 'vendor': '0x1d6b', 'product': '0x0002'}], 'endpoint'),
    ([{'type': 'mdev', 'uuid': docs.MDEV_UUID}, {'type': 'pci', 'address': docs.MDEV_PARENT}], 'mdev_parent'),
])
def test_the_real_guards_refuse_from_node_devices(host, requests, guard):
    check = preflight.check_assignment(host, requests, 'web', usage={})
    assert not check.ok and guard in _guards(check), check.errors


def test_a_device_used_by_another_guest_and_a_vf_whose_pf_is_taken(host):
    usage = {('pci', docs.GPU): [{'domain': 'other', 'live': True, 'config': True}],
             ('pci', docs.PF): [{'domain': 'other', 'live': False, 'config': True}]}
    check = preflight.check_assignment(host, [{'type': 'pci', 'address': docs.GPU}], 'web', usage)
    assert _guards(check) == ['in_use_live']
    check = preflight.check_assignment(host, [{'type': 'sriov_vf', 'address': docs.VF0}], 'web', usage)
    assert 'pf_vf' in _guards(check) and 'its PF 0000:01:00.0 is assigned to domain other' in check.errors[0]


def test_a_ready_device_passes_and_unknown_facts_fire_no_guard(host):
    """vfio, reset, interrupt remapping, ACS override are not known remotely: they neither pass nor fail
    silently, they are named by not_checked (below), and fire no finding here."""
    check = preflight.check_assignment(host, [{'type': 'pci', 'address': docs.GPU}], 'web', usage={})
    assert check.ok and check.findings == [] and check.warnings == []
    check = preflight.check_assignment(host, [{'type': 'sriov_vf', 'address': docs.VF0}], 'web', usage={})
    assert check.ok, check.errors
    assert guards.verdict(host, docs.GPU)['verdict'] == guards.READY


def test_not_checked_names_the_guards_libvirt_cannot_answer():
    rows = nodedev_source.not_checked('pci')
    whats = ' | '.join(row['what'] for row in rows)
    assert "root disk's controller" in whats and 'default-route NIC' in whats and 'boot VGA' in whats
    assert all(row['guard'] in guards.GUARDS and row['why'] for row in rows)
    assert nodedev_source.not_checked('sriov_vf') == rows
    assert [row['guard'] for row in nodedev_source.not_checked('usb')] == ['host_critical']
    assert nodedev_source.not_checked('nothing') == []


def test_a_real_document_without_iommu_groups_means_the_iommu_is_off():
    host = nodedev_source.read_host([BALLOON])
    assert list(host.pci) == ['0000:00:01.0'] and host.pci['0000:00:01.0'].driver == 'virtio-pci'
    check = preflight.check_assignment(host, [{'type': 'pci', 'address': '0000:00:01.0'}], 'web', usage={})
    assert 'iommu' in _guards(check)


@pytest.mark.parametrize('text', ['', '<device><name>x', "<device><name>pci_x</name><capability type='pci'>"
                                  '<domain>0</domain></capability></device>'])
def test_unreadable_documents_are_problems_not_crashes(text):
    host = nodedev_source.read_host([text, BALLOON])
    assert list(host.pci) == ['0000:00:01.0'] and host.problems[0] == nodedev_source.NOT_VISIBLE
    assert len(host.problems) == 2 and 'node device' in host.problems[1], host.problems


class _FakeConnection:
    uri = 'qemu+ssh://hv1/system'

    def __init__(self, documents=None, lost=False):
        self.documents = documents
        self.lost = lost

    def node_devices(self):
        if self.lost:
            raise _libvirt.ConnectionLost('lost the connection to libvirt at qemu+ssh://hv1/system')
        if self.documents is None:
            raise _libvirt.LibvirtFailure('libvirt failed to list node devices: this function is not supported')
        return list(range(len(self.documents) + 1))

    def node_device_xml(self, device):
        if device == len(self.documents):  # unplugged between the list and the read
            raise _libvirt.LibvirtFailure('Node device not found')
        return self.documents[device]


def test_the_source_reads_every_document_and_says_when_there_are_none():
    assert nodedev_source.NodeDeviceSource(_FakeConnection([BALLOON])).documents() == [BALLOON]
    assert list(nodedev_source.NodeDeviceSource(_FakeConnection([BALLOON])).read_host().pci) == ['0000:00:01.0']
    with pytest.raises(nodedev_source.NodeDevicesUnavailable, match='qemu\\+ssh://hv1/system gives no node devices'):
        nodedev_source.NodeDeviceSource(_FakeConnection()).documents()
    with pytest.raises(_libvirt.ConnectionLost):
        nodedev_source.NodeDeviceSource(_FakeConnection([], lost=True)).documents()


def test_refusals_from_node_devices_name_the_source_and_what_it_cannot_carry(host):
    check = preflight.check_assignment(host, [{'type': 'pci', 'address': '0000:09:00.0'}], 'web', usage={})
    assert "(not among libvirt's node devices)" in check.errors[0] and '/sys/bus/pci' not in check.errors[0]
    check = preflight.check_assignment(host, [{'type': 'pci', 'address': docs.GPU, 'subsystem_vendor': '0x10de'}],
                                       'web', usage={})
    assert _guards(check) == ['ids']
    assert ("the subsystem vendor id cannot be compared with 0x10de as configured: libvirt's node devices do not "
            'carry subsystem ids') in check.errors[0] and 'None' not in check.errors[0]


def test_the_summary_of_a_document_and_the_host_model_come_from_the_same_reader(host):
    summaries = {entry['name']: entry for entry in map(nodedev_source.summary, docs.sriov_host())}
    pf = next(entry for entry in summaries.values() if entry['address'] == docs.PF)
    assert (pf['type'], pf['vendor'], pf['product'], pf['iommu_group']) == ('pci', '0x8086', '0x1521', 2)
    assert host.pci[docs.PF].iommu_group == pf['iommu_group']
    mdev = next(entry for entry in summaries.values() if entry['type'] == 'mdev')
    assert (mdev['uuid'], mdev['mdev_type']) == (docs.MDEV_UUID, 'nvidia-63') and docs.MDEV_UUID in host.mdevs
    usb = next(entry for entry in summaries.values() if entry['type'] == 'usb_device' and entry['device'] == 2)
    assert (usb['bus'], usb['vendor']) == (1, '0x046d')
