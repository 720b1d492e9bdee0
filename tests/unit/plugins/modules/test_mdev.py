# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""mdev on the mdev fixture (an Intel iGPU with GVT-g types, an NVIDIA T4 with vGPU types), with a
FakeKernel answering ``create``/``remove`` as the kernel does. No device QEMU emulates here offers mdev
types, so the real-kernel test bed cannot run this module: these fixture trees are where it is tested.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _libvirt
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import node_device_xml
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import mdev as mdev_backend
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import runner, sysfs_source
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.operations import mdev as mdev_operation
from ansible_collections.virtdev.libvirt.plugins.modules import mdev
from ansible_collections.virtdev.libvirt.tests.unit.prepare_helpers import cycle, expect_refused, machine, read, run_module
from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import Tree

IGPU, T4, SATA = '0000:00:02.0', '0000:01:00.0', '0000:00:17.0'
GVT_MDEV, VGPU_MDEV = 'a297db4a-f4c2-11e6-90f6-d3b88d6c9525', '8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e'
NEW = '3b9f6a2e-1c4d-4e5f-8a7b-9c0d1e2f3a4b'
NEEDS_LIBVIRT = pytest.mark.skipif(not _libvirt.HAS_LIBVIRT, reason='libvirt-python is not installed')


def run(capsys, **params):
    return run_module(capsys, mdev, **params)


def exists(root, uuid):
    return os.path.islink(os.path.join(root, 'sys/bus/mdev/devices', uuid))


def available(root, parent, mdev_type):
    return int(read(root, 'sys/bus/pci/devices/%s/mdev_supported_types/%s/available_instances' % (parent, mdev_type)))


def refused(capsys, root, kernel, **params):
    return expect_refused(capsys, mdev, root, kernel, **params)


def test_create_cycle(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'mdev')
    assert available(root, IGPU, 'i915-GVTg_V5_8') == 2
    checked, applied = cycle(capsys, mdev, root, kernel, uuid=NEW.upper(), parent='00:02.0', mdev_type='i915-GVTg_V5_8')
    # the kernel's view: the device, its type link, one instance fewer
    assert exists(root, NEW)
    assert os.path.basename(os.path.realpath(os.path.join(root, 'sys/bus/mdev/devices', NEW, 'mdev_type'))) == \
        'i915-GVTg_V5_8'
    assert available(root, IGPU, 'i915-GVTg_V5_8') == 1
    assert applied['writes'] == [{'path': '/sys/bus/pci/devices/%s/mdev_supported_types/i915-GVTg_V5_8/create' % IGPU,
                                  'value': NEW}]
    assert applied['before'] is None
    assert applied['after'] == checked['after'] == {'uuid': NEW, 'parent': IGPU, 'type': 'i915-GVTg_V5_8'}
    assert applied['available_instances'] == checked['available_instances'] == 1
    assert applied['persisted_with'] is None and applied['files'] == []
    assert 'type: i915-GVTg_V5_8' in checked['diff'][0]['after']
    # the host model sees it too
    assert sysfs_source.read_host(root).mdevs[NEW].parent == IGPU


def test_remove_cycle(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'mdev')
    _checked, applied = cycle(capsys, mdev, root, kernel, uuid=GVT_MDEV, state='absent')
    assert not exists(root, GVT_MDEV)
    assert applied['before'] == {'uuid': GVT_MDEV, 'parent': IGPU, 'type': 'i915-GVTg_V5_4'} and applied['after'] is None
    assert applied['available_instances'] == 2 == available(root, IGPU, 'i915-GVTg_V5_4')


def test_existing_device_of_the_same_type_is_left_alone(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'mdev')
    result = run(capsys, root=root, uuid=VGPU_MDEV, parent=T4, mdev_type='nvidia-222')
    assert result['rc'] == 0 and result['changed'] is False and kernel.writes == []


