# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_devices refuses unsafe passthrough before writing anything (fixture hosts, real libvirtd)."""

from __future__ import annotations

import os
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'unit'))

import sysfs_trees  # noqa: E402  pylint: disable=wrong-import-position

GUEST = "<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>" \
        "<os><type arch='x86_64' machine='q35'>hvm</type></os></domain>"


@pytest.fixture
def guest(libvirtd_uri, virsh, tmp_path):
    names = []

    def define(name):
        virsh(libvirtd_uri, 'define', '{xml}', xml=GUEST.format(name=name))
        names.append(name)
        return name

    yield define
    for name in names:
        virsh(libvirtd_uri, 'undefine', name, check=False)


def converge(run_module, uri, name, root, config, **extra):
    args = dict({'uri': uri, 'domain': name, 'host_root': root, 'config': config}, **extra)
    return run_module('domain_devices', args)


@pytest.mark.parametrize('address, reason', [
    ('0000:00:02.0', 'boot_vga'),                  # the console GPU
    ('0000:02:00.0', 'controller'),                # NVMe behind /
    ('0000:00:1f.6', 'default route'),             # the NIC carrying the default route
    ('0000:00:01.0', 'bridge'),                    # a root port, not an endpoint
    ('0000:00:1f.4', 'guard host_critical'),       # SMBus
    ('0000:07:00.0', 'guard exists'),              # nothing there
])
def test_refusals_name_the_device_and_reason_and_change_nothing(address, reason, libvirtd_uri, run_module, virsh,
                                                                guest, tmp_path):
    root = sysfs_trees.build('desktop', tmp_path)
    name = guest('pf-refuse')
    before = virsh(libvirtd_uri, 'dumpxml', '--inactive', name)
    result = converge(run_module, libvirtd_uri, name, root, [{'kind': 'hostdev', 'address': address}])
    assert result['failed'] is True, result
    assert result['msg'].startswith('refused before writing (host checks or device rules), nothing was changed')
    assert address in result['msg'] and reason in result['msg'], result['msg']
    assert virsh(libvirtd_uri, 'dumpxml', '--inactive', name) == before


def test_gpu_with_its_audio_function_is_accepted_and_alone_is_reported(libvirtd_uri, run_module, guest, tmp_path):
    root = sysfs_trees.build('desktop', tmp_path)
    name = guest('pf-gpu')
    alone = converge(run_module, libvirtd_uri, name, root, [{'kind': 'hostdev', 'address': '0000:01:00.0'}])
    assert alone['failed'] is True and '0000:01:00.1' in alone['msg']   # the group's other member
    gpu_and_audio = [{'kind': 'hostdev', 'address': '0000:01:00.0'}, {'kind': 'hostdev', 'address': '0000:01:00.1'}]
    both = converge(run_module, libvirtd_uri, name, root, gpu_and_audio)
    assert both.get('failed') is not True, both
    assert both['changed'] is True and [c['op'] for c in both['commands']] == ['attach', 'attach']


def test_force_overrides_only_the_overridable_guards(libvirtd_uri, run_module, guest, tmp_path):
    root = sysfs_trees.build('desktop', tmp_path)
    name = guest('pf-force')
    smbus = converge(run_module, libvirtd_uri, name, root, [{'kind': 'hostdev', 'address': '0000:00:1f.4'}],
                     force=True)
    assert smbus.get('failed') is not True and smbus['changed'] is True
    assert 'overridden by force' in str(smbus.get('warnings'))  # said, not silent
    bridge = converge(run_module, libvirtd_uri, name, root, [{'kind': 'hostdev', 'address': '0000:00:01.0'}],
                      force=True)
    assert bridge['failed'] is True and 'bridge' in bridge['msg']


def test_a_device_already_given_to_another_domain_is_refused(libvirtd_uri, run_module, guest, tmp_path):
    root = sysfs_trees.build('desktop', tmp_path)
    first, second = guest('pf-owner'), guest('pf-thief')
    nic = [{'kind': 'hostdev', 'address': '0000:03:00.0'}]   # the I210 already on vfio-pci
    assert converge(run_module, libvirtd_uri, first, root, nic)['changed'] is True
    taken = converge(run_module, libvirtd_uri, second, root, nic)
    assert taken['failed'] is True and 'pf-owner' in taken['msg']
    # the same device twice in one manifest collides too
    both = run_module('domain_devices', {'uri': libvirtd_uri, 'host_root': root, 'domains': [
        {'domain': second, 'config': [{'kind': 'hostdev', 'address': '0000:01:00.1'},
                                      {'kind': 'hostdev', 'address': '0000:01:00.0'}]},
        {'domain': first, 'config': [{'kind': 'hostdev', 'address': '0000:01:00.0'},
                                     {'kind': 'hostdev', 'address': '0000:01:00.1'}]}]})
    assert both['failed'] is True and 'pf-thief' in both['msg']


