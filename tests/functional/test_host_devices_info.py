# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""host_devices_info in its own process: this machine's real sysfs (read only), domains and node
devices of the private libvirtd, and playbooks/host_report.yml through ansible-playbook."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import build

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def guest_xml(name, devices=''):
    return """
<domain type='qemu'>
  <name>%s</name>
  <uuid>%s</uuid>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    %s
  </devices>
</domain>
""" % (name, uuid.uuid4(), devices)


PASSTHROUGH_DEVICES = """
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></source>
    </hostdev>
    <hostdev mode='subsystem' type='usb' managed='yes'>
      <source><vendor id='0x046d'/><product id='0xc31c'/></source>
    </hostdev>
    <interface type='hostdev' managed='yes'>
      <mac address='52:54:00:aa:bb:01'/>
      <source><address type='pci' domain='0x0000' bus='0x03' slot='0x00' function='0x0'/></source>
    </interface>
"""


def by_address(result):
    return {entry['address']: entry for entry in result['pci_devices']}


@pytest.mark.skipif(not os.path.isdir('/sys/bus/pci/devices'), reason='no PCI bus in this sysfs')
def test_this_machine_read_only(run_module):
    """The real /sys of this machine: every PCI device judged, nothing written (it is only read)."""
    before = {name: os.readlink(os.path.join('/sys/bus/pci/devices', name))
              for name in os.listdir('/sys/bus/pci/devices')}
    result = run_module('host_devices_info', {'libvirt': False, 'format': ['facts', 'markdown']})
    assert result['rc'] == 0, result
    assert result['changed'] is False
    assert sorted(by_address(result)) == sorted(before)
    for entry in result['pci_devices']:
        assert entry['verdict'] in ('ready', 'needs_preparation', 'refused')
        if entry['verdict'] == 'refused':
            assert entry['reasons']
        with open(os.path.join('/sys/bus/pci/devices', entry['address'], 'vendor'), encoding='ascii') as handle:
            assert entry['vendor'] == handle.read().strip()
    if not os.listdir('/sys/kernel/iommu_groups'):
        assert result['iommu']['enabled'] is False
        assert all('iommu' in [r['guard'] for r in entry['reasons']] for entry in result['pci_devices'])
    root_source = [line.split()[0] for line in open('/proc/mounts', encoding='utf-8') if line.split()[1] == '/']
    if root_source and root_source[-1].startswith('/dev/vd'):
        # a virtio disk: its PCI function is the controller behind /
        assert any('the controller of /' in reason for reasons in result['host_critical'].values()
                   for reason in reasons)
    assert result['reports']['markdown'].count('\n| 0000:') >= len(before)
    assert before == {name: os.readlink(os.path.join('/sys/bus/pci/devices', name))
                      for name in os.listdir('/sys/bus/pci/devices')}


def test_private_libvirtd_domains_and_node_devices(libvirtd_uri, virsh, run_module, tmp_path):
    root = build('desktop', tmp_path)
    suffix = uuid.uuid4().hex[:6]
    defined, running = 'hd-defined-%s' % suffix, 'hd-running-%s' % suffix
    # libvirt accepts a hostdev for a device this machine does not have at define time (not at start)
    virsh(libvirtd_uri, 'define', '{xml}', xml=guest_xml(defined, PASSTHROUGH_DEVICES))
    virsh(libvirtd_uri, 'define', '{xml}', xml=guest_xml(running))
    virsh(libvirtd_uri, 'start', running)
    try:
        result = run_module('host_devices_info', {'uri': libvirtd_uri, 'root': root, 'format': ['facts', 'dot']})
        assert result['rc'] == 0, result
        devices = by_address(result)
        assert devices['0000:01:00.0']['used_by'] == [{'domain': defined, 'live': False, 'config': True}]
        assert devices['0000:03:00.0']['used_by'] == [{'domain': defined, 'live': False, 'config': True}]
        assert devices['0000:01:00.1']['used_by'] == []
        usb = {entry['name']: entry for entry in result['usb_devices']}
        assert usb['1-1']['used_by'] == [{'domain': defined, 'live': False, 'config': True}]
        assert result['libvirt']['uri'] == libvirtd_uri
        assert result['libvirt']['domains'] >= 2
        assert not any(use['domain'] == running for entry in result['pci_devices'] for use in entry['used_by'])
        # node devices come from this machine's udev: whatever PCI devices it has are counted
        assert result['libvirt']['node_devices'].get('pci', 0) == len(os.listdir('/sys/bus/pci/devices'))
        assert result['problems'] == []

        # the same through the read-only socket is refused nothing: the module only reads
        assert virsh(libvirtd_uri, 'domstate', running).strip() == 'running'
    finally:
        virsh(libvirtd_uri, 'destroy', running, check=False)
        virsh(libvirtd_uri, 'undefine', running, check=False)
        virsh(libvirtd_uri, 'undefine', defined, check=False)


