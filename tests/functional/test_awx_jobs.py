# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The job-template playbooks run as AWX runs them: ansible-runner (the engine AWX and Automation Platform
run jobs with) in a private data directory, survey answers in ``env/extravars``, ``--check --diff`` in
``env/cmdline`` for a check job, the pattern's thin playbook as the project. Hosts are fake host trees
(tests/unit/sysfs_trees.py) reached with the local connection; guests go to the embedded QEMU driver.

Asserted: the stats event's ``artifact_data`` (what AWX shows on the job page and passes to the next
workflow node) holds each host's summary; a check job changes nothing; a wrong answer fails in the
validation task, before any task touches a host, naming the variable; the directory the job started from
is left as it was; a two-job workflow chained the AWX way (the first job's artifacts as the second job's
extra vars) stops guest creation while a reboot is pending and converges the guests once it is cleared.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import build

# ansible-runner comes with requirements/dev.txt; the skip only covers a venv bootstrapped before it
ansible_runner = pytest.importorskip('ansible_runner')

REPO = Path(__file__).resolve().parents[2]
PATTERNS = REPO / 'extensions' / 'patterns'
VALIDATION_TASK = 'Check the inputs against playbooks/%s.meta.yml'


class Job:
    """What AWX keeps of a finished job: status, events, artifacts."""

    def __init__(self, runner, project, project_before):
        self.rc = runner.rc
        self.status = runner.status
        self.events = list(runner.events)
        stats = [event['event_data'] for event in self.events if event['event'] == 'playbook_on_stats']
        self.stats = stats[-1] if stats else {}
        self.artifacts = self.stats.get('artifact_data', {})
        self.stdout = runner.stdout.read()
        self.project_after = sorted(os.listdir(project))
        self.project_before = project_before

    def host_tasks(self):
        """Names of the tasks that ran on a host (ok, changed, failed or skipped), in order."""
        return [event['event_data']['task'] for event in self.events
                if event['event'] in ('runner_on_ok', 'runner_on_failed', 'runner_on_skipped')]

    def failures(self):
        return [(event['event_data']['task'], event['event_data']['res'].get('msg', ''))
                for event in self.events if event['event'] == 'runner_on_failed']

    def changed(self):
        return sum(self.stats.get('changed', {}).values())


@pytest.fixture
def awx_job(tmp_path, collection_pythonpath):
    counter = [0]

    def run(pattern, extravars, hosts='hv1 ansible_connection=local', check=False):
        counter[0] += 1
        private = tmp_path / ('job-%d' % counter[0])
        project = private / 'project'
        # the project AWX checks out: here the pattern's playbooks, started from as AWX does
        shutil.copytree(str(PATTERNS / pattern / 'playbooks'), str(project))
        project_before = sorted(os.listdir(project))
        (private / 'env').mkdir()
        (private / 'inventory').mkdir()
        (private / 'inventory' / 'hosts').write_text(''.join(
            '%s ansible_python_interpreter=%s\n' % (line, sys.executable) for line in hosts.splitlines()),
            encoding='utf-8')
        (private / 'env' / 'extravars').write_text(json.dumps(extravars), encoding='utf-8')
        (private / 'env' / 'envvars').write_text(json.dumps({
            'ANSIBLE_COLLECTIONS_PATH': str(collection_pythonpath),
            'ANSIBLE_LOCAL_TEMP': str(tmp_path / 'ansible-tmp'),
            'ANSIBLE_REMOTE_TEMP': str(tmp_path / 'ansible-tmp'),
            'PATH': os.path.dirname(sys.executable) + os.pathsep + os.environ.get('PATH', '')}), encoding='utf-8')
        if check:
            (private / 'env' / 'cmdline').write_text('--check --diff', encoding='utf-8')
        runner = ansible_runner.run(private_data_dir=str(private), playbook=pattern + '.yml', quiet=True,
                                    timeout=600)
        return Job(runner, project, project_before)

    return run


def _files(root):
    """Every file under ``root`` with its content, to prove that nothing was written."""
    found = {}
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                with open(path, 'rb') as handle:
                    found[path] = handle.read()
    return found


