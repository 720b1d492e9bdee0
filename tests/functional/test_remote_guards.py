# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The passthrough guards over a remote URI: the module on the controller, libvirt behind qemu+ssh://.

A private sshd (test_ssh_target's fixture) on 127.0.0.1 and the session's private libvirtd make the remote
hypervisor: ``qemu+ssh://root@127.0.0.1:PORT/system?socket=...`` tunnels through ssh and ``nc`` to it. The
guards read the host from libvirt's node devices over that connection:

* this machine's real PCI devices (read-only, as libvirt lists them) for a nonexistent address and a device in
  another guest's definition;
* node device documents served by a fake source (tests/unit/nodedev_docs.py, through nodedev_source_fake.py) for
  what this machine has not: an SR-IOV PF with its VFs, an IOMMU group of two devices. Only the documents are
  mocked; the module, its connection (domain usage, defines), the reader and the guards are the real code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest
from lxml import etree

from test_ssh_target import sshd  # noqa: F401  pylint: disable=unused-import,import-error

from ansible_collections.virtdev.libvirt.tests.unit import nodedev_docs as docs  # noqa: E402

GUEST = "<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>" \
        "<os><type arch='x86_64' machine='q35'>hvm</type></os>{devices}</domain>"
# this machine's virtio balloon as libvirt lists it (never started, never bound: only defined into guests)
REAL_DEVICE = '0000:00:01.0'
HOSTDEV = "<devices><hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' " \
          "bus='0x00' slot='0x01' function='0x0'/></source></hostdev></devices>"
FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'nodedev_source_fake.py')


@pytest.fixture(name='remote_uri')
def remote_uri_fixture(sshd, libvirtd_uri):  # pylint: disable=redefined-outer-name
    """The private libvirtd through ssh: a wrapper keeps ssh from asking about (and recording) the host key."""
    wrapper = sshd['dir'] / 'ssh-wrapper'
    wrapper.write_text('#!/bin/sh\nexec ssh -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no '
                       '-o BatchMode=yes -o LogLevel=ERROR "$@"\n')
    wrapper.chmod(0o755)
    socket_path = parse_qs(urlsplit(libvirtd_uri).query)['socket'][0]
    return ('qemu+ssh://root@127.0.0.1:%d/system?socket=%s&keyfile=%s&command=%s&no_tty=1'
            % (sshd['port'], socket_path, sshd['key'], wrapper))


@pytest.fixture(name='guest')
def guest_fixture(libvirtd_uri, virsh):
    names = []

    def define(name, devices=''):
        virsh(libvirtd_uri, 'define', '{xml}', xml=GUEST.format(name=name, devices=devices))
        names.append(name)
        return name

    yield define
    for name in names:
        virsh(libvirtd_uri, 'undefine', name, check=False)


@pytest.fixture(name='run_faked')
def run_faked_fixture(tmp_path, collection_pythonpath):
    """Run a module like run_module, with node device documents from ``documents`` (the mocked source)."""
    def run(name, args, documents, check_mode=False):
        (tmp_path / 'nodedevs.json').write_text(json.dumps(documents))
        (tmp_path / 'args.json').write_text(json.dumps({'ANSIBLE_MODULE_ARGS': dict(args,
                                                                                    _ansible_check_mode=check_mode)}))
        env = dict(os.environ, PYTHONPATH=str(collection_pythonpath))
        proc = subprocess.run([sys.executable, FAKE, str(tmp_path / 'nodedevs.json'),
                               'ansible_collections.virtdev.libvirt.plugins.modules.' + name,
                               str(tmp_path / 'args.json')], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=600, env=env, cwd=str(tmp_path), check=False)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            raise AssertionError('no JSON from %s: %s %s' % (name, proc.stdout, proc.stderr)) from None

    return run


def _not_checked_guards(result):
    return {(entry['device'], row['guard'], row['what']) for entry in result['host_checks']['not_checked']
            for row in entry['guards']}


def _assert_names_what_was_not_checked(result, device):
    assert result['host_checks']['source'] == 'libvirt node devices', result
    whats = {what for address, _guard, what in _not_checked_guards(result) if address == device}
    assert {"the root disk's controller (behind /, /boot, /usr, /var, swap)", 'the default-route NIC',
            'the boot VGA device'} <= whats, whats


def _inactive_xml(virsh, uri, name):
    return virsh(uri, 'dumpxml', '--inactive', name)


