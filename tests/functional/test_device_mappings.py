# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Device mappings through domain_devices: the real module against the embedded QEMU driver and the private
libvirtd, with fake host trees (host_root) as the other passthrough tests use (docs/device_mappings.md)."""

from __future__ import annotations

import os
import threading
import sys

import pytest
from lxml import etree

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'unit'))

import sysfs_trees  # noqa: E402  pylint: disable=wrong-import-position
from harness import embed  # noqa: E402  pylint: disable=wrong-import-position,import-error

GUEST = "<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>" \
        "<os><type arch='x86_64' machine='q35'>hvm</type></os></domain>"
PF = '0000:41:00.0'
VFS = ['0000:41:02.0', '0000:41:02.1', '0000:41:02.2', '0000:41:02.3']
# the X710 VF model, at 0000:41:02.x on the sriov tree and 0000:18:02.x on the xeon_acs_sriov tree
X710_VF = [{'name': 'x710-vf', 'candidates': [{'ids': '8086:154c'}]}]


@pytest.fixture(name='define')
def define_fixture(virsh):
    defined = []

    def define(uri, *names):
        for name in names:
            virsh(uri, 'define', '{xml}', xml=GUEST.format(name=name))
            defined.append((uri, name))
        return names

    yield define
    for uri, name in defined:
        virsh(uri, 'undefine', name, check=False)


def _addresses(virsh, uri, name):
    """The host PCI addresses of the guest's hostdevs and hostdev interfaces in its persistent definition."""
    root = etree.fromstring(virsh(uri, 'dumpxml', '--inactive', name).encode())
    return sorted('%04x:%02x:%02x.%x' % tuple(int(address.get(part), 16) for part in ('domain', 'bus', 'slot', 'function'))
                  for address in root.iterfind('devices/*/source/address'))


def _manifest(uri, root, guests, mappings, **extra):
    return dict({'uri': uri, 'host_root': root, 'mappings': mappings,
                 'domains': [{'domain': name, 'config': config} for name, config in guests]}, **extra)


def _resolved(result):
    return {entry['domain']: [(item['mapping'], item['devices']) for item in entry.get('mappings', [])]
            for entry in result['results']}


def test_one_guests_file_converges_on_two_hosts_each_guest_getting_the_local_device(
        run_module, embed_uri, embed_template, define, virsh, tmp_path):
    host_a = (embed_uri, sysfs_trees.build('sriov', tmp_path))
    host_b = (embed.prepare_embed_root(str(tmp_path / 'embed-b'), seed_from=embed_template),
              sysfs_trees.build('xeon_acs_sriov', tmp_path))
    guests = [('app1', [{'kind': 'interface', 'source': {'mapping': 'x710-vf'}, 'managed': True}]),
              ('app2', [{'kind': 'hostdev', 'mapping': 'x710-vf'}])]
    expected = {host_a[0]: {'app1': ['0000:41:02.0'], 'app2': ['0000:41:02.1']},
                # on the xeon the VF 18:02.0 is held open by running guest db: app2 is refused there
                host_b[0]: {'app1': ['0000:18:02.1']}}
    for uri, root in (host_a, host_b):
        define(uri, 'app1', 'app2')
        args = _manifest(uri, root, guests if uri == host_a[0] else guests[:1], X710_VF)
        checked = run_module('domain_devices', args, check_mode=True, diff=True)
        assert checked.get('failed') is not True, checked
        real = run_module('domain_devices', args, diff=True)
        assert real.get('failed') is not True and real['changed'] is True, real
        # check mode predicted the very devices the real run gave
        assert _resolved(checked) == _resolved(real) == {
            name: [('x710-vf', devices)] for name, devices in expected[uri].items()}, (_resolved(checked), uri)
        diffs = real['diff'] if isinstance(real['diff'], list) else [real['diff']]
        assert all('x710-vf -> ' in diff['after_header'] for diff in diffs), diffs
        for name, devices in expected[uri].items():
            assert _addresses(virsh, uri, name) == devices
        again = run_module('domain_devices', args)
        assert again['changed'] is False, again
        assert all(item['kept'] == item['devices'] for entry in again['results'] for item in entry['mappings'])
    # the second guest on the xeon: both VFs are taken, each named with why
    refused = run_module('domain_devices', _manifest(host_b[0], host_b[1], guests, X710_VF))
    assert refused['failed'] is True, refused
    assert '0000:18:02.0: ' in refused['msg'] and 'held open by guest db' in refused['msg'], refused['msg']
    assert '0000:18:02.1: held by guest app1 (defined)' in refused['msg'], refused['msg']
    assert _addresses(virsh, host_b[0], 'app2') == []