def test_host_report_job(awx_job, tmp_path):
    root = build('desktop', tmp_path)
    before = _files(tmp_path)
    job = awx_job('host_report', {'host_report_root': root, 'host_report_libvirt': False})
    assert job.rc == 0, job.stdout
    summary = job.artifacts['virtdev_host_report']['hv1']
    devices = {device['address']: device for device in summary['devices']}
    assert devices['0000:03:00.0'] == {'address': '0000:03:00.0', 'verdict': 'ready', 'reasons': [],
                                       'name': 'I210 Gigabit Network Connection'}
    assert devices['0000:00:1f.0']['verdict'] == 'refused' and devices['0000:00:1f.0']['reasons']
    assert summary['markdown'].startswith('# Host devices on hv1\n')
    # no directory given: no report file anywhere, the started-from directory as it was
    assert job.project_after == job.project_before
    after = _files(tmp_path)
    assert [path for path in after if path not in before and '/job-' not in path] == []

    wrong = awx_job('host_report', {'host_report_root': root, 'host_report_formats': 42})
    assert wrong.rc != 0
    assert wrong.host_tasks() == [VALIDATION_TASK % 'host_report'], wrong.stdout
    [(task, message)] = wrong.failures()
    assert 'host_report_formats' in message and '42' in message, message


GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n'
BOOTED = 'BOOT_IMAGE=/vmlinuz-6.1.0-18-amd64 root=/dev/mapper/vg-root ro quiet'


def test_workflow_reboot_pending_stops_guests_then_they_converge(awx_job, tmp_path, embed_uri, virsh):
    def booted_without_iommu(spec):
        spec['cmdline'] = BOOTED

    root = build('desktop', tmp_path, mutate=booted_without_iommu)
    grub = Path(root) / 'etc' / 'default' / 'grub'
    grub.parent.mkdir(parents=True)
    grub.write_text(GRUB, encoding='utf-8')
    prepare = {'host_prepare_root': root, 'host_prepare_iommu': 'intel', 'host_prepare_bootloader': 'grub',
               'host_prepare_bootloader_update_command': ['/bin/true'], 'host_prepare_persistent': False,
               'host_prepare_vfio_devices': ['0000:03:00.0']}
    # host_prepare is the workflow node that prepares the host: the guests node only converges the guests
    guests = {'guests_uri': embed_uri, 'guests_host_root': root, 'guests_prepare_host': False,
              'guests': [{'name': 'nic01', 'type': 'qemu', 'profile': 'minimal', 'networks': [],
                          'memory': 256, 'host_devices': ['0000:03:00.0']}]}

    # a check job predicts the pending reboot and writes nothing
    before = _files(root)
    check = awx_job('host_prepare', prepare, check=True)
    assert check.rc == 0, check.stdout
    assert check.artifacts['virtdev_host_prepare']['hv1']['reboot_pending'] is True
    assert _files(root) == before

    first = awx_job('host_prepare', prepare)
    assert first.rc == 0, first.stdout
    assert first.artifacts == {'virtdev_host_prepare': {'hv1': {
        'cmdline_changed': True, 'reboot_pending': True, 'devices_bound': ['0000:03:00.0']}}}
    assert 'intel_iommu=on iommu=pt' in grub.read_text(encoding='utf-8')
    assert first.project_after == first.project_before

    # the next workflow node gets the artifacts as extra vars: no guest is touched
    refused = awx_job('guests', dict(guests, **first.artifacts))
    assert refused.rc != 0
    [(task, message)] = refused.failures()
    assert task == 'Refuse guests with host devices while this host waits for a reboot'
    assert 'hv1 has a reboot pending' in message and 'nic01' in message and 'No guest was changed' in message
    assert virsh(embed_uri, 'list', '--all', '--name').strip() == ''

    # the reboot: the running kernel now has the arguments; host_prepare again, then the guests
    (Path(root) / 'proc' / 'cmdline').write_text(BOOTED + ' intel_iommu=on iommu=pt\n', encoding='utf-8')
    second = awx_job('host_prepare', prepare)
    assert second.rc == 0, second.stdout
    assert second.artifacts['virtdev_host_prepare']['hv1'] == {
        'cmdline_changed': False, 'reboot_pending': False, 'devices_bound': ['0000:03:00.0']}

    converged = awx_job('guests', dict(guests, **second.artifacts))
    assert converged.rc == 0, converged.stdout
    line = {'profile': 'minimal', 'created': True, 'changed': True, 'state': 'present', 'restart_required': False}
    assert converged.artifacts == {'virtdev_guests': {'hv1': {'nic01': line}}}
    assert virsh(embed_uri, 'list', '--all', '--name').split() == ['nic01']
    assert "<address domain='0x0000' bus='0x03' slot='0x00' function='0x0'/>" in virsh(embed_uri, 'dumpxml', 'nic01')

    # re-run as a check job: nothing to change, and the summary says so
    again = awx_job('guests', dict(guests, **second.artifacts), check=True)
    assert again.rc == 0, again.stdout
    assert again.changed() == 0
    assert again.artifacts['virtdev_guests']['hv1']['nic01'] == dict(line, created=False, changed=False)