def test_private_libvirtd_on_this_machine(libvirtd_uri, run_module):
    """root=/ and the daemon's node devices describe the same machine: names are matched."""
    result = run_module('host_devices_info', {'uri': libvirtd_uri})
    assert result['rc'] == 0, result
    names = {entry['address']: entry.get('libvirt_name') for entry in result['pci_devices']}
    assert names and all(name == 'pci_%s' % address.replace(':', '_').replace('.', '_')
                         for address, name in names.items())
    assert result['libvirt']['only_in_libvirt'] == []


def test_host_report_playbook(tmp_path, collection_pythonpath):
    root = build('desktop', tmp_path)
    out = tmp_path / 'reports'
    inventory = tmp_path / 'inventory'
    inventory.write_text('bench ansible_connection=local ansible_python_interpreter=%s\n' % sys.executable,
                         encoding='utf-8')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collection_pythonpath), ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCAL_TEMP=str(tmp_path / 'tmp'), ANSIBLE_REMOTE_TEMP=str(tmp_path / 'tmp'))
    command = [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', str(inventory),
               os.path.join(REPO, 'playbooks', 'host_report.yml'),
               '-e', 'host_report_root=%s host_report_libvirt=false host_report_dir=%s' % (root, out)]
    first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    expected = ['bench.dot', 'bench.html', 'bench.md'] + (['bench.svg'] if shutil.which('dot') else [])
    assert sorted(os.listdir(str(out))) == expected
    markdown = (out / 'bench.md').read_text(encoding='utf-8')
    assert markdown.startswith('# Host devices on bench\n')
    assert '| 0000:03:00.0 | Intel Corporation I210 Gigabit Network Connection [8086:1533] | Ethernet controller ' \
           '| vfio-pci | 8 | -1 |  | ready |' in markdown
    assert (out / 'bench.dot').read_text(encoding='utf-8').startswith('digraph iommu_groups {')
    if shutil.which('dot'):
        assert '<svg' in (out / 'bench.svg').read_text(encoding='utf-8')
    second = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert second.returncode == 0, second.stdout + second.stderr
    assert 'changed=0' in second.stdout  # same host, same reports: nothing rewritten


# -- a real kernel's sysfs: Debian's kernel under QEMU TCG with an emulated Intel IOMMU ------------------

sys.path.insert(0, os.path.join(REPO, 'tests', 'kernel'))
import testbed  # noqa: E402  pylint: disable=wrong-import-position,wrong-import-order

GUEST_SCRIPT = """
set -e
mkdir -p /tmp/hdi/ansible_collections/virtdev
ln -sfn {repo} /tmp/hdi/ansible_collections/virtdev/libvirt
PYTHONPATH=/tmp/hdi {python} -m ansible_collections.virtdev.libvirt.plugins.modules.host_devices_info {args} \
    > /run/testbed/hdi-result.json
"""


def run_in_guest(append):
    """Boot the test bed with ``append`` on the kernel command line, run the module in it (sysfs of the
    guest kernel), return its result."""
    testbed.require()
    with testbed.Guest(append=append) as guest:
        args = guest.put('hdi-args.json', '{"ANSIBLE_MODULE_ARGS": {"libvirt": false, "format": ["facts", "dot"]}}')
        result = guest.run(GUEST_SCRIPT.format(repo=REPO, python=sys.executable, args=args), timeout=600)
        assert result.rc == 0, result.output
        text = guest.get('hdi-result.json')
    return json.loads(text)