def test_three_guests_for_a_two_device_mapping_the_third_refused_before_writing(run_module, libvirtd_uri, define,
                                                                                virsh, tmp_path):
    root = sysfs_trees.build('sriov', tmp_path)
    names = define(libvirtd_uri, 'mp-a', 'mp-b', 'mp-c')
    pair = [{'name': 'pair', 'candidates': [{'address': VFS[1]}, {'address': VFS[2], 'ids': '8086:154c'}]}]
    guests = [(name, [{'kind': 'hostdev', 'mapping': 'pair'}]) for name in names]
    stop = run_module('domain_devices', _manifest(libvirtd_uri, root, guests, pair, on_error='stop'))
    assert stop['failed'] is True and stop['changed'] is False, stop
    assert 'mapping pair has no free device for guest mp-c' in stop['msg'], stop['msg']
    assert 'given to guest mp-a by this task' in stop['msg'] and 'given to guest mp-b by this task' in stop['msg']
    assert all(_addresses(virsh, libvirtd_uri, name) == [] for name in names)   # nothing written
    result = run_module('domain_devices', _manifest(libvirtd_uri, root, guests, pair))
    assert result['failed'] is True and result['changed'] is True
    assert _addresses(virsh, libvirtd_uri, 'mp-a') == [VFS[1]] and _addresses(virsh, libvirtd_uri, 'mp-b') == [VFS[2]]
    assert _addresses(virsh, libvirtd_uri, 'mp-c') == []
    # now held: the message names the guests holding each device
    third = run_module('domain_devices', {'uri': libvirtd_uri, 'host_root': root, 'mappings': pair,
                                          'domain': 'mp-c', 'config': [{'kind': 'hostdev', 'mapping': 'pair'}]})
    assert third['failed'] is True and third['msg'].startswith('refused before writing'), third
    assert '%s: held by guest mp-a (defined)' % VFS[1] in third['msg']
    assert '%s: held by guest mp-b (defined)' % VFS[2] in third['msg']
    # removing a guest's device frees it for the next one
    freed = run_module('domain_devices', {'uri': libvirtd_uri, 'host_root': root, 'mappings': pair, 'domain': 'mp-a',
                                          'state': 'deleted', 'config': [{'kind': 'hostdev', 'mapping': 'pair'}]})
    assert freed['changed'] is True and freed['mappings'][0]['devices'] == [VFS[1]], freed
    taken = run_module('domain_devices', {'uri': libvirtd_uri, 'host_root': root, 'mappings': pair, 'domain': 'mp-c',
                                          'config': [{'kind': 'hostdev', 'mapping': 'pair'}]})
    assert taken['changed'] is True and _addresses(virsh, libvirtd_uri, 'mp-c') == [VFS[1]]


def test_a_candidate_whose_card_changed_is_refused_with_both_ids(run_module, libvirtd_uri, define, virsh, tmp_path):
    def replace_card(spec):
        for dev in spec['pci']:
            if dev['address'] == VFS[0]:
                dev['device'] = '0x10ed'   # an 82599 VF where the X710 VF was
    root = sysfs_trees.build('sriov', tmp_path, mutate=replace_card)
    name, = define(libvirtd_uri, 'mp-changed')
    nic = [{'name': 'nic', 'candidates': [{'address': VFS[0], 'ids': '8086:154c'}]}]
    result = run_module('domain_devices', {'uri': libvirtd_uri, 'host_root': root, 'mappings': nic, 'domain': name,
                                           'config': [{'kind': 'interface', 'source': {'mapping': 'nic'}}]})
    assert result['failed'] is True and not result.get('changed'), result
    assert 'vendor:device is 8086:10ed on this host, the mapping says 8086:154c' in result['msg'], result['msg']
    assert _addresses(virsh, libvirtd_uri, name) == []