def test_sriov_pf_and_its_vf_together_are_refused(libvirtd_uri, run_module, guest, tmp_path):
    root = sysfs_trees.build('sriov', tmp_path)
    spec = sysfs_trees.load_spec('sriov')
    pf = next(dev for dev in spec['pci'] if (dev.get('sriov') or {}).get('numvfs'))
    vf_address = next(dev['address'] for dev in spec['pci'] if dev.get('physfn') == pf['address'])
    name = guest('pf-sriov')
    result = converge(run_module, libvirtd_uri, name, root, [
        {'kind': 'hostdev', 'address': pf['address']},
        {'kind': 'interface', 'source': {'hostdev': vf_address}, 'mac': '52:54:00:00:aa:01'}])
    assert result['failed'] is True and 'pf_vf' in result['msg'], result['msg']


def test_no_checks_for_guests_without_passthrough(libvirtd_uri, run_module, guest, tmp_path):
    name = guest('pf-none')
    missing_root = str(tmp_path / 'no-such-root')
    result = converge(run_module, libvirtd_uri, name, missing_root, [{'kind': 'rng'}])
    assert result['changed'] is True and 'host_devices' not in str(result.get('libvirt_calls'))


@pytest.mark.parametrize('device_xml, address', [
    # the default-route NIC and the root disk's controller, written the ways libvirt reads them
    ("<hostdev mode='subsystem' type='pci' managed='yes'><source><address slot='037' function='6'/></source>"
     "</hostdev>", '0000:00:1f.6'),                                   # octal slot, no domain, no bus
    ("<interface type='hostdev' managed='yes'><mac address='52:54:00:00:aa:02'/><source>"
     "<address type='pci' bus='0' slot='31' function='6'/></source></interface>", '0000:00:1f.6'),   # decimal
    ("<hostdev mode='subsystem' type='pci' managed='yes'><source><address bus='2'/></source></hostdev>",
     '0000:02:00.0'),                                                 # only the bus: libvirt fills 0 elsewhere
])
def test_raw_xml_addresses_reach_the_guards_in_every_notation(device_xml, address, libvirtd_uri, run_module, virsh,
                                                              guest, tmp_path):
    root = sysfs_trees.build('desktop', tmp_path)
    name = guest('pf-notation')
    before = virsh(libvirtd_uri, 'dumpxml', '--inactive', name)
    result = converge(run_module, libvirtd_uri, name, root, [{'kind': 'xml', 'xml': device_xml}])
    assert result['failed'] is True, result
    assert address in result['msg'] and 'guard host_critical' in result['msg'], result['msg']
    assert virsh(libvirtd_uri, 'dumpxml', '--inactive', name) == before


HOSTDEV_43 = """<hostdev mode='subsystem' type='pci' managed='yes'>
<source><address domain='0x0000' bus='0x43' slot='0x00' function='0x0'/></source></hostdev>"""


def test_group_peer_in_another_guests_definition_is_a_warning_naming_both(
        libvirtd_uri, run_module, virsh, guest, tmp_path):
    """The EPYC server's two V100s share IOMMU group 10: train-1's definition has one, train-2 asks for the
    other. Neither runs: a warning naming both guests (only one can run at a time), check mode writes nothing."""
    root = sysfs_trees.build('epyc_gpu', tmp_path, lambda spec: spec.update(processes=[]))
    first = guest('train-1')
    virsh(libvirtd_uri, 'attach-device', first, '{xml}', '--config', xml=HOSTDEV_43)
    second = guest('train-2')
    before = virsh(libvirtd_uri, 'dumpxml', '--inactive', second)
    result = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': second, 'host_root': root,
                                           'config': [{'kind': 'hostdev', 'address': '0000:44:00.0'}]},
                        check_mode=True)
    assert result.get('failed') is not True and result['changed'] is True, result
    warnings = str(result.get('warnings'))  # ansible-core 2.19 wraps each warning in a summary dict
    assert 'guest train-1: guest train-2 and train-1 cannot run at the same time [guard group_held_config]' \
        in warnings, result
    assert virsh(libvirtd_uri, 'dumpxml', '--inactive', second) == before


def test_amd_dummy_host_bridge_does_not_block_its_group(libvirtd_uri, run_module, guest, tmp_path):
    """B450 APU board: the FCH SATA controller shares its group with a PCIe Dummy Host Bridge (no driver)
    and a GPP bridge; given with the group's other endpoint it is accepted (check mode)."""
    root = sysfs_trees.build('b450_apu', tmp_path)
    name = guest('fch-sata')
    config = [{'kind': 'hostdev', 'address': '0000:04:00.0'}, {'kind': 'hostdev', 'address': '0000:04:00.3'}]
    result = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'host_root': root, 'config': config},
                        check_mode=True)
    assert result.get('failed') is not True and result['changed'] is True, result
    assert 'group_critical' not in str(result.get('warnings')) and 'refused' not in str(result), result