@pytest.mark.skipif(shutil.which('qemu-system-x86_64') is None, reason='QEMU is not installed')
def test_real_kernel_with_iommu():
    result = run_in_guest(('intel_iommu=on', 'iommu=pt'))
    assert result['problems'] == []
    iommu = result['iommu']
    assert iommu['enabled'] is True and iommu['kind'] == 'intel' and iommu['units'] == ['dmar0']
    assert iommu['firmware_table'] == 'DMAR'
    assert iommu['interrupt_remapping'] is True  # intel-iommu,intremap=on: /proc/interrupts shows IR-
    assert iommu['vfio_device'] is True and iommu['modules']['vfio_pci'] is True
    assert iommu['passthrough_mode'] is True and iommu['cmdline'] == {'intel_iommu': 'on', 'iommu': 'pt'}
    devices = by_address(result)
    lone = devices[testbed.Guest.LONE_NIC]
    assert (lone['vendor'], lone['device']) == testbed.Guest.NIC_IDS
    assert lone['driver'] == 'e1000e' and lone['iommu_group_members'] == [testbed.Guest.LONE_NIC]
    assert lone['verdict'] == 'needs_preparation'
    assert [step['message'] for step in lone['steps']] == ['bind 0000:00:03.0 (now e1000e) to vfio-pci']
    first, second = testbed.Guest.BRIDGED_NICS
    bridged = devices[first]
    assert bridged['parent'] == testbed.Guest.BRIDGE
    assert sorted(bridged['iommu_group_members']) == sorted([testbed.Guest.BRIDGE, first, second])
    assert bridged['verdict'] == 'needs_preparation'
    assert [step['address'] for step in bridged['steps']] == [first, second]
    bridge = devices[testbed.Guest.BRIDGE]
    assert bridge['verdict'] == 'refused' and bridge['endpoint'] is False
    assert [reason['guard'] for reason in bridge['reasons']] == ['endpoint']
    isa, ahci, smbus = testbed.Guest.HOST_CRITICAL
    assert devices[isa]['role'] == 'chipset' and devices[smbus]['role'] == 'chipset'
    assert sorted(reason['guard'] for reason in devices[isa]['reasons']) == ['group_critical', 'host_critical']
    assert sorted(reason['guard'] for reason in devices[ahci]['reasons']) == ['group_critical', 'group_critical']
    assert devices['0000:00:00.0']['verdict'] == 'refused'
    assert result['reports']['dot'].count('subgraph "cluster_group_') == len(result['iommu_groups'])


@pytest.mark.skipif(shutil.which('qemu-system-x86_64') is None, reason='QEMU is not installed')
def test_real_kernel_with_iommu_off():
    result = run_in_guest(('intel_iommu=off',))
    iommu = result['iommu']
    # DMA remapping is off, but the firmware still has its DMAR table, the vfio modules still create
    # /dev/vfio/vfio and interrupt remapping stays on (observed on Debian's 6.1 kernel)
    assert (iommu['enabled'], iommu['groups'], iommu['units']) == (False, 0, [])
    assert (iommu['kind'], iommu['firmware_table']) == ('intel', 'DMAR')
    assert iommu['cmdline'] == {'intel_iommu': 'off'}
    assert result['summary']['ready'] == result['summary']['needs_preparation'] == 0
    for entry in result['pci_devices']:
        assert entry['iommu_group'] is None and entry['verdict'] == 'refused'
        assert 'iommu' in [reason['guard'] for reason in entry['reasons']]
    lone = by_address(result)[testbed.Guest.LONE_NIC]
    assert lone['reasons'] == [{
        'guard': 'iommu', 'overridable': True,
        'message': 'the IOMMU is off: no groups under /sys/kernel/iommu_groups (the firmware has an ACPI DMAR '
                   'table); add intel_iommu=on to the kernel command line'}]
