# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The functional-test fixtures work: both URIs take definitions, the private daemon is private,
and ``run_module`` runs a collection module from the working tree in its own process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET

import pytest

from harness import embed, libvirtd


def guest_xml(name, memory_mib=64):
    return """
<domain type='qemu'>
  <name>%s</name>
  <uuid>%s</uuid>
  <memory unit='MiB'>%d</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices>
</domain>
""" % (name, uuid.uuid4(), memory_mib)


def read_back(virsh, uri, name):
    root = ET.fromstring(virsh(uri, 'dumpxml', '--inactive', name))
    return {
        'name': root.findtext('name'),
        'uuid': root.findtext('uuid'),
        'memory_kib': int(root.findtext('memory')),
        'machine': root.find('os/type').get('machine'),
    }


@pytest.fixture(params=['embed', 'libvirtd'])
def uri(request):
    return request.getfixturevalue('%s_uri' % request.param)


def test_define_and_read_back(uri, virsh):
    name = 'harness-%s' % uuid.uuid4().hex[:8]
    xml = guest_xml(name, memory_mib=96)
    virsh(uri, 'define', '{xml}', xml=xml)
    try:
        got = read_back(virsh, uri, name)
        assert got['name'] == name
        assert got['uuid'] == ET.fromstring(xml).findtext('uuid')
        assert got['memory_kib'] == 96 * 1024
        # libvirt expanded the machine alias: proof that the real QEMU driver (not a stub) answered
        assert re.match(r'pc-i440fx-\d', got['machine']), got['machine']
        assert name in virsh(uri, 'list', '--all', '--name').split()
    finally:
        virsh(uri, 'undefine', name)
    assert name not in virsh(uri, 'list', '--all', '--name').split()


def test_embed_root_keeps_definitions_below_its_root(tmp_path, virsh, embed_template):
    root = tmp_path / 'root'
    uri = embed.prepare_embed_root(str(root), seed_from=embed_template)
    assert uri == 'qemu:///embed?root=%s' % root
    assert 'user = "root"' in (root / 'etc' / 'qemu.conf').read_text(encoding='utf-8')
    seeded = sorted(os.listdir(embed.capabilities_dir(str(root))))
    assert seeded and seeded == sorted(os.listdir(embed.capabilities_dir(embed_template)))
    virsh(uri, 'define', '{xml}', xml=guest_xml('kept'))
    assert (root / 'etc' / 'qemu' / 'kept.xml').is_file()
    # a second process (a new virsh) sees what the first one defined
    assert read_back(virsh, uri, 'kept')['name'] == 'kept'


def test_private_libvirtd_runs_guests_and_keeps_its_state_private(libvirtd_uri, virsh):
    name = 'harness-live-%s' % uuid.uuid4().hex[:8]
    virsh(libvirtd_uri, 'define', '{xml}', xml=guest_xml(name))
    try:
        virsh(libvirtd_uri, 'start', name)
        assert virsh(libvirtd_uri, 'domstate', name).strip() == 'running'
        socket_dir = os.path.dirname(libvirtd_uri.split('socket=', 1)[1])
        private = os.path.join(socket_dir, 'root')
        assert os.path.isfile(os.path.join(private, 'etc/libvirt/qemu/%s.xml' % name))
        assert not os.path.exists('/etc/libvirt/qemu/%s.xml' % name)
        with open(os.path.join(private, 'run/libvirt/qemu/%s.pid' % name), encoding='utf-8') as handle:
            qemu_pid = int(handle.read())
        assert os.readlink('/proc/%d/exe' % qemu_pid).endswith('qemu-system-x86_64')
        # the guest outlives the virsh process that started it
        assert virsh(libvirtd_uri, 'domstate', name).strip() == 'running'
    finally:
        virsh(libvirtd_uri, 'destroy', name, check=False)
        virsh(libvirtd_uri, 'undefine', name)


def test_libvirtd_start_stop_cli(tmp_path, libvirtd_dir):
    directory = str(tmp_path / 'd')
    script = os.path.join(os.path.dirname(libvirtd.__file__), 'libvirtd.py')
    started = subprocess.run([sys.executable, script, 'start', directory, '--seed-from', libvirtd_dir],
                             capture_output=True, text=True, check=False, timeout=180)
    try:
        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == 'qemu:///system?socket=%s/libvirt-sock' % directory
        assert libvirtd.is_running(directory)
        version = subprocess.run(['virsh', '-c', started.stdout.strip(), 'version'], capture_output=True,
                                 text=True, check=False, timeout=60)
        assert version.returncode == 0 and 'QEMU' in version.stdout, version.stderr
    finally:
        stopped = subprocess.run([sys.executable, script, 'stop', directory], capture_output=True, text=True,
                                 check=False, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert 'stopped libvirtd' in stopped.stdout
    assert not libvirtd.is_running(directory)


def test_run_module_sees_what_virsh_defined(embed_uri, virsh, run_module):
    virsh(embed_uri, 'define', '{xml}', xml=guest_xml('doomed'))
    checked = run_module('domain', {'uri': embed_uri, 'name': 'doomed', 'state': 'absent'}, check_mode=True)
    assert checked['changed'] is True and checked['rc'] == 0, checked
    assert 'doomed' in virsh(embed_uri, 'list', '--all', '--name').split()  # check mode wrote nothing
    removed = run_module('domain', {'uri': embed_uri, 'name': 'doomed', 'state': 'absent'})
    assert removed['changed'] is True, removed
    assert 'doomed' not in virsh(embed_uri, 'list', '--all', '--name').split()
    again = run_module('domain', {'uri': embed_uri, 'name': 'doomed', 'state': 'absent'})
    assert again['changed'] is False, again


def test_run_module_returns_failures(embed_uri, run_module):
    result = run_module('domain', {'uri': embed_uri, 'name': 'x', 'memory': 1})
    assert result['failed'] is True and result['rc'] == 1
    assert 'memory' in result['msg'] and '1' in result['msg']
