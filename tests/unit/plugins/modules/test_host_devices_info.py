# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""host_devices_info as Ansible runs it: fixture sysfs trees, libvirt through the in-process test driver."""

from __future__ import annotations

import json
import os

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.virtdev.libvirt.plugins.module_utils import _libvirt
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import source
from ansible_collections.virtdev.libvirt.plugins.modules import host_devices_info
from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import FIXTURES, build

TEST_DRIVER_URI = 'test://' + os.path.join(FIXTURES, 'libvirt-test-driver.xml')
NEEDS_LIBVIRT = pytest.mark.skipif(not _libvirt.HAS_LIBVIRT, reason='libvirt-python is not installed')


def run(capsys, check=False, **params):
    params['_ansible_check_mode'] = check
    with patch_module_args(params):
        with pytest.raises(SystemExit) as exc:
            host_devices_info.main()
    result = json.loads(capsys.readouterr().out)
    result['rc'] = exc.value.code
    return result


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp('roots')
    return {name: build(name, base) for name in ('desktop', 'mdev', 'malformed', 'iommu_off')}


def by_address(result):
    return {entry['address']: entry for entry in result['pci_devices']}


def test_without_libvirt(capsys, roots):
    result = run(capsys, root=roots['desktop'], libvirt=False)
    assert result['rc'] == 0 and result['changed'] is False
    assert 'libvirt' not in result and 'reports' not in result
    assert result['root'] == roots['desktop']
    assert result['summary'] == {'ready': 1, 'needs_preparation': 3, 'refused': 11}
    devices = by_address(result)
    gpu = devices['0000:01:00.0']
    assert (gpu['vendor_name'], gpu['device_name'], gpu['driver'], gpu['iommu_group'], gpu['verdict']) == \
        ('NVIDIA Corporation', 'GP104 [GeForce GTX 1080]', 'nouveau', 1, 'needs_preparation')
    assert [step['address'] for step in gpu['steps']] == ['0000:01:00.0', '0000:01:00.1']
    assert gpu['used_by'] == []
    assert devices['0000:00:02.0']['reasons'] == [{
        'guard': 'host_critical', 'overridable': True,
        'message': 'is host-critical: the boot VGA device (boot_vga=1): the host console'}]
    assert result['iommu']['kind'] == 'intel' and result['iommu']['enabled'] is True
    assert result['host_critical']['0000:02:00.0'][0] == 'the controller of / (ext4 on /dev/mapper/vg-root)'
    assert [entry['name'] for entry in result['usb_devices']] == ['1-1', '1-2', '1-3', '1-4', '1-4.1', 'usb1']
    assert result['iommu_groups'][0] == {'group': 0, 'type': 'identity', 'devices': ['0000:00:00.0'],
                                         'held_by': []}
    assert result['problems'] == []


def test_check_mode_gives_the_same_answer(capsys, roots):
    normal = run(capsys, root=roots['desktop'], libvirt=False)
    checked = run(capsys, check=True, root=roots['desktop'], libvirt=False)
    for result in (normal, checked):
        result.pop('invocation', None)
    assert checked == normal


def test_reports(capsys, roots):
    result = run(capsys, root=roots['desktop'], libvirt=False, format=['facts', 'markdown', 'html', 'dot'])
    assert sorted(result['reports']) == ['dot', 'html', 'markdown']
    assert result['reports']['markdown'].startswith('# Host devices on %s\n' % roots['desktop'])
    assert '| 0000:03:00.0 | Intel Corporation I210 Gigabit Network Connection [8086:1533] |' in \
        result['reports']['markdown']
    assert result['reports']['html'].startswith('<!DOCTYPE html>')
    assert result['reports']['dot'].count('subgraph "cluster_group_') == 9
    single = run(capsys, root=roots['desktop'], libvirt=False, format='dot', title='lab')
    assert list(single['reports']) == ['dot'] and 'label="lab"' in single['reports']['dot']


def test_without_pci_ids_names_are_null(capsys, roots):
    assert not os.path.exists(os.path.join(roots['mdev'], 'usr'))  # mdev.yml ships no pci.ids
    result = run(capsys, root=roots['mdev'], libvirt=False)
    gpu = by_address(result)['0000:01:00.0']
    assert gpu['vendor_name'] is None and gpu['class_name'] == 'display controller'
    named = run(capsys, root=roots['mdev'], libvirt=False, pci_ids=os.path.join(FIXTURES, 'pci.ids'))
    assert by_address(named)['0000:01:00.0']['device_name'] == 'TU104GL [Tesla T4]'