HOSTDEV = ("<hostdev mode='subsystem' type='pci' managed='yes'><source><address %s/></source></hostdev>")


@pytest.mark.parametrize('config', [
    [{'kind': 'hostdev', 'address': '0000:41:00.1'}],
    [{'kind': 'interface', 'source': {'hostdev': '41:00.1'}, 'mac': '52:54:00:00:ac:01'}],
    [{'kind': 'xml', 'xml': HOSTDEV % "domain='0x0000' bus='0x41' slot='0x00' function='0x1'"}],
    [{'kind': 'xml', 'xml': HOSTDEV % "bus='65' function='1'"}],                 # decimal, the rest filled by libvirt
    [{'kind': 'xml', 'xml': HOSTDEV % "bus='0101' slot='0' function='01'"}],     # octal
], ids=['typed', 'interface', 'xml-hex', 'xml-decimal', 'xml-octal'])
def test_permitted_refuses_a_device_outside_it_in_every_notation(config, run_module, libvirtd_uri, define, virsh,
                                                                 tmp_path):
    root = sysfs_trees.build('sriov', tmp_path)
    name, = define(libvirtd_uri, 'mp-permitted')
    args = {'uri': libvirtd_uri, 'host_root': root, 'domain': name, 'config': config,
            'mappings': [{'name': 'vfs', 'candidates': [{'pf': PF}]}], 'permitted': ['vfs']}
    result = run_module('domain_devices', args)
    assert result['failed'] is True and not result.get('changed'), result
    assert '(pci 0000:41:00.1) is outside the permitted devices [rule permitted: mapping vfs]' in result['msg'], \
        result['msg']
    assert _addresses(virsh, libvirtd_uri, name) == []


def test_permitted_lets_mapped_raw_and_selected_devices_through(run_module, libvirtd_uri, define, virsh, tmp_path):
    root = sysfs_trees.build('sriov', tmp_path)
    name, = define(libvirtd_uri, 'mp-inside')
    args = {'uri': libvirtd_uri, 'host_root': root, 'domain': name,
            'mappings': [{'name': 'first-vf', 'candidates': [{'address': VFS[0], 'ids': '8086:154c'}]}],
            'permitted': ['first-vf', {'ids': '8086:154c', 'driver': 'vfio-pci'}],
            'config': [{'kind': 'interface', 'source': {'mapping': 'first-vf'}, 'managed': True},
                       {'kind': 'xml', 'xml': HOSTDEV % "bus='0x41' slot='0x02' function='0x3'"},
                       {'kind': 'hostdev', 'address': VFS[2]}]}
    result = run_module('domain_devices', args)
    assert result.get('failed') is not True and result['changed'] is True, result.get('msg')
    assert _addresses(virsh, libvirtd_uri, name) == [VFS[0], VFS[2], VFS[3]]
    # the VF on its host driver (iavf) is outside a selector of VFs on vfio-pci
    other, = define(libvirtd_uri, 'mp-outside')
    outside = run_module('domain_devices', dict(args, domain=other, config=[{'kind': 'hostdev', 'address': VFS[0]}],
                                                permitted=[{'ids': '8086:154c', 'driver': 'vfio-pci'}]))
    assert outside['failed'] is True and 'pci %s) is outside the permitted devices' % VFS[0] in outside['msg'], \
        outside.get('msg')