def test_a_nic_given_a_vf_by_pf_and_index_converges_like_its_address(libvirtd_uri, run_module, virsh, guest, tmp_path):
    """source: {pf, vf} is resolved against the host (a fixture tree here) before planning: check mode predicts
    the real run, a re-run (by index or by the VF's address) changes nothing, a bad index changes nothing."""
    root = sysfs_trees.build('sriov', tmp_path)
    name = guest('pf-vf-index')
    by_index = [{'kind': 'interface', 'source': {'pf': '0000:41:00.0', 'vf': 3}}]
    empty = virsh(libvirtd_uri, 'dumpxml', '--inactive', name)
    predicted = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'host_root': root,
                                              'config': by_index}, check_mode=True)
    assert predicted.get('failed') is not True, predicted
    assert virsh(libvirtd_uri, 'dumpxml', '--inactive', name) == empty          # check mode wrote nothing
    done = converge(run_module, libvirtd_uri, name, root, by_index)
    assert done.get('failed') is not True, done
    assert done['changed'] is True and predicted['changed'] is True
    nics = [[device for device in result['after'] if device['kind'] == 'interface'] for result in (predicted, done)]
    assert done['commands'] == predicted['commands'] and nics[0] == nics[1]   # libvirt adds its implicit devices
    assert nics[1][0]['source'] == {'hostdev': '0000:41:02.3'}, nics
    defined = virsh(libvirtd_uri, 'dumpxml', '--inactive', name)
    assert "<address type='pci' domain='0x0000' bus='0x41' slot='0x02' function='0x3'/>" in defined, defined
    again = converge(run_module, libvirtd_uri, name, root, by_index)
    assert again['changed'] is False and again['commands'] == [], again
    by_address = converge(run_module, libvirtd_uri, name, root,
                          [{'kind': 'interface', 'source': {'hostdev': '0000:41:02.3'}}])
    assert by_address['changed'] is False, by_address                          # the same NIC, the same MAC
    for source, field in (({'pf': '0000:41:00.0', 'vf': 4}, 'config[0].source.vf: 4 is out of range'),
                          ({'pf': '0000:42:00.0', 'vf': 0}, 'config[0].source.pf: 0000:42:00.0 is not an SR-IOV')):
        refused = converge(run_module, libvirtd_uri, name, root, [{'kind': 'interface', 'source': source}],
                           state='replaced')
        assert refused['failed'] is True and field in refused['msg'], refused
    assert virsh(libvirtd_uri, 'dumpxml', '--inactive', name) == defined
    rendered = run_module('domain_devices', {'state': 'rendered', 'config': by_index})   # reads no host
    assert rendered['failed'] is True and rendered['msg'].startswith('config[0].source.pf: a VF given by pf and vf'), \
        rendered


def _held_by_another_process(path):
    """Whether another process holds the flock on ``path`` (tested without keeping it)."""
    import fcntl  # pylint: disable=import-outside-toplevel
    try:
        handle = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(handle)  # closing drops a lock this test took
    return False


def test_two_parallel_runs_never_give_one_raw_address_to_two_guests(libvirtd_uri, virsh, guest, tmp_path,
                                                                    collection_pythonpath):
    """Run A passes the guards for a VF and then waits to write its guest (the test holds that guest's lock);
    run B, giving the same VF to another guest meanwhile, waits for the host's passthrough lock and then sees
    A's guest: refused, nothing of B written. Without the host lock both runs succeeded."""
    from reliability import ModuleProcess  # pylint: disable=import-outside-toplevel,import-error
    from ansible_collections.virtdev.libvirt.plugins.module_utils import _guest_lock  # pylint: disable=C0415
    root = sysfs_trees.build('sriov', tmp_path)
    first, second = guest('race-vf-a'), guest('race-vf-b')
    before = virsh(libvirtd_uri, 'dumpxml', '--inactive', second)
    locks = _guest_lock.lock_dir(libvirtd_uri)
    held = _guest_lock.GuestLock(locks, virsh(libvirtd_uri, 'domuuid', first).strip(), 'held by the test', 5)
    config = [{'kind': 'hostdev', 'address': '0000:41:02.0'}]
    held.__enter__()
    try:
        run_a = ModuleProcess(tmp_path, collection_pythonpath, 'domain_devices',
                              {'uri': libvirtd_uri, 'domain': first, 'host_root': root, 'config': config}, 'a')
        deadline = time.monotonic() + 300
        while not _held_by_another_process(_guest_lock.lock_path(locks, 'device-mappings')):
            assert run_a.proc.poll() is None, run_a.result()
            assert time.monotonic() < deadline, 'run A never took the host passthrough lock'
            time.sleep(0.2)
        run_b = ModuleProcess(tmp_path, collection_pythonpath, 'domain_devices',
                              {'uri': libvirtd_uri, 'domain': second, 'host_root': root, 'config': config}, 'b')
        time.sleep(3)  # B is waiting for the host lock, A for its guest's
        assert run_b.proc.poll() is None, run_b.result()
    finally:
        held.__exit__(None, None, None)
    result_a, result_b = run_a.result(), run_b.result()
    assert result_a['rc'] == 0 and result_a['changed'] is True, result_a
    assert result_b['rc'] != 0 and result_b['changed'] is False, result_b
    assert 'in the persistent definition of domain %s' % first in result_b['msg'], result_b['msg']
    assert '[guard in_use_config]' in result_b['msg'], result_b['msg']
    assert virsh(libvirtd_uri, 'dumpxml', '--inactive', second) == before