@pytest.mark.parametrize('params, words', [
    ({'uuid': NEW, 'parent': IGPU, 'mdev_type': 'i915-GVTg_V5_1'},
     "type: 'i915-GVTg_V5_1' is not an mdev type of 0000:00:02.0; it offers i915-GVTg_V5_4 (1 available), "
     "i915-GVTg_V5_8 (2 available)"),
    ({'uuid': NEW, 'parent': T4, 'mdev_type': 'nvidia-223'},
     'type: nvidia-223 on 0000:01:00.0 has no available instances (available_instances is 0)'),
    ({'uuid': VGPU_MDEV, 'parent': IGPU, 'mdev_type': 'i915-GVTg_V5_8'},
     'uuid: 8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e is already used by a mediated device of type nvidia-222 on '
     '0000:01:00.0'),
    ({'uuid': NEW, 'parent': SATA, 'mdev_type': 'x'},
     'parent: 0000:00:17.0 (storage controller, driver ahci) offers no mediated device types'),
    ({'uuid': NEW, 'parent': '0000:05:00.0', 'mdev_type': 'x'}, 'parent: there is no PCI device 0000:05:00.0'),
    ({'uuid': NEW, 'parent': '05:00', 'mdev_type': 'x'}, "parent: '05:00' is not a PCI address"),
    ({'uuid': 'not-a-uuid', 'parent': IGPU, 'mdev_type': 'i915-GVTg_V5_8'}, "uuid: 'not-a-uuid' is not a UUID"),
    ({'uuid': NEW, 'parent': IGPU}, 'state is present but all of the following are missing: mdev_type'),
    ({'uuid': GVT_MDEV, 'state': 'absent', 'parent': T4},
     'uuid: a297db4a-f4c2-11e6-90f6-d3b88d6c9525 is a mediated device on 0000:00:02.0, not on parent 0000:01:00.0'),
    ({'uuid': NEW, 'parent': IGPU, 'mdev_type': 'i915-GVTg_V5_8', 'persistent': True, 'persist_with': 'libvirt'},
     'persist_with: libvirt defines devices of the host libvirt runs on; it needs root: /'),
])
def test_bad_input(capsys, tmp_path, monkeypatch, params, words):
    root, kernel = machine(tmp_path, monkeypatch, 'mdev')
    result = refused(capsys, root, kernel, **params)
    assert words in result['msg'], result['msg']


def test_uuid_defined_for_another_type_in_mdevctl(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'mdev')
    Tree(root).write('etc/mdevctl.d/%s/%s' % (T4, NEW), json.dumps({'mdev_type': 'nvidia-222', 'start': 'auto',
                                                                    'attrs': []}))
    result = refused(capsys, root, kernel, uuid=NEW, parent=IGPU, mdev_type='i915-GVTg_V5_8')
    assert result['errors'] == [
        'uuid: %s is already defined for a mediated device of type nvidia-222 on %s (/etc/mdevctl.d/%s/%s); pick '
        'another UUID or remove that definition first' % (NEW, T4, T4, NEW)]


def test_device_in_use_is_not_removed(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'mdev')
    mdev_dir = os.path.relpath(os.path.realpath(os.path.join(root, 'sys/bus/mdev/devices', VGPU_MDEV)), root)
    Tree(root).link(mdev_dir + '/iommu_group', 'sys/kernel/iommu_groups/30')
    kernel.open_group(30, pid=999, comm='qemu-system-x86')
    result = refused(capsys, root, kernel, uuid=VGPU_MDEV, state='absent')
    assert 'is in use (IOMMU group 30 open by pid 999 (qemu-system-x86))' in result['msg']
    assert exists(root, VGPU_MDEV)


def test_persistent_mdevctl_cycle(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'mdev')
    params = dict(uuid=NEW, parent=T4, mdev_type='nvidia-222', persistent=True)
    _checked, applied = cycle(capsys, mdev, root, kernel, **params)
    path = '/etc/mdevctl.d/%s/%s' % (T4, NEW)
    assert applied['persisted_with'] == 'mdevctl' and applied['files'] == [os.path.join(root, path.lstrip('/'))]
    assert json.loads(read(root, path)) == {'mdev_type': 'nvidia-222', 'start': 'auto', 'attrs': []}
    assert exists(root, NEW)
    # manual start keeps attributes someone added with mdevctl
    data = json.loads(read(root, path))
    data['attrs'] = [{'enable_uvm': '1'}]
    Tree(root).write(path.lstrip('/'), json.dumps(data))
    result = run(capsys, root=root, autostart=False, **params)
    assert result['changed'] is True and result['writes'] == []
    assert json.loads(read(root, path)) == {'mdev_type': 'nvidia-222', 'start': 'manual', 'attrs': [{'enable_uvm': '1'}]}
    # absent removes the device, the definition and the then empty parent directory
    _checked, removed = cycle(capsys, mdev, root, kernel, uuid=NEW, state='absent', persistent=True)
    assert not exists(root, NEW) and read(root, path) is None
    assert not os.path.exists(os.path.join(root, 'etc/mdevctl.d', T4))
    assert removed['files'] == applied['files']


