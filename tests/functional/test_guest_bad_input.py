# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guest role refuses a wrong device value before any task writes: the planner checks every device a guest
will get with the kind table's rules, naming the user's field (``guests[2] (emu01).networks[0].mac``) - no guest is
defined for it, an existing guest's pending setting change is not written, the recap says changed=0."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.tests.functional.test_guest_sriov import run_role

GUEST = {'type': 'qemu', 'memory': 128, 'networks': [], 'profile': 'minimal'}


@pytest.mark.parametrize('wrong, message', [
    ({'networks': [{'network': 'default', 'mac': '52:54:00:zz:00:01'}]},
     "guests[2] (emu01).networks[0].mac: '52:54:00:zz:00:01' is not a MAC address"),
    ({'disks': [{'fiel': '/var/lib/libvirt/images/emu01.qcow2'}]},
     "guests[2] (emu01).disks[0].fiel: unknown option (given '/var/lib/libvirt/images/emu01.qcow2') - did you "
     'mean file?'),
])
def test_a_wrong_device_value_changes_nothing(tmp_path, embed_uri, virsh, collection_pythonpath, wrong, message):
    existing = dict(GUEST, name='web01')
    rc, changed, out = run_role(tmp_path, collection_pythonpath, guest_uri=embed_uri, guests=[existing])
    assert rc == 0 and changed > 0, out[-4000:]
    before = virsh(embed_uri, 'dumpxml', '--inactive', 'web01')

    guests = [dict(existing, memory=256), dict(GUEST, name='new01'), dict(GUEST, name='emu01', **wrong)]
    rc, changed, out = run_role(tmp_path, collection_pythonpath, guest_uri=embed_uri, guests=guests)
    assert rc != 0 and changed == 0 and message in out, out[-4000:]
    assert 'domains[' not in out                      # the module's internal path is not what the user reads
    assert virsh(embed_uri, 'list', '--all', '--name').split() == ['web01']
    assert virsh(embed_uri, 'dumpxml', '--inactive', 'web01') == before


def test_check_mode_plan_shows_the_free_root_ports_and_names_unchecked_networks(
        tmp_path, embed_uri, virsh, collection_pythonpath):
    guests = [dict(GUEST, name='q1', profile='linux_server', networks=[{'network': 'default'}]),
              dict(GUEST, name='q2', networks=[{'network': 'default'}, {'network': 'lan'}], hotplug_ports=2)]
    rc, changed, out = run_role(tmp_path, collection_pythonpath, check=True, guest_uri=embed_uri, guests=guests)
    assert rc == 0 and changed > 0, out[-4000:]
    assert '"free_root_ports": 4' in out and '"free_root_ports": 2' in out, out[-4000:]
    assert 'not checked whether these networks exist: default (used by q1, q2), lan (used by q2).' in out, out[-4000:]
    assert virsh(embed_uri, 'list', '--all', '--name').strip() == ''


def test_a_new_guest_asking_for_a_mapping_shows_its_name_in_check_mode(
        tmp_path, embed_uri, virsh, collection_pythonpath):
    mappings = [{'name': 'gpu', 'candidates': [{'ids': '10de:1b80'}]}]
    guests = [dict(GUEST, name='m1', devices=[{'kind': 'hostdev', 'mapping': 'gpu'}])]
    rc, changed, out = run_role(tmp_path, collection_pythonpath, check=True, guest_uri=embed_uri, guests=guests,
                                guest_mappings=mappings, guest_permitted=['gpu'], guest_prepare_host=False)
    assert rc == 0 and changed > 0, out[-4000:]
    assert '"mappings_resolved_on_creation": [\n' in out and '"gpu"' in out, out[-4000:]
    assert virsh(embed_uri, 'list', '--all', '--name').strip() == ''