def test_gpu_passthrough_job_checks_first(awx_job, embed_uri, virsh):
    """Runs on localhost of the execution environment, reaching the hypervisor through libvirt_uri."""
    answers = {'libvirt_uri': embed_uri, 'gpu_name': 'gpu01', 'gpu_tcg': True,
               'gpu_addresses': '0000:65:00.0,0000:65:00.1',  # a survey's text answer
               'virtdev_host_prepare': {'hv1': {'cmdline_changed': True, 'reboot_pending': True,
                                                'devices_bound': []}}}
    pending = awx_job('gpu_passthrough', answers, hosts='localhost ansible_connection=local')
    assert pending.rc != 0
    [(task, message)] = pending.failures()
    assert task == 'Refuse while the hypervisor waits for a reboot'
    assert message.startswith('hv1 has a reboot pending') and 'gpu01' in message
    assert 'The guest and its domain-level settings' not in pending.host_tasks()
    assert virsh(embed_uri, 'list', '--all', '--name').strip() == ''

    answers = dict(answers, virtdev_host_prepare={}, gpu_memory='lots')
    wrong = awx_job('gpu_passthrough', answers, hosts='localhost ansible_connection=local')
    assert wrong.host_tasks() == [VALIDATION_TASK % 'gpu_passthrough'], wrong.stdout
    [(task, message)] = wrong.failures()
    assert 'gpu_memory' in message, message


def test_sriov_guest_job(awx_job, tmp_path, embed_uri, virsh):
    root = build('sriov', tmp_path)
    answers = {'sriov_guest_name': 'net01', 'sriov_guest_vfs': '0000:41:02.1', 'sriov_guest_memory': 256,
               'sriov_guest_type': 'qemu', 'sriov_guest_uri': embed_uri, 'sriov_guest_host_root': root}
    job = awx_job('sriov_guest', answers)
    assert job.rc == 0, job.stdout
    assert job.artifacts == {'virtdev_guests': {'hv1': {'net01': {
        'profile': 'minimal', 'created': True, 'changed': True, 'state': 'present', 'restart_required': False}}}}
    xml = virsh(embed_uri, 'dumpxml', 'net01')
    assert "<address domain='0x0000' bus='0x41' slot='0x02' function='0x1'/>" in xml
    assert '<interface' not in xml  # the VF is its only NIC
    assert job.project_after == job.project_before


GPU = ['0000:01:00.0', '0000:01:00.1']


def _hostdevs(xml):
    """(host address, guest address) of each hostdev in a domain's XML or in rendered device XML."""
    root = ElementTree.fromstring('<devices>%s</devices>' % xml if not xml.lstrip().startswith('<domain') else xml)

    def _pci(element):
        return tuple(element.get(field) for field in ('domain', 'bus', 'slot', 'function'))
    return sorted((_pci(hostdev.find('source/address')), _pci(hostdev.find('address')))
                  for hostdev in root.iter('hostdev'))


def test_gpu_passthrough_job(awx_job, tmp_path, embed_uri, virsh):
    """The GPU and its audio function (one IOMMU group, on vfio-pci after host_prepare) given to a new guest,
    checked against the host tree given in gpu_host_root."""
    def gpu_on_vfio(spec):
        for device in spec['pci']:
            if device['address'] in GPU:
                device['driver'] = 'vfio-pci'

    root = build('desktop', tmp_path, mutate=gpu_on_vfio)
    answers = {'libvirt_uri': embed_uri, 'gpu_name': 'gpu01', 'gpu_tcg': True, 'gpu_memory': 512,
               'gpu_host_root': root, 'gpu_addresses': ','.join(GPU),
               'virtdev_host_prepare': {'hv1': {'cmdline_changed': False, 'reboot_pending': False,
                                                'devices_bound': GPU + ['0000:03:00.0']}}}
    local = 'localhost ansible_connection=local'

    # a check job for review: the guest to be created with its planned devices, nothing written
    check = awx_job('gpu_passthrough', answers, hosts=local, check=True)
    assert check.rc == 0, check.stdout
    line = {'profile': 'gpu_passthrough', 'created': True, 'changed': True, 'state': 'present',
            'restart_required': False}
    assert check.artifacts == {'virtdev_guests': {'localhost': {'gpu01': line}}}
    [plan] = [event['event_data']['res']['msg'] for event in check.events
              if event['event'] == 'runner_item_on_ok'
              and event['event_data']['task'] == 'Show the plan of each guest to be created']
    assert plan['guest'] == 'gpu01' and plan['would_create'] is True
    assert [device['address'] for device in plan['devices'] if device['kind'] == 'hostdev'] == GPU
    planned = _hostdevs(''.join(plan['devices_xml']))
    assert [host for host, _guest in planned] == [('0x0000', '0x01', '0x00', '0x0'), ('0x0000', '0x01', '0x00', '0x1')]
    assert virsh(embed_uri, 'list', '--all', '--name').strip() == ''

    job = awx_job('gpu_passthrough', answers, hosts=local)
    assert job.rc == 0, job.stdout
    assert job.artifacts == {'virtdev_guests': {'localhost': {'gpu01': line}}}
    xml = virsh(embed_uri, 'dumpxml', 'gpu01')
    for function in ('0x0', '0x1'):
        assert "<address domain='0x0000' bus='0x01' slot='0x00' function='%s'/>" % function in xml
    # check mode showed exactly the devices the real run gave the guest, at the same guest addresses
    assert _hostdevs(xml) == planned
    assert "<hidden state='on'/>" in xml and "<vendor_id state='on' value='0123456789ab'/>" in xml
    assert job.project_after == job.project_before

    # the same answers again as a check job: nothing to do, and the summary says so
    again = awx_job('gpu_passthrough', answers, hosts=local, check=True)
    assert again.rc == 0, again.stdout
    assert again.changed() == 0
    assert again.artifacts['virtdev_guests']['localhost']['gpu01'] == dict(line, created=False, changed=False)

    # the host checks read the tree of gpu_host_root: its ISA bridge is refused before anything is written,
    # so no half-made guest is left behind
    bridge = awx_job('gpu_passthrough', dict(answers, gpu_name='gpu02', gpu_addresses='0000:00:1f.0'), hosts=local)
    assert bridge.rc != 0
    [(task, refusal)] = bridge.failures()
    assert task == 'Refuse host devices that are not safe to pass through or that another guest uses', task
    assert '0000:00:1f.0 (' in refusal and 'host-critical' in refusal and 'no guest was changed' in refusal, refusal
    assert virsh(embed_uri, 'list', '--all', '--name').split() == ['gpu01']