def test_malformed_tree_is_reported(capsys, roots):
    result = run(capsys, root=roots['malformed'], libvirt=False)
    assert result['rc'] == 0
    assert 'sys/kernel/iommu_groups/abc: an IOMMU group directory whose name is not a number; ignored' in \
        result['problems']
    assert by_address(result)['0000:00:03.0']['verdict'] == 'refused'
    assert by_address(result)['0000:00:03.0']['reasons'][0]['guard'] == 'sysfs'


def test_iommu_off(capsys, roots):
    result = run(capsys, root=roots['iommu_off'], libvirt=False)
    assert result['iommu']['enabled'] is False and result['summary']['refused'] == 4
    assert all('iommu' in [reason['guard'] for reason in entry['reasons']] for entry in result['pci_devices'])


@pytest.mark.parametrize('params, message', [
    ({'root': '/nonexistent/tree'}, "root: '/nonexistent/tree' is not a directory"),
    ({'pci_ids': '/nonexistent/pci.ids'}, "pci_ids: '/nonexistent/pci.ids' is not a file"),
    ({'format': ['pdf']}, 'value of format must be one or more of: facts, markdown, html, dot. Got no match for: pdf'),
    ({'libvirt': 'maybe'}, "argument 'libvirt' is of type"),
])
def test_bad_input_fails_naming_the_field(capsys, roots, params, message):
    params.setdefault('root', roots['desktop'])
    result = run(capsys, libvirt=params.pop('libvirt', False), **params)
    assert result['rc'] == 1 and result['failed'] is True
    assert message in result['msg']


@NEEDS_LIBVIRT
def test_libvirt_usage_and_node_devices(capsys, roots):
    result = run(capsys, root=roots['desktop'], uri=TEST_DRIVER_URI)
    assert result['rc'] == 0, result
    devices = by_address(result)
    assert devices['0000:01:00.0']['used_by'] == [{'domain': 'gpu-vm', 'live': True, 'config': True}]
    assert devices['0000:01:00.1']['used_by'] == [{'domain': 'gpu-vm', 'live': True, 'config': True}]
    assert devices['0000:03:00.0']['used_by'] == [{'domain': 'fw', 'live': False, 'config': True}]
    assert devices['0000:00:17.0']['used_by'] == []
    assert devices['0000:01:00.0']['libvirt_name'] == 'pci_0000_01_00_0'
    assert 'libvirt_name' not in devices['0000:00:17.0']
    usb = {entry['name']: entry for entry in result['usb_devices']}
    assert usb['1-1']['used_by'] == [{'domain': 'fw', 'live': False, 'config': True}]
    libvirt = result['libvirt']
    assert libvirt['uri'] == TEST_DRIVER_URI and libvirt['domains'] == 3
    assert libvirt['node_devices'] == {'pci': 3, 'mdev': 2, 'usb_device': 1}
    assert libvirt['only_in_libvirt'] == [
        {'name': 'mdev_11111111_2222_3333_4444_555555555555_0000_01_00_0', 'type': 'mdev',
         'uuid': '11111111-2222-3333-4444-555555555555'},
        {'name': 'mdev_8c1bd7f6_5c0f_4c8b_9b7e_2f2a3b4c5d6e_0000_01_00_0', 'type': 'mdev',
         'uuid': '8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e'},
        {'name': 'pci_0000_05_00_0', 'type': 'pci', 'address': '0000:05:00.0'},
    ]
    # the desktop tree has no mdevs: both libvirt-defined ones are listed as not active
    assert [(m['uuid'], m['parent'], m['type'], m['active']) for m in result['mdev_devices']] == [
        ('11111111-2222-3333-4444-555555555555', '0000:01:00.0', 'nvidia-222', False),
        ('8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e', '0000:01:00.0', 'nvidia-222', False)]
    # root is a fixture tree, not this host: libvirt's groups (03:00.0 is in 12 there) are not compared
    assert result['problems'] == []


@NEEDS_LIBVIRT
def test_libvirt_mdev_in_use(capsys, roots):
    result = run(capsys, root=roots['mdev'], uri=TEST_DRIVER_URI)
    mdevs = {entry['uuid']: entry for entry in result['mdev_devices']}
    vgpu = mdevs['8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e']
    assert vgpu['active'] is True and vgpu['used_by'] == [{'domain': 'vdi', 'live': True, 'config': True}]
    assert vgpu['libvirt_name'] == 'mdev_8c1bd7f6_5c0f_4c8b_9b7e_2f2a3b4c5d6e_0000_01_00_0'
    assert mdevs['11111111-2222-3333-4444-555555555555']['active'] is False
    assert mdevs['a297db4a-f4c2-11e6-90f6-d3b88d6c9525']['used_by'] == []


