# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Device mappings on fake host trees (sysfs fixtures) and node-device documents: validation naming the field
and value, resolution (kept, lowest free, deterministic), hardware checks, permitted devices, the report."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine, _ids
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import mappings, nodedev_source, report, sysfs_source
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


@pytest.mark.parametrize('name', ['my gpu', '', 'x' * 65])
def test_a_bad_mapping_name_is_explained_alike_in_mappings_and_in_a_guest_device(name):
    with pytest.raises(mappings.MappingError) as in_mappings:
        mappings.parse_mappings([{'name': name, 'candidates': [{'pf': PF}]}])
    with pytest.raises(SpecError) as in_device:
        _device_engine.declare([{'kind': 'hostdev', 'mapping': name}], 'web', 'config')
    for error, where in ((in_mappings, 'mappings[0].name'), (in_device, 'config[0].mapping')):
        message = str(error.value)
        assert message.startswith('%s: %r is not ' % (where, name)) and _ids.MAPPING_NAME_HINT in message, message


def test_hex_prefixes_read_alike_in_either_case():
    lower = mappings.parse_mappings([{'name': 'nic', 'candidates': [{'class': '0x02', 'ids': '0x8086:0x1533'}]}])
    upper = mappings.parse_mappings([{'name': 'nic', 'candidates': [{'class': '0X02', 'ids': '0X8086:0X1533'}]}])
    assert lower['nic'].candidates == upper['nic'].candidates


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


def test_two_entries_of_one_guest_never_get_the_same_device(sriov):
    """Each entry of a guest asking for a mapping gets its own device, also when the guest holds one of them."""
    asks = [mappings.Ask('web', 'config[%d]' % index, 'vfs') for index in range(2)]
    mappings.resolve(sriov, mappings.parse_mappings(VF_MAPPING), {}, asks)
    assert [ask.devices[0]['device'] for ask in asks] == VFS[:2] and all(ask.error is None for ask in asks)
    held = [mappings.Ask('web', 'config[%d]' % index, 'vfs') for index in range(2)]
    mappings.resolve(sriov, mappings.parse_mappings(VF_MAPPING), _usage(web=[VFS[2]]), held)
    assert [ask.devices[0]['device'] for ask in held] == [VFS[2], VFS[0]] and held[0].kept == [VFS[2]]
    two = [{'name': 'two', 'candidates': [{'address': VFS[0]}]}]
    both = [mappings.Ask('web', 'config[%d]' % index, 'two') for index in range(2)]
    mappings.resolve(sriov, mappings.parse_mappings(two), {}, both)
    assert both[0].devices[0]['device'] == VFS[0]
    assert 'given to config[0] of this guest by this task' in both[1].error, both[1].error


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


def test_a_mapping_never_chooses_a_device_outside_the_permitted_set(sriov):
    """The permitted VF is chosen, not the lowest free one; the report counts only permitted devices as free."""
    parsed = mappings.parse_mappings(VF_MAPPING + [{'name': 'vf2', 'candidates': [{'address': VFS[2]}]}])
    rules = mappings.parse_permitted(['vf2'], parsed)
    ask = mappings.Ask('web', 'config[0]', 'vfs')
    mappings.resolve(sriov, parsed, {}, [ask], permitted=rules)
    assert ask.error is None and [entry['device'] for entry in ask.devices] == [VFS[2]]
    vfs = mappings.report(sriov, parsed, {}, rules)[0]
    assert vfs['free'] == 1 and [row['device'] for row in vfs['candidates'] if row['free']] == [VFS[2]]
    assert vfs['candidates'][0]['not_free'] == ['outside the permitted devices [rule permitted: mapping vf2]']
    none = mappings.Ask('web', 'config[0]', 'vfs')
    mappings.resolve(sriov, parsed, {}, [none], permitted=[])
    assert 'outside the permitted devices [rule permitted: empty]' in none.error


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


# -- mediated devices: instances of a type on the parents a candidate selects ---------------------------------

MDEV_A, MDEV_B, MDEV_C = ('11111111-0000-4000-8000-000000000001', '22222222-0000-4000-8000-000000000002',
                          '33333333-0000-4000-8000-000000000003')
T4 = '0000:01:00.0'
T4_MAPPING = [{'name': 'vgpu', 'type': 'mdev', 'candidates': [{'ids': '10de:1eb8', 'mdev_type': 'nvidia-222'}]}]


def _more_t4_mdevs(spec):
    """The mdev fixture with three more T4-1B instances (one exists already) and a GVT-g one."""
    spec['mdevs'].extend([{'uuid': MDEV_B, 'parent': T4, 'type': 'nvidia-222'},
                          {'uuid': MDEV_A, 'parent': T4, 'type': 'nvidia-222'},
                          {'uuid': MDEV_C, 'parent': '0000:00:02.0', 'type': 'i915-GVTg_V5_8'}])