@pytest.mark.parametrize('extra, message', [
    ({'config': [{'kind': 'hostdev', 'mapping': 'nope'}]}, r"config[0].mapping: 'nope' is not the name of a mapping (vfs)"),
    ({'mappings': [{'name': 'vfs', 'candidates': []}]}, "mappings[0].candidates: []: a mapping needs a non-empty list"),
    ({'mappings': [{'name': 'vfs', 'candidates': [{'ids': '10de:20b0'}]}]},
     'no device of this host matches mappings[0].candidates (ids 10de:20b0)'),
    ({'mappings': [{'name': 'vfs', 'count': 9, 'candidates': [{'pf': PF}]}]},
     'mappings[0].count: 9 is more than the 4 device(s) of this host that mapping vfs has'),
    ({'config': [{'kind': 'hostdev', 'type': 'usb', 'mapping': 'vfs'}]},
     'config[0].mapping: mapping vfs is of type pci, this device takes a usb device'),
], ids=['unknown-name', 'empty', 'matches-nothing', 'count-too-large', 'wrong-type'])
def test_bad_mapping_input_is_named_and_nothing_is_written(extra, message, run_module, libvirtd_uri, define, virsh,
                                                           tmp_path):
    root = sysfs_trees.build('sriov', tmp_path)
    name, = define(libvirtd_uri, 'mp-bad')
    args = dict({'uri': libvirtd_uri, 'host_root': root, 'domain': name,
                 'mappings': [{'name': 'vfs', 'candidates': [{'pf': PF}]}],
                 'config': [{'kind': 'hostdev', 'mapping': 'vfs'}]}, **extra)
    result = run_module('domain_devices', args)
    assert result['failed'] is True and not result.get('changed'), result
    assert message in result['msg'], result['msg']
    assert _addresses(virsh, libvirtd_uri, name) == []


def test_usb_keys_alike_are_told_apart_by_serial_and_check_mode_predicts_the_run(run_module, libvirtd_uri, define,
                                                                                 virsh, tmp_path):
    root = sysfs_trees.build('desktop', tmp_path)   # two YubiKeys 1050:0407, serials 111 and 222
    name, = define(libvirtd_uri, 'mp-usb')
    args = {'uri': libvirtd_uri, 'host_root': root, 'domain': name,
            'mappings': [{'name': 'yubikey-222', 'type': 'usb', 'candidates': [{'ids': '1050:0407', 'serial': '222'}]}],
            'config': [{'kind': 'hostdev', 'type': 'usb', 'mapping': 'yubikey-222'}]}
    predicted = run_module('domain_devices', args, check_mode=True)
    real = run_module('domain_devices', args)
    assert real.get('failed') is not True and real['changed'] is True, real.get('msg')
    assert predicted['commands'] == real['commands'] and real['mappings'][0]['devices'] == ['usb 1-4.1 (bus 1 device 6)']
    root_xml = etree.fromstring(virsh(libvirtd_uri, 'dumpxml', '--inactive', name).encode())
    source = root_xml.find('devices/hostdev/source')
    assert (source.find('vendor').get('id'), source.find('product').get('id'), source.find('address').get('device')) \
        == ('0x1050', '0x0407', '6')
    assert run_module('domain_devices', args)['changed'] is False


def test_a_multifunction_mapping_gives_the_gpu_with_its_audio_in_one_guest_slot(run_module, libvirtd_uri, define,
                                                                                virsh, tmp_path):
    root = sysfs_trees.build('desktop', tmp_path)
    name, = define(libvirtd_uri, 'mp-gpu')
    args = {'uri': libvirtd_uri, 'host_root': root, 'domain': name,
            'mappings': [{'name': 'gtx1080', 'multifunction': True,
                          'candidates': [{'ids': '10de:1b80', 'subsystem': '1043:8591'}]}],
            'config': [{'kind': 'hostdev', 'mapping': 'gtx1080', 'guest_address': '0000:05:00.0'}]}
    real = run_module('domain_devices', args)
    assert real.get('failed') is not True and real['changed'] is True, real.get('msg')
    assert real['mappings'] == [{'where': 'config[0]', 'mapping': 'gtx1080', 'devices': ['0000:01:00.0'],
                                 'functions': ['0000:01:00.0', '0000:01:00.1'], 'kept': []}]
    root_xml = etree.fromstring(virsh(libvirtd_uri, 'dumpxml', '--inactive', name).encode())
    guest_slots = [(hostdev.find('address').get('slot'), hostdev.find('address').get('function'),
                    hostdev.find('address').get('multifunction')) for hostdev in root_xml.iterfind('devices/hostdev')]
    assert guest_slots == [('0x00', '0x0', 'on'), ('0x00', '0x1', None)], guest_slots
    assert _addresses(virsh, libvirtd_uri, name) == ['0000:01:00.0', '0000:01:00.1']
    again = run_module('domain_devices', args)
    assert again['changed'] is False and again['mappings'][0]['kept'] == ['0000:01:00.0'], again