def _hostdev_addresses(virsh, uri, name):
    """The PCI addresses of the guest's <hostdev> sources in its persistent definition."""
    root = etree.fromstring(_inactive_xml(virsh, uri, name).encode())
    return ['%04x:%02x:%02x.%x' % tuple(int(address.get(part), 16) for part in ('domain', 'bus', 'slot', 'function'))
            for address in root.iterfind('devices/hostdev/source/address')]


def test_a_nonexistent_address_and_a_device_of_another_guest_are_refused_over_ssh(remote_uri, libvirtd_uri, guest,
                                                                                  run_module, virsh):
    """This machine's real node devices, through qemu+ssh: the guards run on them and refuse."""
    guest('remote-other', HOSTDEV)
    name = guest('remote-web')
    before = _inactive_xml(virsh, libvirtd_uri, name)
    missing = run_module('domain_devices', {'uri': remote_uri, 'domain': name,
                                            'config': [{'kind': 'hostdev', 'address': '0000:7f:1f.7'}]})
    assert missing['failed'] and 'there is no PCI device 0000:7f:1f.7' in missing['msg'], missing['msg']
    assert '[guard exists]' in missing['msg'] and not missing['changed']
    _assert_names_what_was_not_checked(missing, '0000:7f:1f.7')
    taken = run_module('domain_devices', {'uri': remote_uri, 'domain': name,
                                          'config': [{'kind': 'hostdev', 'address': REAL_DEVICE}]})
    assert taken['failed'] and 'in the persistent definition of domain remote-other' in taken['msg'], taken['msg']
    assert '[guard in_use_config]' in taken['msg'] and not taken['changed']
    _assert_names_what_was_not_checked(taken, REAL_DEVICE)
    assert 'not checked: over qemu+ssh://' in json.dumps(taken['warnings']), taken['warnings']
    assert _inactive_xml(virsh, libvirtd_uri, name) == before  # nothing written


@pytest.mark.parametrize('config, guard, message', [
    ([{'kind': 'hostdev', 'address': docs.PF}, {'kind': 'interface', 'source': {'hostdev': docs.VF0},
                                                'mac': '52:54:00:00:ab:01'}],
     'pf_vf', 'is a VF of 0000:01:00.0, which is requested too'),
    ([{'kind': 'hostdev', 'address': docs.SHARED_A}], 'group',
     'shares IOMMU group 6 with 0000:04:00.1 (network controller, driver e1000e), which is still bound'),
], ids=['pf-with-its-vf', 'not-alone-in-its-group'])
def test_sriov_and_shared_groups_from_node_devices_are_refused_over_ssh(config, guard, message, remote_uri,
                                                                        libvirtd_uri, guest, run_faked, virsh):
    name = guest('remote-sriov')
    before = _inactive_xml(virsh, libvirtd_uri, name)
    result = run_faked('domain_devices', {'uri': remote_uri, 'domain': name, 'config': config}, docs.sriov_host())
    assert result['failed'] and '[guard %s]' % guard in result['msg'] and message in result['msg'], result['msg']
    _assert_names_what_was_not_checked(result, config[0].get('address') or docs.PF)
    assert _inactive_xml(virsh, libvirtd_uri, name) == before


def test_a_ready_device_is_assigned_with_the_unchecked_guards_named_and_strict_refuses(remote_uri, libvirtd_uri,
                                                                                       guest, run_faked, virsh):
    name = guest('remote-gpu')
    args = {'uri': remote_uri, 'domain': name, 'config': [{'kind': 'hostdev', 'address': docs.GPU}]}
    strict = run_faked('domain_devices', dict(args, host_checks='strict'), docs.sriov_host())
    assert strict['failed'] and 'host_checks=strict' in strict['msg'] and 'default-route NIC' in strict['msg']
    assert _hostdev_addresses(virsh, libvirtd_uri, name) == []
    predicted = run_faked('domain_devices', args, docs.sriov_host(), check_mode=True)
    assert predicted['changed'] and not predicted.get('failed'), predicted.get('msg')
    _assert_names_what_was_not_checked(predicted, docs.GPU)
    assert _hostdev_addresses(virsh, libvirtd_uri, name) == []  # check mode wrote nothing
    assigned = run_faked('domain_devices', args, docs.sriov_host())
    assert assigned['changed'] and not assigned.get('failed'), assigned.get('msg')
    _assert_names_what_was_not_checked(assigned, docs.GPU)
    assert _hostdev_addresses(virsh, libvirtd_uri, name) == [docs.GPU]
    again = run_faked('domain_devices', args, docs.sriov_host())
    assert not again['changed'] and not again.get('failed'), again.get('msg')


