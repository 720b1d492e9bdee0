# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The GitOps example repository of docs/gitops/ run as its pipelines run it, against two private libvirtds.

The layout is copied as it is (inventory, group_vars, host_vars, ansible.cfg) and the commands are read
from its pipeline files: the ``script`` of the review and apply jobs of ``.gitlab-ci.yml``, which must be
the ``run`` of the Review and Apply steps of the GitHub Actions workflow. The only thing added is a second
inventory source that points each hypervisor at a private libvirtd (``guests_uri``) and runs its tasks with
the local connection; the collection comes from this checkout instead of ``ansible-galaxy collection install``.

Asserted: the review job on fresh hypervisors shows every guest of host_vars to be created and writes
nothing; the apply job creates them with their devices; applying again changes nothing; removing a device
from host_vars removes it from the guest, and the review job of that change prints exactly what the apply
job then prints (same diffs, results, recap and summary; each task's results per hypervisor compared in a
fixed order, since the hypervisors run in parallel).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

from harness import libvirtd  # noqa: E402  pylint: disable=wrong-import-position

LAYOUT = TESTS.parent / 'docs' / 'gitops'
HYPERVISORS = ('hv1', 'hv2')
# a line that ends one host's result of a task (the default callback prints a diff before it)
RESULT_END = re.compile(r'^(ok|changed|skipping|included|fatal|failed): ')
RESULT_HOST = re.compile(r'^\w+: \[([^]]+)\]|^included: \S+ for ([^=]+?)(?: =>|$)')
# a loop item's result as the default callback prints it: '... => (item=web01) => {' up to its closing '}'
PLAN_ITEM = re.compile(r'\(item=[^)]*\) => (\{\n.*?\n\})$', re.M | re.S)
RECAP = re.compile(r'^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.M)


def _yaml(path):
    with open(path, encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def pipeline_commands():
    """{'review': command, 'apply': command} as both pipeline files run them."""
    gitlab = _yaml(LAYOUT / '.gitlab-ci.yml')
    github = _yaml(LAYOUT / '.github' / 'workflows' / 'guests.yml')
    commands = {}
    for job in ('review', 'apply'):
        [command] = gitlab[job]['script']
        [step] = [step for step in github['jobs'][job]['steps'] if step.get('name') == job.capitalize()]
        assert step['run'] == command, 'the GitHub workflow and .gitlab-ci.yml run different %s commands' % job
        commands[job] = command
    assert '--check' in commands['review'].split() and '--check' not in commands['apply'].split()
    return commands


class Run:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.changed = {host: int(changed) for host, _ok, changed, _u, _f in RECAP.findall(proc.stdout)}
        stats = re.search(r'^\tRUN: (.*)$', proc.stdout, re.M)
        self.stats = json.loads(stats.group(1)) if stats else {}

    def plans(self):
        """{guest: plan} of each guest that check mode shows it would create (the guest role's plan: profile,
        devices in option format and as libvirt XML)."""
        plans = {}
        for section in re.split(r'\n(?=TASK \[)', self.stdout):
            if section.startswith('TASK [virtdev.libvirt.guest : Show the plan of each guest to be created]'):
                for match in PLAN_ITEM.finditer(section):
                    plan = json.loads(match.group(1))['msg']
                    plans[plan['guest']] = plan
        return plans

    def guests(self, host):
        return self.stats['virtdev_guests'][host]

    def output(self):
        """{host: [(play or task header, the host's result with its diff), ...]} in the order the host ran
        them, and under None what belongs to no host (recap, summary). The hypervisors run in parallel, so
        the order of their results, and of the task sections of files they include, varies between runs."""
        by_host = {None: []}
        for section in re.split(r'\n(?=(?:PLAY|TASK|RUNNING HANDLER) \[|PLAY RECAP)', self.stdout):
            header, _newline, body = section.partition('\n')
            lines = []
            for line in body.splitlines():
                lines.append(line)
                host = RESULT_HOST.search(line) if RESULT_END.match(line) else None
                if host:
                    names = (host.group(1) or host.group(2)).split(', ')  # 'included: FILE for hv2, hv1'
                    if host.group(2):
                        lines[-1] = lines[-1].replace(host.group(2), ', '.join(sorted(names)))
                    for name in names:
                        by_host.setdefault(name, []).append((header, '\n'.join(lines)))
                    lines = []
            # the summary's hosts come in the order they finished: compared as data (stats)
            by_host[None].append((header, '\n'.join(line for line in lines if not line.startswith('\tRUN: '))))
        by_host[None].sort()
        return by_host


@pytest.fixture(scope='module')
def hypervisors(tmp_path_factory, libvirtd_dir):
    """Two private libvirtds, hv1 and hv2 (QEMU capabilities seeded from the session's daemon)."""
    directories = {host: str(tmp_path_factory.mktemp('gitops-' + host)) for host in HYPERVISORS}
    try:
        uris = {host: libvirtd.start(directory, seed_from=libvirtd_dir) for host, directory in directories.items()}
        yield uris
    finally:
        for directory in directories.values():
            libvirtd.stop(directory)


@pytest.fixture
def repository(tmp_path, hypervisors, collection_pythonpath):
    """A checkout of the example repository and a runner of its pipeline commands."""
    checkout = tmp_path / 'repository'
    shutil.copytree(str(LAYOUT), str(checkout))
    # the example's disk images, made where this test may write (domain_devices refuses a missing image)
    images = tmp_path / 'images'
    images.mkdir()
    for host_vars in (checkout / 'host_vars').glob('*.yml'):
        text = host_vars.read_text(encoding='utf-8').replace(EXAMPLE_IMAGES, str(images) + '/')
        host_vars.write_text(text, encoding='utf-8')
        for guest in yaml.safe_load(text)['guests']:
            for disk in guest.get('disks', []):
                subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', disk['file'], '16M'], check=True)
    overlay = tmp_path / 'test-hypervisors.yml'
    overlay.write_text(yaml.safe_dump({'hypervisors': {'hosts': {host: {
        'ansible_connection': 'local', 'ansible_python_interpreter': sys.executable, 'guests_uri': uri}
        for host, uri in hypervisors.items()}}}), encoding='utf-8')
    env = {key: value for key, value in os.environ.items() if not key.startswith('ANSIBLE_')}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collection_pythonpath), ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'ansible-tmp'), ANSIBLE_REMOTE_TEMP=str(tmp_path / 'ansible-tmp'),
               PATH=os.path.dirname(sys.executable) + os.pathsep + env.get('PATH', ''))

    def run(command):
        args = shlex.split(command)
        assert args[0] == 'ansible-playbook', command
        proc = subprocess.run(args + ['-i', str(overlay)], cwd=str(checkout), env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=900, check=False)
        return Run(proc)

    return checkout, run


