# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guest_devices filter: profile expansion is a valid, idempotent domain_devices config."""

from __future__ import annotations

import pytest
import yaml

from ansible.errors import AnsibleFilterError

from ansible_collections.virtdev.libvirt.plugins.filter.guest_devices import guest_devices
from ansible_collections.virtdev.libvirt.plugins.filter.guest_plan import resolve_profile
from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine

ROLE_VARS = 'roles/guest/vars/main.yml'


@pytest.fixture(scope='module')
def profiles(request):
    with open(request.config.rootpath / ROLE_VARS, encoding='utf-8') as handle:
        profiles = yaml.safe_load(handle)['__guest_builtin_profiles']
    return {name: resolve_profile(name, profiles) for name in profiles}


def test_every_profile_expands_to_a_valid_config(profiles):
    for name, profile in profiles.items():
        config = guest_devices(profile, [{'network': 'default'}, {'bridge': 'br0', 'mac': '52:54:00:00:00:77'}],
                               [{'file': '/srv/a.qcow2', 'format': 'qcow2'}, {'block': '/dev/vg/b'}],
                               ['0000:65:00.0', {'type': 'usb', 'vendor': '0x046d', 'product': '0xc52b'}])
        declared = _device_engine.declare(config, 'guest')   # validates every entry
        disks = [item.spec for item in declared if item.kind is not None and item.kind.name == 'disk']
        prefix = profile['disk_prefix']
        assert [disk['target'] for disk in disks] == [prefix + 'b', prefix + 'c'], name
        assert {disk['bus'] for disk in disks} == {profile['disk_bus']}
        nics = [item.spec for item in declared if item.kind is not None and item.kind.name == 'interface']
        assert [nic['model'] for nic in nics] == [profile['nic_model']] * 2
        assert nics[1]['mac'] == '52:54:00:00:00:77'


def test_the_virtio_and_emulated_profiles_are_what_they_say(profiles):
    classes = {}
    for name in ('virtio', 'emulated'):
        declared = _device_engine.declare(guest_devices(profiles[name], [{'network': 'default'}],
                                                        [{'file': '/srv/a.img'}]), 'guest')
        classes[name] = {item.kind.device_class(item.spec) for item in declared}
    assert classes == {'virtio': {'virtio'}, 'emulated': {'emulated'}}


def test_explicit_targets_are_kept_and_skipped():
    profile = {'nic_model': 'virtio', 'disk_bus': 'virtio', 'disk_prefix': 'vd', 'devices': []}
    config = guest_devices(profile, [], [{'file': '/a', 'target': 'vdb'}, {'file': '/b'}])
    assert [disk['target'] for disk in config] == ['vdb', 'vdc']


@pytest.mark.parametrize('args, message', [
    (([{'nic': 'x'}], []), 'networks[0]'),
    (([], [{'size': 10}]), 'disks[0]'),
])
def test_bad_entries_name_themselves(args, message):
    profile = {'nic_model': 'virtio', 'disk_bus': 'virtio', 'disk_prefix': 'vd', 'devices': []}
    with pytest.raises(AnsibleFilterError, match=message.replace('[', '\\[')):
        guest_devices(profile, *args)
    with pytest.raises(AnsibleFilterError, match='the profile needs'):
        guest_devices({}, [])


def test_disk_names_go_on_past_26_disks_as_linux_names_them(profiles):
    from ansible_collections.virtdev.libvirt.plugins.filter.guest_devices import disk_letters
    assert [disk_letters(n) for n in (0, 1, 25, 26, 27, 51, 52, 701, 702)] == \
        ['a', 'b', 'z', 'aa', 'ab', 'az', 'ba', 'zz', 'aaa']
    disks = [{'file': '/srv/d%d.qcow2' % n} for n in range(30)]
    config = guest_devices(profiles['virtio'], [], disks, [])
    targets = [entry['target'] for entry in config if entry['kind'] == 'disk']
    assert targets[:2] == ['vdb', 'vdc'] and targets[24:] == ['vdz', 'vdaa', 'vdab', 'vdac', 'vdad', 'vdae']
    assert len(_device_engine.declare(config, 'guest')) == len(config)   # every generated name is valid