@NEEDS_LIBVIRT
def test_uri_from_environment(capsys, roots, monkeypatch):
    monkeypatch.setenv('LIBVIRT_DEFAULT_URI', TEST_DRIVER_URI)
    result = run(capsys, root=roots['desktop'])
    assert result['rc'] == 0 and result['libvirt']['uri'] == TEST_DRIVER_URI


@NEEDS_LIBVIRT
def test_unreachable_libvirt_fails_with_a_hint(capsys, roots):
    result = run(capsys, root=roots['desktop'], uri='test:///nonexistent/state.xml')
    assert result['rc'] == 1
    assert result['msg'].startswith('libvirt failed to connect on test:///nonexistent/state.xml: ')
    assert result['msg'].endswith('(set libvirt: false to inventory the host without libvirt)')


@NEEDS_LIBVIRT
def test_groups_compared_on_this_host(capsys, monkeypatch):
    """root=/ with a local URI: libvirt's IOMMU groups are compared with sysfs (the test driver state puts
    03:00.0 in group 12, the sysfs read here says 8)."""
    def host_facts(host, usage=None):
        return {'pci_devices': [{'address': '0000:03:00.0', 'iommu_group': 8, 'used_by': []}],
                'mdev_devices': [], 'problems': [], 'summary': {}}

    monkeypatch.setattr(host_devices_info.host_facts, 'host_facts', host_facts)
    result = run(capsys, uri=TEST_DRIVER_URI)
    assert result['problems'] == ['libvirt puts 0000:03:00.0 in IOMMU group 12, sysfs in group 8']


@pytest.mark.parametrize('root, uri, expected', [
    ('/', 'qemu:///system', True),
    ('/', 'qemu:///system?socket=/run/x/libvirt-sock', True),
    ('/', 'test:///tmp/state.xml', True),
    ('/', 'qemu+ssh://root@node7/system', False),
    ('/', 'qemu+tcp://10.0.0.7/system', False),
    ('/srv/copy', 'qemu:///system', False),
])
def test_sysfs_is_libvirt_host(root, uri, expected, tmp_path):
    if root != '/':
        root = str(tmp_path)
    assert source.sysfs_is_libvirt_host(root, uri) is expected


@NEEDS_LIBVIRT
def test_mappings_are_reported_with_holders_free_count_and_mismatches(capsys, roots):
    mappings = [{'name': 'gtx1080', 'multifunction': True,
                 'candidates': [{'address': '0000:01:00.0', 'ids': '10de:1b80', 'subsystem': '1043:8591'}]},
                {'name': 'i210', 'description': 'the second NIC',
                 'candidates': [{'ids': '8086:1533'}, {'address': '0000:00:1f.6', 'ids': '8086:15b8'}]}]
    result = run(capsys, root=roots['desktop'], uri=TEST_DRIVER_URI, mappings=mappings,
                 permitted=['gtx1080', {'class': '0c03'}], format=['facts', 'markdown', 'html'])
    assert result['rc'] == 0, result
    gpu, nic = result['mappings']
    assert gpu['free'] == 0 and gpu['candidates'][0]['functions'] == ['0000:01:00.0', '0000:01:00.1']
    assert gpu['candidates'][0]['held_by'] == [{'domain': 'gpu-vm', 'live': True, 'config': True}]   # running
    assert [row['device'] for row in nic['candidates']] == ['0000:03:00.0', '0000:00:1f.6']
    assert nic['candidates'][0]['held_by'][0]['domain'] == 'fw' and nic['free'] == 0
    assert nic['mismatches'] == ['0000:00:1f.6: vendor:device is 8086:15bc on this host, the mapping says 8086:15b8 '
                                 '(the card was replaced or moved)']
    assert result['permitted'] == {'pci': ['0000:00:14.0', '0000:01:00.0', '0000:01:00.1'], 'usb': [], 'mdev': []}
    markdown = result['reports']['markdown']
    assert '## Device mappings' in markdown and '| gtx1080 (0 free, asks 1) | 0000:01:00.0 |' in markdown
    assert 'gpu-vm (running)' in markdown and 'vendor:device is 8086:15bc' in markdown
    assert nic['description'] == 'the second NIC' and gpu['description'] is None
    assert '| i210 (0 free, asks 1): the second NIC |' in markdown and 'the second NIC' in result['reports']['html']
    assert '<h2>Device mappings</h2>' in result['reports']['html']


def test_bad_mappings_fail_naming_the_field(capsys, roots):
    result = run(capsys, root=roots['desktop'], libvirt=False,
                 mappings=[{'name': 'gpu', 'candidates': [{'ids': 'nvidia'}]}])
    assert result['failed'] is True and result['msg'].startswith("mappings[0].candidates[0].ids: 'nvidia'"), result
