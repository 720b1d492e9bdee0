# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

import os

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from ansible_collections.virtdev.libvirt.plugins.filter.play_inputs import play_inputs

PLAYBOOKS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', '..', 'playbooks')


def _options(name):
    with open(os.path.join(PLAYBOOKS, name + '.meta.yml'), encoding='utf-8') as handle:
        return yaml.safe_load(handle)['argument_specs'][name]['options']


def test_defaults_of_the_spec_fill_what_is_not_given_also_in_lists_of_dicts():
    inputs = play_inputs(_options('guests'), {'guests': [{'name': 'web01', 'memory': '2048'}], 'other': 1})
    assert inputs['guests_hosts'] == 'all' and inputs['guests_uri'] is None
    assert inputs['virtdev_host_prepare'] == {}
    # a guest's options have no defaults in the spec: what it does not give is left to the guest role
    [guest] = inputs['guests']
    assert guest['name'] == 'web01' and guest['memory'] == 2048
    assert {key for key, value in guest.items() if value is not None} == {'name', 'memory'}
    assert 'other' not in inputs
    nested = {'items': {'type': 'list', 'elements': 'dict', 'default': [], 'options': {
        'name': {'type': 'str', 'required': True}, 'size': {'type': 'int', 'default': 1}}}}
    assert play_inputs(nested, {'items': [{'name': 'a'}, {'name': 'b', 'size': '3'}]}) == {
        'items': [{'name': 'a', 'size': 1}, {'name': 'b', 'size': 3}]}


def test_answers_are_converted_to_their_types():
    answers = {'host_prepare_vfio_devices': '0000:65:00.0,0000:65:00.1', 'host_prepare_reboot_ok': 'true'}
    inputs = play_inputs(_options('host_prepare'), answers)
    assert inputs['host_prepare_vfio_devices'] == ['0000:65:00.0', '0000:65:00.1']
    assert inputs['host_prepare_reboot_ok'] is True


def test_a_wrong_answer_is_an_error_naming_it():
    with pytest.raises(AnsibleFilterError, match='host_prepare_iommu'):
        play_inputs(_options('host_prepare'), {'host_prepare_iommu': 'arm'})