# a wrong variable in one host's inventory stops every host in the validation task
BAD_HV2 = 'hv1 ansible_connection=local\nhv2 ansible_connection=local guests=\'[{"name": "web01", "memory": "lots"}]\''


# the guests playbook names a wrong guest entry by index and name first (ansible-core's message has no index)
GUESTS_NAMING_TASK = 'Name each wrong guest entry (index, name, option, value) before the generic check'


@pytest.mark.parametrize('pattern, answers, hosts, named', [
    ('host_prepare', {'host_prepare_iommu': 'arm'}, 'hv1 ansible_connection=local', ['host_prepare_iommu', 'arm']),
    ('guests', {}, BAD_HV2, ["guests[0] (web01).memory: 'lots' (str) is not a valid int"]),
    ('sriov_guest', {'sriov_guest_name': 'net01'}, 'hv1 ansible_connection=local', ['sriov_guest_vfs']),
])
def test_wrong_answer_fails_before_any_host_task(awx_job, pattern, answers, hosts, named):
    job = awx_job(pattern, answers, hosts=hosts)
    assert job.rc != 0
    first = GUESTS_NAMING_TASK if pattern == 'guests' else VALIDATION_TASK % pattern
    assert job.host_tasks() == [first] * len(hosts.splitlines()), job.stdout
    [(_task, message)] = job.failures()
    for word in named:
        assert word in message, message


def test_guests_job_takes_guests_type_and_the_inventorys_guest_profiles(awx_job, tmp_path, embed_uri, virsh):
    # guest_profiles as the guest role names it, in the inventory (host_vars); guests_profiles is the job's input
    inventory = ('hv1 ansible_connection=local guest_profiles="{\'tiny\': {\'parent\': \'minimal\', '
                 '\'domain\': {\'title\': \'from the inventory\'}}}"')
    guests = [{'name': 'g1', 'profile': 'tiny', 'networks': [], 'memory': 128},
              {'name': 'g2', 'profile': 'small', 'networks': [], 'memory': 128, 'type': 'qemu'}]
    job = awx_job('guests', {'guests_uri': embed_uri, 'guests_type': 'qemu', 'guests': guests,
                             'guests_profiles': {'small': {'parent': 'tiny', 'domain': {'title': 'from the job'}}}},
                  hosts=inventory)
    assert job.rc == 0, job.stdout
    assert virsh(embed_uri, 'list', '--all', '--name').split() == ['g1', 'g2']
    one, two = (virsh(embed_uri, 'dumpxml', '--inactive', name) for name in ('g1', 'g2'))
    assert "<domain type='qemu'" in one and '<title>from the inventory</title>' in one   # guests_type, no type given
    assert "<domain type='qemu'" in two and '<title>from the job</title>' in two

    wrong = awx_job('guests', {'guests_uri': embed_uri, 'guests_type': 'tcg', 'guests': guests})
    assert wrong.rc != 0 and 'guests_type' in wrong.failures()[0][1], wrong.stdout