EXAMPLE_IMAGES = '/var/lib/libvirt/images/'


def _device_tags(xml):
    """How many devices of each element a domain's XML (or rendered device XML) has, leaving out what
    libvirt adds to every guest (controllers, the emulator, the input, graphics and audio of the machine)."""
    root = ElementTree.fromstring(xml if xml.lstrip().startswith('<domain') else '<devices>%s</devices>' % xml)
    devices = root.find('devices') if root.tag == 'domain' else root
    tags = [device.tag for device in devices
            if device.tag not in ('controller', 'emulator', 'input', 'graphics', 'audio')]
    return sorted(tags)


def _domains(virsh, uri):
    return sorted(virsh(uri, 'list', '--all', '--name').split())


# the network the example's guests use (the virtio and emulated profiles' NIC): defined, not started, so no
# bridge is made on this machine; the guest role refuses a guest whose network does not exist
DEFAULT_NETWORK = "<network><name>default</name><bridge name='virbr-gitops'/></network>"


def test_gitops_example(repository, hypervisors, virsh):
    checkout, run = repository
    images = str(checkout.parent / 'images')
    for uri in hypervisors.values():
        if 'default' not in virsh(uri, 'net-list', '--all', '--name').split():
            virsh(uri, 'net-define', xml=DEFAULT_NETWORK)
    commands = pipeline_commands()
    manifests = {host: _yaml(checkout / 'host_vars' / (host + '.yml'))['guests'] for host in HYPERVISORS}
    assert all(manifests.values())

    # a merge request on fresh hypervisors: every guest of host_vars is to be created, nothing is written
    review = run(commands['review'])
    assert review.rc == 0, review.stdout
    plans = review.plans()
    for host, guests in manifests.items():
        assert sorted(review.guests(host)) == sorted(guest['name'] for guest in guests)
        for guest in guests:
            assert review.guests(host)[guest['name']] == {
                'profile': guest['profile'], 'created': True, 'changed': True, 'state': 'present',
                'restart_required': False}
            # the reviewer sees each new guest's devices: its disks and extra devices among them
            planned = plans[guest['name']]['devices']
            assert [device['source']['file'] for device in planned if device['kind'] == 'disk'] == [
                disk['file'] for disk in guest['disks']], planned
            for extra in guest.get('extra_devices', []):
                assert any(extra.items() <= device.items() for device in planned), (extra, planned)
        assert review.changed[host] >= len(guests)
        assert _domains(virsh, hypervisors[host]) == []

    # merged: applied
    apply = run(commands['apply'])
    assert apply.rc == 0, apply.stdout
    for host, guests in manifests.items():
        assert _domains(virsh, hypervisors[host]) == sorted(guest['name'] for guest in guests)
        for guest in guests:
            # check mode predicted the real run: the same summary, and the devices the review showed
            assert apply.guests(host)[guest['name']] == review.guests(host)[guest['name']]
            xml = virsh(hypervisors[host], 'dumpxml', guest['name'])
            for disk in guest['disks']:
                assert "<source file='%s'/>" % disk['file'] in xml, (guest['name'], disk)
            real, planned = _device_tags(xml), _device_tags(''.join(plans[guest['name']]['devices_xml']))
            if 'memballoon' not in planned and 'memballoon' in real:
                real.remove('memballoon')  # libvirt's default balloon for a guest whose profile gives none
            assert real == planned, (guest['name'], real, planned)
    assert "<watchdog model='i6300esb' action='reset'>" in virsh(hypervisors['hv2'], 'dumpxml', 'db01')

    # applied again (the next merge touching another host): nothing to change
    again = run(commands['apply'])
    assert again.rc == 0, again.stdout
    assert again.changed == {'hv1': 0, 'hv2': 0}, again.stdout

    # a merge request that removes web01's data disk from host_vars/hv1.yml
    hv1 = checkout / 'host_vars' / 'hv1.yml'
    text = hv1.read_text(encoding='utf-8')
    data_disk = '      - {file: %s/web01-data.qcow2, format: qcow2}\n' % images
    assert data_disk in text
    hv1.write_text(text.replace(data_disk, ''), encoding='utf-8')
    review = run(commands['review'])
    assert review.rc == 0, review.stdout
    assert review.changed == {'hv1': 1, 'hv2': 0}, review.stdout
    assert 'web01-data.qcow2' in virsh(hypervisors['hv1'], 'dumpxml', 'web01')  # the review wrote nothing
    # its diff shows the disk leaving web01
    [header] = [header for header, result in review.output()['hv1'] if 'web01-data.qcow2' in result]
    assert header.startswith('TASK [virtdev.libvirt.guest : Give every guest its devices (one manifest for the host)]'), header

    # merged: the disk leaves the guest, exactly as the review showed
    apply = run(commands['apply'])
    assert apply.rc == 0, apply.stdout
    assert 'web01-data.qcow2' not in virsh(hypervisors['hv1'], 'dumpxml', 'web01')
    assert "<source file='%s/web01.qcow2'/>" % images in virsh(hypervisors['hv1'], 'dumpxml', 'web01')
    assert apply.changed == review.changed and apply.stats == review.stats
    assert apply.stats['virtdev_guests']['hv1']['web01']['changed'] is True
    assert apply.output() == review.output()