def test_host_devices_info_over_ssh_gives_the_inventory_of_node_devices(remote_uri, libvirtd_uri, guest, run_module):
    """The same devices, ids and drivers as sysfs gives locally; the guards not checked named per device."""
    guest('remote-info', HOSTDEV)
    local = run_module('host_devices_info', {'uri': libvirtd_uri})
    remote = run_module('host_devices_info', {'uri': remote_uri, 'format': ['facts', 'markdown']})
    assert remote['rc'] == 0 and remote['source'] == 'libvirt node devices' and local['source'] == 'sysfs', remote

    def identity(result):
        return {entry['address']: (entry['vendor'], entry['device'], entry['class'], entry['driver'],
                                   entry['iommu_group'], entry['verdict']) for entry in result['pci_devices']}
    assert identity(remote) == identity(local) and len(identity(remote)) == len(os.listdir('/sys/bus/pci/devices'))
    device = {entry['address']: entry for entry in remote['pci_devices']}[REAL_DEVICE]
    assert device['used_by'] == [{'domain': 'remote-info', 'live': False, 'config': True}]
    assert 'boot_vga' in device['not_available'] and device['boot_vga'] is None
    assert {'the default-route NIC', 'the boot VGA device'} <= {row['what'] for row in device['not_checked']}
    assert 'Host devices on 127.0.0.1' in remote['reports']['markdown']


def test_host_devices_info_over_ssh_judges_sriov_and_groups_from_node_devices(remote_uri, run_faked):
    result = run_faked('host_devices_info', {'uri': remote_uri}, docs.sriov_host())
    assert result['source'] == 'libvirt node devices', result
    assert len(result['problems']) == 1 and 'do not show the host\'s mounts, routes' in result['problems'][0]
    devices = {entry['address']: entry for entry in result['pci_devices']}
    assert devices[docs.GPU]['verdict'] == 'ready'
    assert devices[docs.PF]['sriov'] == {'totalvfs': 7, 'numvfs': 2, 'vfs': [docs.VF0, docs.VF4]}
    assert devices[docs.VF4]['physfn'] == docs.PF
    assert [step['address'] for step in devices[docs.SHARED_A]['steps']] == [docs.SHARED_A, docs.SHARED_B]
    assert devices['0000:00:1c.0']['verdict'] == 'refused'
    assert devices['0000:00:00.0']['host_critical'] == ['a chipset function (host bridge, class 0x060000)']
    assert result['iommu_groups'][6]['devices'] == [docs.SHARED_A, docs.SHARED_B]
    assert result['mdev_devices'][0]['uuid'] == docs.MDEV_UUID


def test_host_devices_info_on_the_embedded_driver_warns_instead_of_failing(embed_uri, run_module):
    result = run_module('host_devices_info', {'uri': embed_uri})
    assert result['rc'] == 0 and not result.get('failed'), result.get('msg')
    assert result['source'] == 'sysfs' and result['pci_devices']
    assert 'gives no node devices' in json.dumps(result['warnings']), result.get('warnings')


def test_a_remote_libvirt_without_node_devices_refuses_the_assignment(remote_uri, libvirtd_uri, guest, run_faked,
                                                                      virsh):
    name = guest('remote-blind')
    before = _inactive_xml(virsh, libvirtd_uri, name)
    result = run_faked('domain_devices', {'uri': remote_uri, 'domain': name,
                                          'config': [{'kind': 'hostdev', 'address': docs.GPU}]}, None)
    assert result['failed'] and 'the passthrough guards cannot run' in result['msg'], result['msg']
    assert 'gives no node devices' in result['msg'] and not result['changed']
    assert _inactive_xml(virsh, libvirtd_uri, name) == before