def test_definition_only_is_removed_too(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'mdev')
    Tree(root).write('etc/mdevctl.d/%s/%s' % (IGPU, NEW), '{"mdev_type": "i915-GVTg_V5_8", "start": "auto"}')
    result = run(capsys, root=root, uuid=NEW, state='absent', persistent=True)
    assert result['rc'] == 0 and result['changed'] is True and result['writes'] == []
    assert read(root, 'etc/mdevctl.d/%s/%s' % (IGPU, NEW)) is None


MDEVCTL = shutil.which('mdevctl')
UNSHARE = shutil.which('unshare')


def mdevctl_defined(etc_mdevctl):
    """``mdevctl list --defined --dumpjson`` with ``etc_mdevctl`` mounted over /etc/mdevctl.d in a private
    mount namespace (mdevctl has no root option); None when that is not possible here."""
    for sub in ('scripts.d/callouts', 'scripts.d/notifiers'):
        os.makedirs(os.path.join(etc_mdevctl, sub), exist_ok=True)
    script = 'mount --bind "$1" /etc/mdevctl.d && exec "$2" list --defined --dumpjson'
    proc = subprocess.run([UNSHARE, '-m', '--propagation', 'private', 'sh', '-c', script, 'sh', etc_mdevctl, MDEVCTL],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0 and ('mount' in proc.stderr or 'unshare' in proc.stderr):
        return None
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout or '[]')


@pytest.mark.skipif(MDEVCTL is None or UNSHARE is None or os.geteuid() != 0,
                    reason='needs mdevctl, unshare and root (a private mount namespace)')
def test_mdevctl_reads_the_definitions_we_write(capsys, tmp_path, monkeypatch):
    root, _kernel = machine(tmp_path, monkeypatch, 'mdev')
    assert run(capsys, root=root, uuid=NEW, parent=T4, mdev_type='nvidia-222', persistent=True)['rc'] == 0
    assert run(capsys, root=root, uuid=VGPU_MDEV, parent=T4, mdev_type='nvidia-222', persistent=True,
               autostart=False)['rc'] == 0
    listed = mdevctl_defined(os.path.join(root, 'etc/mdevctl.d'))
    if listed is None:
        pytest.skip('no private mount namespace here')
    assert listed == [{T4: [{NEW: {'mdev_type': 'nvidia-222', 'start': 'auto', 'attrs': []}},
                            {VGPU_MDEV: {'mdev_type': 'nvidia-222', 'start': 'manual', 'attrs': []}}]}] or \
        listed == [{T4: [{VGPU_MDEV: {'mdev_type': 'nvidia-222', 'start': 'manual', 'attrs': []}},
                         {NEW: {'mdev_type': 'nvidia-222', 'start': 'auto', 'attrs': []}}]}]


# -- libvirt as the persistence backend -------------------------------------------------------------------

class FakeDevice:
    def __init__(self, name, xml, persistent=True, autostart=False):
        self._name, self.xml, self.persistent, self.auto = name, xml, persistent, autostart

    def name(self):
        return self._name


class FakeConnection:
    """The part of _libvirt.Connection mdev uses, keeping node devices in memory."""

    def __init__(self, devices=()):
        self.devices = list(devices)
        self.calls = []

    def supports_node_device_define(self):
        return True

    def node_devices(self):
        return list(self.devices)

    def node_device_xml(self, device):
        return device.xml

    def node_device_is_persistent(self, device):
        return device.persistent

    def node_device_autostart(self, device):
        return device.auto

    def node_device_define(self, xml_text):
        parsed = node_device_xml.parse_node_device(xml_text)
        name = 'mdev_%s_%s' % (parsed['uuid'].replace('-', '_'), parsed['parent'][4:])
        assert parsed['name'] == name  # the name libvirt will give it
        device = FakeDevice(name, xml_text)
        self.devices.append(device)
        self.calls.append(('define', name))
        return device

    def node_device_set_autostart(self, device, autostart):
        device.auto = autostart
        self.calls.append(('autostart', device.name(), autostart))

    def node_device_undefine(self, device):
        self.devices.remove(device)
        self.calls.append(('undefine', device.name()))

    def close(self):
        self.calls.append(('close',))


