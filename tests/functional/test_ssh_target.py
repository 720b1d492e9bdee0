# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Modules executing on a hypervisor over SSH, with the target's system Python and Debian's bindings.

A private sshd (its own config, host key and authorized key, 127.0.0.1 on a spare port, stopped by PID)
is the "hypervisor"; ansible-playbook reaches it with the ssh connection and runs the modules with
/usr/bin/python3, which imports Debian's python3-libvirt and python3-lxml. The modules talk to the
session's private libvirtd on that host. A Python without the packages (a bare venv of the same
interpreter) gets one message naming both, with their package names.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

SYSTEM_PYTHON = '/usr/bin/python3'
SSHD = '/usr/sbin/sshd'


def _spare_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


@pytest.fixture(scope='module')
def sshd(tmp_path_factory):
    for tool in (SSHD, shutil.which('ssh'), shutil.which('ssh-keygen')):
        if not tool or not os.path.exists(tool):
            pytest.fail('needs openssh-server and openssh-client (requirements/apt-packages.txt)')
    directory = tmp_path_factory.mktemp('sshd')
    host_key, client_key = directory / 'host_ed25519', directory / 'client_ed25519'
    for key in (host_key, client_key):
        subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(key)], check=True)
    (directory / 'authorized_keys').write_text((directory / 'client_ed25519.pub').read_text())
    port = _spare_port()
    config = directory / 'sshd_config'
    config.write_text('\n'.join((
        'Port %d' % port, 'ListenAddress 127.0.0.1', 'HostKey %s' % host_key,
        'AuthorizedKeysFile %s' % (directory / 'authorized_keys'), 'PasswordAuthentication no',
        'KbdInteractiveAuthentication no', 'PermitRootLogin prohibit-password', 'UsePAM no', 'StrictModes no',
        'PidFile %s' % (directory / 'sshd.pid'), 'Subsystem sftp internal-sftp', '')))
    os.makedirs('/run/sshd', mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    proc = subprocess.Popen([SSHD, '-D', '-e', '-f', str(config)], stdin=subprocess.DEVNULL,  # pylint: disable=consider-using-with
                            stdout=open(directory / 'sshd.log', 'wb'), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail('sshd exited: %s' % (directory / 'sshd.log').read_text())
            time.sleep(0.1)
    try:
        yield {'port': port, 'key': str(client_key), 'dir': directory}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def _play(sshd, collections, tmp_path, python, tasks):
    inventory = tmp_path / 'inventory.yml'
    inventory.write_text(json.dumps({'all': {'hosts': {'hypervisor': {
        'ansible_connection': 'ssh', 'ansible_host': '127.0.0.1', 'ansible_port': sshd['port'],
        'ansible_user': 'root', 'ansible_ssh_private_key_file': sshd['key'],
        'ansible_ssh_common_args': '-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null',
        # no ControlPersist master: nothing of the test outlives the test's sshd
        'ansible_ssh_args': '-o ControlMaster=no',
        'ansible_python_interpreter': python}}}}))
    playbook = tmp_path / 'play.yml'
    playbook.write_text(json.dumps([{'hosts': 'hypervisor', 'gather_facts': False, 'tasks': tasks}]))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR='1',
               ANSIBLE_HOST_KEY_CHECKING='False', ANSIBLE_LOCAL_TEMP=str(tmp_path / 'ansible-local'))
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', str(inventory),
                           str(playbook)], env=env, text=True, capture_output=True, stdin=subprocess.DEVNULL,
                          timeout=600, check=False)
    recap = re.search(r'hypervisor\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', proc.stdout)
    assert recap and recap.group(3) == '0', proc.stdout[-3000:] + proc.stderr[-2000:]
    return int(recap.group(2)), int(recap.group(4)), proc.stdout


def test_domain_devices_over_ssh_with_the_system_python(sshd, collection_pythonpath, libvirtd_uri, run_module,
                                                        virsh, tmp_path):
    domain = 'ssh-target'
    assert run_module('domain', {'uri': libvirtd_uri, 'name': domain, 'type': 'qemu', 'memory': 128})['changed']
    task = {'virtdev.libvirt.domain_devices': {
        'uri': libvirtd_uri, 'domain': domain,
        'config': [{'kind': 'rng', 'backend': '/dev/urandom'},
                   {'kind': 'interface', 'mac': '52:54:00:55:00:01', 'source': {'user': True}, 'model': 'virtio'}]}}
    try:
        changed, failed, out = _play(sshd, collection_pythonpath, tmp_path, SYSTEM_PYTHON, [task])
        assert (changed, failed) == (1, 0), out
        xml = virsh(libvirtd_uri, 'dumpxml', '--inactive', domain)
        assert '52:54:00:55:00:01' in xml and '/dev/urandom' in xml
        changed, failed, out = _play(sshd, collection_pythonpath, tmp_path, SYSTEM_PYTHON, [task])
        assert (changed, failed) == (0, 0), out
    finally:
        virsh(libvirtd_uri, 'undefine', domain, check=False)


def test_a_python_without_the_bindings_is_told_both_package_names(sshd, collection_pythonpath, tmp_path):
    bare = tmp_path / 'bare'
    subprocess.run([SYSTEM_PYTHON, '-m', 'venv', '--without-pip', str(bare)], check=True)
    task = {'virtdev.libvirt.domain_devices': {'uri': 'qemu:///system', 'domain': 'any', 'state': 'gathered'},
            'ignore_errors': True, 'register': 'result'}
    show = {'ansible.builtin.debug': {'msg': 'RESULT={{ result.msg }}'}}
    _changed, failed, out = _play(sshd, collection_pythonpath, tmp_path, str(bare / 'bin' / 'python3'), [task, show])
    assert failed == 0, out  # the failure was ignored, so the message could be shown
    message = re.search(r'RESULT=(.*)"', out).group(1)
    assert 'lxml, libvirt' in message and 'apt-get install python3-lxml python3-libvirt' in message, message
    assert 'dnf install python3-lxml python3-libvirt' in message and 'pip install lxml libvirt-python' in message
    assert 'virtdev.libvirt.hypervisor' in message