@pytest.fixture(name='mdevhost', scope='module')
def mdevhost_fixture(tmp_path_factory):
    return sysfs_source.read_host(build('mdev', tmp_path_factory.mktemp('mdev'), _more_t4_mdevs))


def _mdev_usage(**held):
    """Usage as read from definitions: guest -> mdev UUIDs (persistent), guest_live -> UUIDs (running only)."""
    def xml(name, uuids):
        devices = ''.join("<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source><address uuid='%s'/>"
                          "</source></hostdev>" % uuid for uuid in uuids)
        return "<domain type='qemu'><name>%s</name><devices>%s</devices></domain>" % (name, devices)
    rows = []
    for name, uuids in held.items():
        live = name.endswith('_live')
        name = name[:-len('_live')] if live else name
        rows.append({'name': name, 'live_xml': xml(name, uuids) if live else None,
                     'config_xml': None if live else xml(name, uuids)})
    return usage_from_domains(rows)


@pytest.mark.parametrize('candidate, where, value', [
    ({'ids': '10de:1eb8'}, r'mappings\[0\]\.candidates\[0\]', 'needs mdev_type'),
    ({'mdev_type': 'nvidia-222'}, r'mappings\[0\]\.candidates\[0\]', 'needs its parent too'),
    ({'class': '0302', 'mdev_type': 'nvidia 222'}, r'mappings\[0\]\.candidates\[0\]\.mdev_type', "'nvidia 222'"),
    ({'class': '0302', 'mdev_type': 'nvidia-222', 'serial': 'x'}, r'mappings\[0\]\.candidates\[0\]', 'serial'),
    ({'address': T4, 'class': '0302', 'mdev_type': 'nvidia-222'}, r'mappings\[0\]\.candidates\[0\]', 'selector key'),
])
def test_bad_mdev_candidates_name_the_field_and_value(candidate, where, value):
    with pytest.raises(mappings.MappingError, match='%s: .*%s' % (where, value)):
        mappings.parse_mappings([{'name': 'vgpu', 'type': 'mdev', 'candidates': [candidate]}])
    with pytest.raises(mappings.MappingError, match=r'mappings\[0\]\.multifunction'):
        mappings.parse_mappings([{'name': 'vgpu', 'type': 'mdev', 'multifunction': True,
                                  'candidates': [{'address': T4, 'mdev_type': 'nvidia-222'}]}])


def test_an_mdev_mapping_gives_the_lowest_free_instance_by_parent_then_uuid(mdevhost):
    existing = '8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e'   # the fixture's own T4-1B
    asks = _resolve(mdevhost, T4_MAPPING, _mdev_usage(), ('g1', 'vgpu'), ('g2', 'vgpu'), ('g3', 'vgpu'))
    assert [ask.error for ask in asks] == [None, None, None]
    assert [[entry['device'] for entry in ask.devices] for ask in asks] == [
        ['mdev ' + MDEV_A], ['mdev ' + MDEV_B], ['mdev ' + existing]]
    # the same manifest resolves the same way again; the GVT-g instance of another type is never a candidate
    again = _resolve(mdevhost, T4_MAPPING, _mdev_usage(), ('g1', 'vgpu'), ('g2', 'vgpu'), ('g3', 'vgpu'))
    assert [ask.devices for ask in again] == [ask.devices for ask in asks]
    # by address of the parent and by class and driver alike
    for candidate in ({'address': T4}, {'class': '0302', 'driver': 'nvidia'}):
        raw = [{'name': 'vgpu', 'type': 'mdev', 'candidates': [dict(candidate, mdev_type='nvidia-222')]}]
        assert _resolve(mdevhost, raw, _mdev_usage(), ('g1', 'vgpu'))[0].devices[0]['mdev'].uuid == MDEV_A


def test_a_held_mdev_is_kept_and_one_in_another_guests_live_or_persistent_definition_is_not_free(mdevhost):
    usage = _mdev_usage(g2=[MDEV_B], other_live=[MDEV_A])
    g1, g2 = _resolve(mdevhost, T4_MAPPING, usage, ('g1', 'vgpu'), ('g2', 'vgpu'))
    assert g2.kept == ['mdev ' + MDEV_B] and g2.devices[0]['mdev'].uuid == MDEV_B
    assert g1.devices[0]['mdev'].uuid == '8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e' and g1.kept == []