def test_persistent_through_libvirt(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'mdev')
    conn = FakeConnection()
    monkeypatch.setattr(mdev_operation, 'choose_backend', lambda module, root: ('libvirt', conn))
    params = dict(uuid=NEW, parent=IGPU, mdev_type='i915-GVTg_V5_8', persistent=True)
    checked = run(capsys, check=True, root=root, **params)
    assert checked['changed'] is True and checked['persisted_with'] == 'libvirt'
    assert [call['op'] for call in checked['libvirt_calls']] == ['define', 'autostart']
    assert conn.calls == [('close',)] and not exists(root, NEW)
    applied = run(capsys, root=root, **params)
    assert applied['changed'] is True and exists(root, NEW) and applied['files'] == []
    name = 'mdev_%s_0000_00_02_0' % NEW.replace('-', '_')
    assert conn.calls[1:] == [('define', name), ('autostart', name, True), ('close',)]
    assert node_device_xml.parse_node_device(conn.devices[0].xml)['mdev_type'] == 'i915-GVTg_V5_8'
    again = run(capsys, root=root, **params)
    assert again['changed'] is False and again['libvirt_calls'] == []
    gone = run(capsys, root=root, uuid=NEW, state='absent', persistent=True)
    assert gone['changed'] is True and not exists(root, NEW) and conn.devices == []
    assert ('undefine', name) in conn.calls


def test_uuid_defined_in_libvirt_for_another_type(capsys, tmp_path, monkeypatch):
    root, kernel = machine(tmp_path, monkeypatch, 'mdev')
    conn = FakeConnection()
    defined = conn.node_device_define(mdev_backend.render_nodedev_xml(T4, 'nvidia-222', NEW))
    monkeypatch.setattr(mdev_operation, 'choose_backend', lambda module, root: ('libvirt', conn))
    result = refused(capsys, root, kernel, uuid=NEW, parent=IGPU, mdev_type='i915-GVTg_V5_8', persistent=True)
    assert result['errors'] == [
        'uuid: %s is already defined for a mediated device of type nvidia-222 on %s (libvirt node device %s); pick '
        'another UUID or remove that definition first' % (NEW, T4, defined.name())]


@NEEDS_LIBVIRT
def test_auto_falls_back_to_mdevctl_when_libvirt_cannot_define():
    # the test driver has no node device definitions: a real libvirt says so
    class Module:
        params = {'persist_with': 'auto', 'uri': 'test:///default'}
        warnings = []

        def warn(self, text):
            self.warnings.append(text)

    assert mdev_operation.choose_backend(Module(), '/') == ('mdevctl', None)
    Module.params = {'persist_with': 'libvirt', 'uri': 'test:///default'}
    with pytest.raises(runner.Failed, match='this libvirt cannot define node devices'):
        mdev_operation.choose_backend(Module(), '/')
    Module.params = {'persist_with': 'auto', 'uri': 'qemu+unix:///system?socket=/nonexistent/sock'}
    assert mdev_operation.choose_backend(Module(), '/') == ('mdevctl', None)
    assert any('libvirt is not reachable' in warning for warning in Module.warnings)


XML_VALIDATE = shutil.which('virt-xml-validate')


@pytest.mark.skipif(XML_VALIDATE is None, reason='virt-xml-validate (libvirt-clients) is not installed')
def test_node_device_xml_is_valid_for_libvirt(tmp_path):
    text = mdev_backend.render_nodedev_xml(IGPU, 'i915-GVTg_V5_8', NEW)
    path = tmp_path / 'nodedev.xml'
    path.write_text(text)
    proc = subprocess.run([XML_VALIDATE, str(path), 'nodedev'], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    parsed = node_device_xml.parse_node_device(text)
    assert (parsed['parent'], parsed['mdev_type'], parsed['uuid']) == ('pci_0000_00_02_0', 'i915-GVTg_V5_8', NEW)