def test_a_vf_mapping_resolves_on_the_remote_hosts_node_devices(remote_uri, libvirtd_uri, guest, run_faked, virsh):
    """Over qemu+ssh the mapping is resolved on libvirt's node devices: the same guests file as locally."""
    first, second = guest('remote-map-a'), guest('remote-map-b')
    mappings = [{'name': 'vfs', 'candidates': [{'pf': docs.PF}]}]
    args = {'uri': remote_uri, 'mappings': mappings, 'permitted': ['vfs'],
            'domains': [{'domain': first, 'config': [{'kind': 'hostdev', 'mapping': 'vfs'}]},
                        {'domain': second, 'config': [{'kind': 'hostdev', 'mapping': 'vfs'}]}]}
    predicted = run_faked('domain_devices', args, docs.sriov_host(), check_mode=True)
    assert not predicted.get('failed'), predicted.get('msg')
    assigned = run_faked('domain_devices', args, docs.sriov_host())
    assert assigned['changed'] and not assigned.get('failed'), assigned.get('msg')
    resolved = [entry['mappings'][0]['devices'] for entry in assigned['results']]
    assert resolved == [entry['mappings'][0]['devices'] for entry in predicted['results']] == [[docs.VF0], [docs.VF4]]
    assert _hostdev_addresses(virsh, libvirtd_uri, first) == [docs.VF0]
    assert _hostdev_addresses(virsh, libvirtd_uri, second) == [docs.VF4]
    again = run_faked('domain_devices', args, docs.sriov_host())
    assert not again['changed'] and not again.get('failed'), again.get('msg')
    # outside the permitted set over ssh too, and the mapping reported by host_devices_info
    outside = run_faked('domain_devices', {'uri': remote_uri, 'domain': first, 'mappings': mappings,
                                           'permitted': ['vfs'], 'config': [{'kind': 'hostdev', 'address': docs.GPU}]},
                        docs.sriov_host())
    assert outside['failed'] and '(pci %s) is outside the permitted devices' % docs.GPU in outside['msg']
    info = run_faked('host_devices_info', {'uri': remote_uri, 'mappings': mappings}, docs.sriov_host())
    row, = info['mappings']
    assert [(entry['device'], [use['domain'] for use in entry['held_by']]) for entry in row['candidates']] == [
        (docs.VF0, [first]), (docs.VF4, [second])] and row['free'] == 0


def test_disk_sources_over_ssh_are_checked_through_storage_pools(remote_uri, libvirtd_uri, guest, run_module, virsh,
                                                                 tmp_path):
    """Over a URI naming a host, a disk source is looked up in that libvirt's storage pools: a volume passes, a
    file missing from a pool's directory is refused, a path in no pool is named as not checked (strict refuses)."""
    pool_dir = tmp_path / 'pool'
    pool_dir.mkdir()
    (pool_dir / 'there.raw').write_bytes(b'\0' * 4096)
    pool = 'virtdev-src-%s' % tmp_path.name[-12:]
    virsh(libvirtd_uri, 'pool-create-as', pool, 'dir', '--target', str(pool_dir))
    try:
        name = guest('remote-disk')
        before = _inactive_xml(virsh, libvirtd_uri, name)

        def run(path, check_mode=True, **extra):
            return run_module('domain_devices', dict({'uri': remote_uri, 'domain': name, 'config': [
                {'kind': 'disk', 'target': 'vdb', 'source': {'file': path}}]}, **extra), check_mode=check_mode)

        made_later = str(pool_dir / 'made-later.raw')  # after the pool's last refresh: found by a refresh
        (pool_dir / 'made-later.raw').write_bytes(b'\0' * 4096)
        for path in (str(pool_dir / 'there.raw'), made_later):
            found = run(path)
            assert found['rc'] == 0 and found['changed'] is True and 'host_checks' not in found, found
        missing = str(pool_dir / 'nope.raw')
        for check_mode in (True, False):
            refused = run(missing, check_mode=check_mode)
            assert refused['rc'] != 0 and refused['changed'] is False, refused
            assert 'config[0].source.file: %r does not exist on the host' % missing in refused['msg'], refused['msg']
        outside = str(tmp_path / 'in-no-pool.raw')
        unknown = run(outside)
        assert unknown['rc'] == 0 and unknown['changed'] is True, unknown
        assert unknown['host_checks']['not_checked'] == [{
            'domain': name, 'device': outside, 'where': 'config[0].source.file',
            'guards': [{'guard': 'source_exists', 'what': 'whether the file or block device exists',
                        'why': 'the path is in no storage pool of qemu+ssh://127.0.0.1/system'}]}], unknown
        assert 'host_checks: strict refuses instead' in str(unknown['warnings']), unknown
        strict = run(outside, check_mode=False, host_checks='strict')
        assert strict['rc'] != 0 and '[guard source_exists]' in strict['msg'], strict
        assert _inactive_xml(virsh, libvirtd_uri, name) == before  # nothing written
    finally:
        virsh(libvirtd_uri, 'pool-destroy', pool, check=False)
