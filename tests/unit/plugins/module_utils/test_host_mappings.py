# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Device mappings on fake host trees (sysfs fixtures) and node-device documents: validation naming the field
and value, resolution (kept, lowest free, deterministic), hardware checks, permitted devices, the report."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import mappings, nodedev_source, sysfs_source
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.domain_usage import usage_from_domains
from ansible_collections.virtdev.libvirt.tests.unit import nodedev_docs as docs
from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import build

PF = '0000:41:00.0'
VFS = ['0000:41:02.0', '0000:41:02.1', '0000:41:02.2', '0000:41:02.3']


@pytest.fixture(name='sriov', scope='module')
def sriov_fixture(tmp_path_factory):
    return sysfs_source.read_host(build('sriov', tmp_path_factory.mktemp('sriov')))


@pytest.fixture(name='desktop', scope='module')
def desktop_fixture(tmp_path_factory):
    return sysfs_source.read_host(build('desktop', tmp_path_factory.mktemp('desktop')))


def _hostdev_xml(name, *addresses):
    devices = ''.join("<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x%s' bus='0x%s' "
                      "slot='0x%s' function='0x%s'/></source></hostdev>"
                      % tuple(address.replace('.', ':').split(':')) for address in addresses)
    return "<domain type='qemu'><name>%s</name><devices>%s</devices></domain>" % (name, devices)


def _usage(**held):
    """Usage as read from persistent definitions: guest -> addresses."""
    return usage_from_domains([{'name': name, 'live_xml': None, 'config_xml': _hostdev_xml(name, *addresses)}
                               for name, addresses in held.items()])


def _resolve(host, raw, usage, *asks, keep_only=False):
    parsed = mappings.parse_mappings(raw)
    made = [mappings.Ask(guest, 'domains[%d].config[0]' % index, name) for index, (guest, name) in enumerate(asks)]
    mappings.resolve(host, parsed, usage, made, keep_only=keep_only)
    return made


VF_MAPPING = [{'name': 'vfs', 'candidates': [{'pf': PF}]}]


# -- validation ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('raw, where, value', [
    ([{'name': 'a b', 'candidates': [{'pf': PF}]}], r'mappings\[0\]\.name', "'a b'"),
    ([{'name': 'gpu', 'candidates': []}], r'mappings\[0\]\.candidates', r'\[\]'),
    ([{'name': 'gpu', 'candidates': [{}]}], r'mappings\[0\]\.candidates\[0\]', 'empty candidate'),
    ([{'name': 'gpu', 'candidates': [{'ids': '10de-1b80'}]}], r'mappings\[0\]\.candidates\[0\]\.ids', "'10de-1b80'"),
    ([{'name': 'gpu', 'candidates': [{'address': '0000:01:00'}]}], r'mappings\[0\]\.candidates\[0\]\.address',
     "'0000:01:00'"),
    ([{'name': 'gpu', 'candidates': [{'class': 'display'}]}], r'mappings\[0\]\.candidates\[0\]\.class', "'display'"),
    ([{'name': 'gpu', 'candidates': [{'ids': '10de:1b80', 'iommu_group': 3}]}],
     r'mappings\[0\]\.candidates\[0\]\.iommu_group', 'give address too'),
    ([{'name': 'gpu', 'candidates': [{'address': '0000:01:00.0', 'driver': 'nouveau'}]}],
     r'mappings\[0\]\.candidates\[0\]', 'selector key'),
    ([{'name': 'gpu', 'candidates': [{'address': '0000:01:00.0', 'serial': 'x'}]}],
     r'mappings\[0\]\.candidates\[0\]', 'serial'),
    ([{'name': 'gpu', 'count': 0, 'candidates': [{'pf': PF}]}], r'mappings\[0\]\.count', '0 is not'),
    ([{'name': 'gpu', 'count': 2, 'candidates': [{'address': '0000:01:00.0'}]}], r'mappings\[0\]\.count',
     '2 is more than the 1 candidate'),
    ([{'name': 'gpu', 'candidates': [{'pf': PF}]}, {'name': 'gpu', 'candidates': [{'pf': PF}]}],
     r'mappings\[1\]\.name', r"'gpu' is the name of mappings\[0\] too"),
    ([{'name': 'key', 'type': 'usb', 'candidates': [{'serial': '1'}]}], r'mappings\[0\]\.candidates\[0\]', 'needs ids'),
    ([{'name': 'key', 'type': 'usb', 'multifunction': True, 'candidates': [{'ids': '1050:0407'}]}],
     r'mappings\[0\]\.multifunction', 'pci mappings only'),
    ([{'name': 'x', 'type': 'scsi', 'candidates': [{'ids': '1050:0407'}]}], r'mappings\[0\]\.type', "'scsi'"),
])
def test_bad_mappings_name_the_field_and_value(raw, where, value):
    with pytest.raises(mappings.MappingError, match='%s: .*%s' % (where, value)):
        mappings.parse_mappings(raw)


