# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An interface taking an SR-IOV VF by PF and index (``source: {pf, vf}``): validated by the kind table,
resolved against the host model from sysfs (fixture trees) and from libvirt's node devices alike."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_apply, _device_engine
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import nodedev_source, sysfs_source
from ansible_collections.virtdev.libvirt.tests.unit import nodedev_docs as docs
from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import build

PF, PF_WITHOUT_VFS, AHCI, VF = '0000:41:00.0', '0000:41:00.1', '0000:42:00.0', '0000:41:02.0'


@pytest.fixture(name='sysfs_host', scope='module')
def sysfs_host_fixture(tmp_path_factory):
    return sysfs_source.read_host(build('sriov', tmp_path_factory.mktemp('sriov')))


def test_the_kind_table_takes_pf_and_vf_and_refuses_bad_values_naming_them():
    item, = _device_engine.declare([{'kind': 'interface', 'source': {'pf': '0000:41:0.0', 'vf': 2}}], 'web')
    assert item.spec['source'] == {'pf': PF, 'vf': 2} and _device_apply.names_vf_by_pf(item)
    assert item.kind.device_class(item.spec) == 'passthrough'
    for source, field, value in (({'pf': 'eth0', 'vf': 1}, 'source.pf', "'eth0'"),
                                 ({'pf': PF, 'vf': -1}, 'source.vf', '-1'),
                                 ({'pf': PF, 'vf': 'two'}, 'source.vf', "'two'")):
        with pytest.raises(SpecError, match=r'config\[0\]\.%s: %s' % (field.replace('.', r'\.'), value)):
            _device_engine.declare([{'kind': 'interface', 'source': source}], 'web')
    with pytest.raises(SpecError, match='a pf source also needs: vf'):
        _device_engine.declare([{'kind': 'interface', 'source': {'pf': PF}}], 'web')


@pytest.mark.parametrize('index, address', [(0, '0000:41:02.0'), (2, '0000:41:02.2'), (3, '0000:41:02.3')])
def test_sysfs_gives_the_vf_of_that_index(sysfs_host, index, address):
    assert _device_apply.vf_address(sysfs_host, {'pf': PF, 'vf': index}, 'config[0].source') == address


@pytest.mark.parametrize('source, message', [
    ({'pf': PF, 'vf': 4}, r'config\[0\]\.source\.vf: 4 is out of range: PF 0000:41:00\.0 has 4 VFs \(0\.\.3\)'),
    ({'pf': PF_WITHOUT_VFS, 'vf': 0}, r'config\[0\]\.source\.vf: 0 is out of range: PF 0000:41:00\.1 has no VFs '
                                      r'enabled \(create them with virtdev\.libvirt\.sriov_vfs\)'),
    ({'pf': AHCI, 'vf': 0}, r'config\[0\]\.source\.pf: 0000:42:00\.0 is not an SR-IOV physical function'),
    ({'pf': VF, 'vf': 0}, r'config\[0\]\.source\.pf: 0000:41:02\.0 is an SR-IOV VF \(of PF 0000:41:00\.0\), not a PF'),
    ({'pf': '0000:09:00.0', 'vf': 0}, r'config\[0\]\.source\.pf: there is no PCI device 0000:09:00\.0 on this host '
                                      r'\(not under /sys/bus/pci/devices\)'),
])
def test_sysfs_refusals_name_the_field_and_value(sysfs_host, source, message):
    with pytest.raises(SpecError, match=message):
        _device_apply.vf_address(sysfs_host, source, 'config[0].source')


def test_node_devices_give_the_same_answers():
    host = nodedev_source.read_host(docs.sriov_host())
    assert _device_apply.vf_address(host, {'pf': docs.PF, 'vf': 0}, 'config[0].source') == docs.VF0
    assert _device_apply.vf_address(host, {'pf': docs.PF, 'vf': 1}, 'config[0].source') == docs.VF4
    with pytest.raises(SpecError, match=r'source\.vf: 2 is out of range: PF %s has 2 VFs \(0\.\.1\)' % docs.PF):
        _device_apply.vf_address(host, {'pf': docs.PF, 'vf': 2}, 'config[0].source')
    with pytest.raises(SpecError, match=r"source\.pf: there is no PCI device 0000:09:00\.0 on this host "
                                        r"\(not among libvirt's node devices\)"):
        _device_apply.vf_address(host, {'pf': '0000:09:00.0', 'vf': 0}, 'config[0].source')
    with pytest.raises(SpecError, match=r'source\.pf: %s is not an SR-IOV physical function' % docs.GPU):
        _device_apply.vf_address(host, {'pf': docs.GPU, 'vf': 0}, 'config[0].source')