def test_no_free_mdev_is_refused_with_counts_and_how_to_create_more(mdevhost):
    usage = _mdev_usage(a=[MDEV_A], b=[MDEV_B], c_live=['8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e'])
    (ask,) = _resolve(mdevhost, T4_MAPPING, usage, ('g1', 'vgpu'))
    assert ask.devices == []
    assert ask.error.startswith('mapping vgpu has no free device for guest g1'), ask.error
    assert '3 mdev(s) of type nvidia-222 exist on %s, 3 not free' % T4 in ask.error
    assert 'virtdev.libvirt.mdev' in ask.error and '%s: available_instances 15' % T4 in ask.error
    assert 'mdev %s: held by guest a (defined)' % MDEV_A in ask.error
    assert 'held by guest c (running)' in ask.error
    # a type no instance of exists: said, with where to create it
    raw = [{'name': 'big', 'type': 'mdev', 'candidates': [{'address': T4, 'mdev_type': 'nvidia-223'}]}]
    (none,) = _resolve(mdevhost, raw, _mdev_usage(), ('g1', 'big'))
    assert '0 mdev(s) of type nvidia-223 exist on %s' % T4 in none.error
    assert 'available_instances 0' in none.error, none.error
    # count: a guest asking for two gets two or is refused
    raw = [dict(T4_MAPPING[0], count=2)]
    two, short = _resolve(mdevhost, raw, _mdev_usage(), ('g1', 'vgpu'), ('g2', 'vgpu'))
    assert len(two.devices) == 2 and 'not enough free devices' in short.error and 'given to guest g1' in short.error


def test_an_exact_mdev_parent_that_changed_is_named_with_both_ids(mdevhost):
    candidate = {'address': T4, 'ids': '10de:1db4', 'mdev_type': 'nvidia-222'}
    raw = [{'name': 'vgpu', 'type': 'mdev', 'candidates': [candidate]}]
    (ask,) = _resolve(mdevhost, raw, _mdev_usage(), ('g1', 'vgpu'))
    assert 'vendor:device is 10de:1eb8 on this host, the mapping says 10de:1db4' in ask.error, ask.error
    raw[0]['candidates'][0]['address'] = '0000:09:00.0'
    (gone,) = _resolve(mdevhost, raw, _mdev_usage(), ('g1', 'vgpu'))
    assert 'no parent device on this host' in gone.error and 'there is no PCI device 0000:09:00.0' in gone.error


def test_mdev_mapping_report_and_permitted(mdevhost):
    parsed = mappings.parse_mappings(T4_MAPPING)
    (row,) = mappings.report(mdevhost, parsed, _mdev_usage(a=[MDEV_A]))
    assert row['type'] == 'mdev' and row['free'] == 2 and len(row['candidates']) == 3
    held = [item for item in row['candidates'] if item['uuid'] == MDEV_A][0]
    assert held['held_by'] == [{'domain': 'a', 'live': False, 'config': True}] and held['free'] is False
    assert held['parent'] == T4 and held['mdev_type'] == 'nvidia-222' and held['ids'] == '10de:1eb8'
    assert row['parents'] == [{'address': T4, 'mdev_type': 'nvidia-222', 'available_instances': 15}]
    markdown = report.render({'mappings': [row]}, ['markdown'], 'x')['markdown']
    assert '| mdev %s | nvidia-222 on %s | 10de:1eb8 | a (defined) | no |' % (MDEV_A, T4) in markdown, markdown
    # permitted by the mapping: its instances, not the parent as a whole PCI device nor other types' mdevs
    rules = mappings.parse_permitted(['vgpu'], parsed)
    requests = [{'type': 'mdev', 'uuid': MDEV_A, 'where': 'x[0]'}, {'type': 'mdev', 'uuid': MDEV_C, 'where': 'x[1]'},
                {'type': 'pci', 'address': T4, 'where': 'x[2]'}]
    outside = mappings.permitted_check(mdevhost, parsed, rules, requests)
    assert len(outside) == 2 and 'x[1] (mdev %s on 0000:00:02.0)' % MDEV_C in outside[0] and 'x[2]' in outside[1]
    # a type: mdev selector, and the parent permitted as PCI device still permits its mdevs
    rules = mappings.parse_permitted([{'type': 'mdev', 'class': '0300', 'mdev_type': 'i915-GVTg_V5_8'},
                                      {'address': T4}], parsed)
    assert mappings.permitted_check(mdevhost, parsed, rules, requests) == []
    assert mappings.permitted_mdevs(mdevhost, parsed, rules) == {MDEV_C}


def test_node_devices_resolve_an_mdev_mapping_too():
    """Over a remote URI the host is read from node devices: the same instances, in the same order."""
    host = nodedev_source.read_host([
        docs.pci(T4, '0x10de', '0x1eb8', '0x030200', driver='nvidia', group=2, mdev_types=[('nvidia-222', 13)]),
        docs.mdev(MDEV_B, T4, 'nvidia-222', 20), docs.mdev(MDEV_A, T4, 'nvidia-222', 21)])
    first, second, third = _resolve(host, T4_MAPPING, _mdev_usage(), ('g1', 'vgpu'), ('g2', 'vgpu'), ('g3', 'vgpu'))
    assert [first.devices[0]['mdev'].uuid, second.devices[0]['mdev'].uuid] == [MDEV_A, MDEV_B]
    assert '2 mdev(s) of type nvidia-222 exist on %s, 2 not free' % T4 in third.error, third.error
    assert 'available_instances 13' in third.error