def test_permitted_names_known_mappings_and_valid_selectors():
    parsed = mappings.parse_mappings(VF_MAPPING)
    with pytest.raises(mappings.MappingError, match=r"permitted\[1\]: 'gpu' is not the name of a mapping \(vfs\)"):
        mappings.parse_permitted(['vfs', 'gpu'], parsed)
    with pytest.raises(mappings.MappingError, match=r"permitted\[0\]\.ids: 'x' is not vendor:device"):
        mappings.parse_permitted([{'ids': 'x'}], parsed)
    assert mappings.parse_permitted(None, parsed) is None
    assert mappings.parse_permitted([], parsed) == []


# -- resolution ----------------------------------------------------------------------------------------------

def test_a_vf_mapping_by_pf_gives_each_guest_the_lowest_free_vf_deterministically(sriov):
    first = _resolve(sriov, VF_MAPPING, {}, ('web', 'vfs'), ('db', 'vfs'), ('cache', 'vfs'))
    assert [ask.devices[0]['device'] for ask in first] == VFS[:3]
    again = _resolve(sriov, VF_MAPPING, {}, ('web', 'vfs'), ('db', 'vfs'), ('cache', 'vfs'))
    assert [ask.devices[0]['device'] for ask in again] == VFS[:3]
    assert all(ask.error is None and not ask.kept for ask in first)


def test_an_unmanaged_device_on_a_host_driver_is_not_free(sriov):
    ask = mappings.Ask('web', 'config[0]', 'vfs', managed=False)
    mappings.resolve(sriov, mappings.parse_mappings(VF_MAPPING), {}, [ask])
    assert ask.devices[0]['device'] == VFS[1]   # VFS[0] is on iavf; libvirt would not bind it
    two = [mappings.Ask('web', 'config[0]', 'vf0', managed=False)]
    mappings.resolve(sriov, mappings.parse_mappings([{'name': 'vf0', 'candidates': [{'address': VFS[0]}]}]), {}, two)
    assert 'is bound to iavf, not to vfio-pci [guard bind]' in two[0].error


def test_a_held_device_is_kept_and_not_given_to_another_guest(sriov):
    # db already holds the third VF: it keeps it, web (asking first) takes the lowest other free one
    usage = _usage(db=[VFS[2]])
    web, db = _resolve(sriov, VF_MAPPING, usage, ('web', 'vfs'), ('db', 'vfs'))
    assert db.devices[0]['device'] == VFS[2] and db.kept == [VFS[2]]
    assert web.devices[0]['device'] == VFS[0] and not web.kept
    # a guest outside the task holding a VF makes it not free
    other, = _resolve(sriov, VF_MAPPING, _usage(legacy=[VFS[0]]), ('web', 'vfs'))
    assert other.devices[0]['device'] == VFS[1]


def test_no_free_candidate_refuses_naming_the_mapping_and_why_each_is_not_free(sriov):
    raw = [{'name': 'two', 'candidates': [{'address': VFS[0]}, {'address': VFS[1]}]}]
    asks = _resolve(sriov, raw, _usage(old=[VFS[1]]), ('a', 'two'), ('b', 'two'))
    assert asks[0].devices[0]['device'] == VFS[0]
    assert asks[1].error.startswith('mapping two has no free device for guest b (it asks for 1, 0 found)')
    assert '%s: given to guest a by this task' % VFS[0] in asks[1].error
    assert '%s: held by guest old (defined)' % VFS[1] in asks[1].error


