# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guest role's SR-IOV path with ansible-playbook: VFs by PF (PCI address or interface name) and index.

The host is the fake SR-IOV tree (tests/unit/sysfs_trees.py: PF 0000:41:00.0 ens2f0 with 4 VFs, PF
0000:41:00.1 ens2f1 with none), the guests go to an embedded QEMU driver. Asserted: a VF the PF does not
have yet is created by the host preparation (passthrough_host -> sriov_vfs) before any guest is touched,
predicted in check mode, which writes nothing; without host preparation that guest is refused before any
guest is defined; a trusted VF with a VLAN and a MAC is typed interface options (trustGuestRxFilters in the
definition), and a second run changes nothing.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import yaml

from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import build

PLAY = {
    'hosts': 'localhost', 'gather_facts': False,
    'vars': {
        # the fake host's own IOMMU arguments (its grub file), the bootloader update a no-op
        'passthrough_host_iommu': 'amd', 'passthrough_host_bootloader': 'grub',
        'passthrough_host_bootloader_update_command': ['true'], 'passthrough_host_persistent': False,
    },
    'tasks': [{'name': 'The guests', 'ansible.builtin.include_role': {'name': 'virtdev.libvirt.guest'}}],
}


def run_role(tmp_path, collections, check=False, **role_vars):
    play = dict(PLAY, vars=dict(PLAY['vars'], **role_vars))
    playbook = tmp_path / 'play.yml'
    playbook.write_text(yaml.safe_dump([play]), encoding='utf-8')
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default', ANSIBLE_CALLBACK_RESULT_FORMAT='json')
    argv = [ansible_playbook, '-i', 'localhost,', '-c', 'local', '-e',
            'ansible_python_interpreter=%s' % sys.executable, str(playbook)] + (['--check', '--diff'] if check else [])
    proc = subprocess.run(argv, env=env, text=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=900,
                          check=False)
    recap = re.search(r'localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)', proc.stdout)
    assert recap, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc.returncode, int(recap.group(2)), proc.stdout


def numvfs(root, pf):
    with open(os.path.join(root, 'sys/bus/pci/devices', pf, 'sriov_numvfs'), encoding='utf-8') as handle:
        return int(handle.read().strip())


def test_vfs_by_pf_and_index_are_created_first_or_refused_and_trust_is_typed(tmp_path, embed_uri, virsh,
                                                                             collection_pythonpath):
    root = str(build('sriov', tmp_path))
    # its bootloader file, with the IOMMU arguments the fake kernel runs with (no reboot pending)
    os.makedirs(os.path.join(root, 'etc/default'), exist_ok=True)
    with open(os.path.join(root, 'etc/default/grub'), 'w', encoding='utf-8') as handle:
        handle.write('GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX="amd_iommu=on iommu=pt"\n')
    common = {'guest_uri': embed_uri, 'guest_host_root': root}
    wants_new_vf = [{'name': 'nfv01', 'profile': 'sriov_nic', 'type': 'qemu', 'memory': 128,
                     'vfs': [{'pf': 'ens2f1', 'index': 1, 'mac': '52:54:00:6a:00:01'}]}]

    # check mode: the VF count of ens2f1 (0000:41:00.1) predicted by sriov_vfs, the guest shown, nothing written
    rc, _changed, out = run_role(tmp_path, collection_pythonpath, check=True, guests=wants_new_vf, **common)
    assert rc == 0, out[-4000:]
    assert re.search(r'changed: \[localhost\] => \(item=0000:41:00.1\)', out), out[-4000:]
    assert re.search(r'after: pci 0000:41:00.1 sriov_numvfs\n@@ -1 \+1 @@\n-0\n\+2\n', out), out[-4000:]
    assert '"vfs_created_first": [\n' in out and 'VF 1 of PF 0000:41:00.1' in out, out[-4000:]
    assert numvfs(root, '0000:41:00.1') == 0
    assert virsh(embed_uri, 'list', '--all', '--name').strip() == ''

    # without host preparation: refused before any guest is defined, naming the PF, the count and the guest
    rc, _changed, out = run_role(tmp_path, collection_pythonpath, guests=wants_new_vf, guest_prepare_host=False,
                                 **common)
    assert rc != 0 and 'PF 0000:41:00.1 needs 2 VFs for nfv01' in out and 'no guest was changed' in out, out[-4000:]
    assert virsh(embed_uri, 'list', '--all', '--name').strip() == ''

    # a VF the PF has (ens2f0 has 4), trusted, with a VLAN and a MAC: typed options, not raw XML
    trusted = [{'name': 'nfv02', 'profile': 'sriov_nic', 'type': 'qemu', 'memory': 128,
                'vfs': [{'pf': 'ens2f0', 'index': 1, 'mac': '52:54:00:6a:00:02', 'vlan': 42, 'trust': True},
                        {'pf': '0000:41:00.0', 'index': 2}]}]
    rc, changed, out = run_role(tmp_path, collection_pythonpath, guests=trusted, guest_prepare_host=False, **common)
    assert rc == 0 and changed == 2, out[-4000:]   # the guest, its devices
    xml = virsh(embed_uri, 'dumpxml', '--inactive', 'nfv02')
    nics = re.findall(r"<interface type='hostdev'.*?</interface>", xml, re.S)
    assert len(nics) == 2, xml
    assert "trustGuestRxFilters='yes'" in nics[0] and "<mac address='52:54:00:6a:00:02'/>" in nics[0], nics[0]
    assert "<tag id='42'/>" in nics[0] and "bus='0x41' slot='0x02' function='0x1'" in nics[0], nics[0]
    assert "bus='0x41' slot='0x02' function='0x2'" in nics[1] and 'trustGuestRxFilters' not in nics[1], nics[1]
    rc, changed, out = run_role(tmp_path, collection_pythonpath, guests=trusted, guest_prepare_host=False, **common)
    assert rc == 0 and changed == 0, out[-4000:]