def test_two_parallel_runs_never_give_one_device_to_two_guests(run_module, libvirtd_uri, define, virsh, tmp_path):
    root = sysfs_trees.build('sriov', tmp_path)
    names = define(libvirtd_uri, 'mp-par-a', 'mp-par-b')
    vfs = [{'name': 'vfs', 'candidates': [{'pf': PF}]}]
    results = {}

    def converge(name):
        results[name] = run_module('domain_devices', {'uri': libvirtd_uri, 'host_root': root, 'mappings': vfs,
                                                      'domain': name, 'config': [{'kind': 'hostdev', 'mapping': 'vfs'}]})
    threads = [threading.Thread(target=converge, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result.get('failed') is not True for result in results.values()), results
    taken = [_addresses(virsh, libvirtd_uri, name) for name in names]
    assert sorted(taken) == [[VFS[0]], [VFS[1]]], taken


# -- mediated devices -----------------------------------------------------------------------------------------

T4 = '0000:01:00.0'
MDEV_UUIDS = ['11111111-0000-4000-8000-000000000001', '22222222-0000-4000-8000-000000000002']
VGPU = [{'name': 'vgpu', 'type': 'mdev', 'candidates': [{'ids': '10de:1eb8', 'mdev_type': 'nvidia-222'}]}]


def _mdev_tree(tmp_path):
    """The mdev host tree with two more T4-1B instances: three of the type on the T4 (the fixture's own is
    8c1bd7f6-...), listed in reverse so the order comes from the resolution, not the tree."""
    def more(spec):
        spec['mdevs'].extend({'uuid': uuid, 'parent': T4, 'type': 'nvidia-222'} for uuid in reversed(MDEV_UUIDS))
    return sysfs_trees.build('mdev', tmp_path, more)


def _mdev_uuids(virsh, uri, name):
    root = etree.fromstring(virsh(uri, 'dumpxml', '--inactive', name).encode())
    return [(hostdev.get('model'), hostdev.find('source/address').get('uuid'))
            for hostdev in root.iterfind("devices/hostdev[@type='mdev']")]


def test_an_mdev_mapping_gives_each_guest_the_lowest_free_instance_and_refuses_when_none_is_free(
        run_module, embed_uri, define, virsh, tmp_path):
    root = _mdev_tree(tmp_path)
    names = define(embed_uri, 'mv-a', 'mv-b')
    guests = [(name, [{'kind': 'hostdev', 'type': 'mdev', 'mapping': 'vgpu'}]) for name in names]
    args = _manifest(embed_uri, root, guests, VGPU)
    checked = run_module('domain_devices', args, check_mode=True, diff=True)
    assert checked.get('failed') is not True and checked['changed'] is True, checked
    assert all(_mdev_uuids(virsh, embed_uri, name) == [] for name in names)   # check mode wrote nothing
    real = run_module('domain_devices', args, diff=True)
    assert real.get('failed') is not True and real['changed'] is True, real
    expected = {'mv-a': [('vgpu', ['mdev ' + MDEV_UUIDS[0]])], 'mv-b': [('vgpu', ['mdev ' + MDEV_UUIDS[1]])]}
    assert _resolved(checked) == _resolved(real) == expected, (_resolved(checked), _resolved(real))
    diffs = real['diff'] if isinstance(real['diff'], list) else [real['diff']]
    assert all('vgpu -> mdev ' in diff['after_header'] for diff in diffs), diffs
    # the model comes from the type's device_api
    assert _mdev_uuids(virsh, embed_uri, 'mv-a') == [('vfio-pci', MDEV_UUIDS[0])]
    assert _mdev_uuids(virsh, embed_uri, 'mv-b') == [('vfio-pci', MDEV_UUIDS[1])]
    again = run_module('domain_devices', args)
    assert again['changed'] is False, again
    assert all(item['kept'] == item['devices'] for entry in again['results'] for item in entry['mappings'])
    # the guests in the other order keep what they hold
    swapped = run_module('domain_devices', _manifest(embed_uri, root, list(reversed(guests)), VGPU))
    assert swapped['changed'] is False and _resolved(swapped) == expected, swapped

    # a third guest takes the last instance; a fourth is refused before anything is written, with the counts
    third, fourth = define(embed_uri, 'mv-c', 'mv-d')
    args = _manifest(embed_uri, root, [(name, guests[0][1]) for name in (third, fourth)], VGPU, on_error='stop')
    for check_mode in (True, False):
        refused = run_module('domain_devices', args, check_mode=check_mode)
        assert refused["failed"] is True and refused["changed"] is False, (check_mode, refused["results"])
        assert 'mapping vgpu has no free device for guest mv-d' in refused['msg'], refused['msg']
        assert '3 mdev(s) of type nvidia-222 exist on %s, 3 not free' % T4 in refused['msg'], refused['msg']
        assert 'virtdev.libvirt.mdev' in refused['msg'] and 'available_instances 15' in refused['msg']
        assert 'held by guest mv-a (defined)' in refused['msg'] and 'given to guest mv-c by this task' in refused['msg']
    assert _mdev_uuids(virsh, embed_uri, third) == [] and _mdev_uuids(virsh, embed_uri, fourth) == []

    # host_devices_info reports the mapping: instances, holders, free count, where more can be created
    info = run_module('host_devices_info', {'uri': embed_uri, 'root': root, 'mappings': VGPU})
    assert info.get("failed") is not True, info.get("msg")
    row, = info["mappings"]
    assert row['type'] == 'mdev' and row['free'] == 1, row
    holders = {item['uuid']: [use['domain'] for use in item['held_by']] for item in row['candidates']}
    assert holders == {MDEV_UUIDS[0]: ['mv-a'], MDEV_UUIDS[1]: ['mv-b'], '8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e': []}
    assert row['parents'] == [{'address': T4, 'mdev_type': 'nvidia-222', 'available_instances': 15}]


def test_permitted_lets_an_mdev_mapping_through_and_refuses_an_mdev_outside_it(run_module, embed_uri, define, virsh,
                                                                               tmp_path):
    root = _mdev_tree(tmp_path)
    name, = define(embed_uri, 'mv-perm')
    gvt = 'a297db4a-f4c2-11e6-90f6-d3b88d6c9525'   # the iGPU's GVT-g instance: no rule permits it
    outside = run_module('domain_devices', {
        'uri': embed_uri, 'host_root': root, 'domain': name, 'mappings': VGPU, 'permitted': ['vgpu'],
        'config': [{'kind': 'hostdev', 'type': 'mdev', 'model': 'vfio-pci', 'uuid': gvt}]})
    assert outside['failed'] is True and 'mdev %s on 0000:00:02.0' % gvt in outside['msg'], outside
    assert 'outside the permitted devices [rule permitted: mapping vgpu]' in outside['msg']
    inside = run_module('domain_devices', {
        'uri': embed_uri, 'host_root': root, 'domain': name, 'mappings': VGPU, 'permitted': ['vgpu'],
        'config': [{'kind': 'hostdev', 'type': 'mdev', 'mapping': 'vgpu'}]})
    assert inside.get('failed') is not True and inside['changed'] is True, inside
    assert _mdev_uuids(virsh, embed_uri, name) == [('vfio-pci', MDEV_UUIDS[0])]