def test_count_takes_several_and_a_count_above_the_candidates_is_named(sriov):
    raw = [{'name': 'pair', 'count': 2, 'candidates': [{'pf': PF}]}]
    ask, = _resolve(sriov, raw, {}, ('web', 'pair'))
    assert [entry['device'] for entry in ask.devices] == VFS[:2]
    raw = [{'name': 'many', 'count': 5, 'candidates': [{'pf': PF}]}]
    ask, = _resolve(sriov, raw, {}, ('web', 'many'))
    assert ask.error.startswith(r'mappings[0].count: 5 is more than the 4 device(s) of this host that mapping many')


def test_a_selector_matching_nothing_is_named(sriov):
    ask, = _resolve(sriov, [{'name': 'gpu', 'candidates': [{'ids': '10de:20b0'}]}], {}, ('web', 'gpu'))
    assert 'no device of this host matches mappings[0].candidates (ids 10de:20b0)' in ask.error


def test_a_changed_card_is_never_taken_and_a_guest_holding_it_is_refused_with_both_ids(sriov):
    raw = [{'name': 'nic', 'candidates': [{'address': VFS[0], 'ids': '8086:10ed', 'iommu_group': 20},
                                          {'address': VFS[1], 'ids': '8086:154c'}]}]
    ask, = _resolve(sriov, raw, {}, ('web', 'nic'))
    assert ask.devices[0]['device'] == VFS[1]
    held, = _resolve(sriov, raw, _usage(web=[VFS[0]]), ('web', 'nic'))
    assert 'holds %s from mapping nic, which no longer matches it' % VFS[0] in held.error
    assert 'vendor:device is 8086:154c on this host, the mapping says 8086:10ed' in held.error
    grouped = [{'name': 'nic', 'candidates': [{'address': VFS[0], 'iommu_group': 7}]}]
    changed, = _resolve(sriov, grouped, {}, ('web', 'nic'))
    assert 'IOMMU group is 20 on this host, the mapping says 7' in changed.error


def test_deleted_only_resolves_what_the_guest_holds(sriov):
    ask, = _resolve(sriov, VF_MAPPING, _usage(web=[VFS[3]]), ('web', 'vfs'), keep_only=True)
    assert [entry['device'] for entry in ask.devices] == [VFS[3]]
    none, = _resolve(sriov, VF_MAPPING, {}, ('web', 'vfs'), keep_only=True)
    assert none.devices == [] and none.error is None


def test_multifunction_takes_the_slot_and_a_lone_function_in_an_unclean_group_is_not_free(desktop):
    gpu = [{'name': 'gpu', 'multifunction': True, 'candidates': [{'ids': '10de:1b80', 'subsystem': '1043:8591'}]}]
    ask, = _resolve(desktop, gpu, {}, ('web', 'gpu'))
    assert ask.devices[0]['functions'] == ['0000:01:00.0', '0000:01:00.1'] and ask.error is None
    alone = [{'name': 'gpu', 'candidates': [{'ids': '10de:1b80'}]}]
    refused, = _resolve(desktop, alone, {}, ('web', 'gpu'))
    assert '0000:01:00.1' in refused.error and '[guard group]' in refused.error


def test_a_function_taken_by_a_multifunction_mapping_is_not_free_for_another_mapping(desktop):
    raw = [{'name': 'gpu', 'multifunction': True, 'candidates': [{'address': '0000:01:00.0'}]},
           {'name': 'hdmi', 'candidates': [{'address': '0000:01:00.1'}]}]
    gpu, hdmi = _resolve(desktop, raw, {}, ('web', 'gpu'), ('db', 'hdmi'))
    assert gpu.error is None and 'given to guest web by this task' in hdmi.error


def test_host_critical_candidates_are_not_free(desktop):
    nics = [{'name': 'nic', 'candidates': [{'class': '0200'}]}]
    inventory = [entry['device'] for entry in mappings.inventory(desktop, mappings.parse_mappings(nics)['nic'])]
    assert inventory == ['0000:00:1f.6', '0000:03:00.0']
    ask, = _resolve(desktop, nics, {}, ('web', 'nic'))
    assert ask.devices[0]['device'] == '0000:03:00.0'   # not the NIC of the default route
    both, = _resolve(desktop, [dict(nics[0], count=2)], {}, ('web', 'nic'))
    assert '0000:00:1f.6: ' in both.error and '[guard host_critical]' in both.error and 'default route' in both.error


def test_usb_keys_told_apart_by_serial(desktop):
    keys = [{'name': 'key', 'type': 'usb', 'candidates': [{'ids': '1050:0407', 'serial': '222'}]}]
    ask, = _resolve(desktop, keys, {}, ('web', 'key'))
    usb = ask.devices[0]['usb']
    assert usb.name == '1-4.1' and usb.serial == '222'
    # two alike are plugged in: the request carries bus and device to name this one
    assert mappings.usb_request(desktop, usb) == {'type': 'usb', 'vendor': '0x1050', 'product': '0x0407',
                                                  'bus': 1, 'device': 6}
    any_key = [{'name': 'key', 'type': 'usb', 'count': 2, 'candidates': [{'ids': '1050:0407'}]}]
    ask, = _resolve(desktop, any_key, {}, ('web', 'key'))
    assert [entry['usb'].serial for entry in ask.devices] == ['111', '222']


def test_node_devices_resolve_a_vf_mapping_too():
    host = nodedev_source.read_host(docs.sriov_host())
    ask, = _resolve(host, [{'name': 'vfs', 'candidates': [{'pf': docs.PF}]}], {}, ('web', 'vfs'))
    assert ask.devices[0]['device'] == docs.VF0
    # subsystem ids are not in node devices: an exact candidate pinning them cannot be checked, so it is refused
    pinned = [{'name': 'vf', 'candidates': [{'address': docs.VF0, 'subsystem': '8086:0000'}]}]
    refused, = _resolve(host, pinned, {}, ('web', 'vf'))
    assert 'subsystem vendor:device cannot be compared with 8086:0000' in refused.error


# -- permitted -----------------------------------------------------------------------------------------------

def test_requests_outside_the_permitted_set_are_named_with_the_rules(sriov, desktop):
    parsed = mappings.parse_mappings(VF_MAPPING)
    rules = mappings.parse_permitted(['vfs', {'address': '0000:42:00.0', 'ids': '1022:7901'}], parsed)
    requests = [{'type': 'sriov_vf', 'address': VFS[1], 'where': 'config[0]'},
                {'type': 'pci', 'address': '0000:42:00.0', 'where': 'config[1]'},
                {'type': 'pci', 'address': PF, 'where': 'config[2]'}]
    outside = mappings.permitted_check(sriov, parsed, rules, requests)
    assert outside == ['config[2] (pci %s) is outside the permitted devices [rule permitted: mapping vfs, '
                       'permitted[1] {address: 0000:42:00.0, ids: 1022:7901}]' % PF]
    # a selector whose ids no longer match the device permits nothing
    stale = mappings.parse_permitted([{'address': '0000:42:00.0', 'ids': '1022:0000'}], parsed)
    assert len(mappings.permitted_check(sriov, parsed, stale, requests[1:2])) == 1
    assert len(mappings.permitted_check(sriov, parsed, [], requests)) == 3
    usb_rules = mappings.parse_permitted([{'type': 'usb', 'ids': '1050:0407', 'serial': '222'}], {})
    usb = [{'type': 'usb', 'vendor': '0x1050', 'product': '0x0407', 'bus': 1, 'device': 6, 'where': 'config[0]'},
           {'type': 'usb', 'vendor': '0x1050', 'product': '0x0407', 'bus': None, 'device': None, 'where': 'config[1]'}]
    outside = mappings.permitted_check(desktop, {}, usb_rules, usb)
    assert len(outside) == 1 and outside[0].startswith('config[1] (usb 0x1050:0x0407)')


def test_report_lists_candidates_holders_free_count_and_mismatches(sriov):
    raw = [{'name': 'vfs', 'candidates': [{'pf': PF}]},
           {'name': 'stale', 'candidates': [{'address': VFS[0], 'ids': '8086:10ed'}]}]
    rows = mappings.report(sriov, mappings.parse_mappings(raw), _usage(web=[VFS[1]]))
    vfs, stale = rows
    assert [row['device'] for row in vfs['candidates']] == VFS and vfs['free'] == 3
    assert vfs['candidates'][1]['held_by'] == [{'domain': 'web', 'live': False, 'config': True}]
    assert stale['free'] == 0 and stale['mismatches'] == [
        '%s: vendor:device is 8086:154c on this host, the mapping says 8086:10ed (the card was replaced or moved)'
        % VFS[0]]
