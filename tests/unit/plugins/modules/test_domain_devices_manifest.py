# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The manifest (``domains``) interface of domain_devices: its devices are validated once, by the kind table,
not by a nested argument spec; bad input still fails before anything is read, naming the field and the value;
secrets stay out of every output; the result grows with what changed (``result_detail``).

The module runs in-process as Ansible runs it, against libvirt's test driver loaded with
``fixtures/sysfs/libvirt-test-driver.xml`` (guest ``fw`` is shut off, ``vdi`` runs)."""

from __future__ import annotations

import json
import os

import pytest

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils import _libvirt
from ansible_collections.virtdev.libvirt.plugins.modules import domain_devices
from ansible_collections.virtdev.libvirt.tests.unit.prepare_helpers import run_module
from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import FIXTURES

pytestmark = pytest.mark.skipif(not _libvirt.HAS_LIBVIRT, reason='libvirt-python is not installed')

TEST_URI = 'test://' + os.path.join(FIXTURES, 'libvirt-test-driver.xml')
# a URI no connection can be opened to: a failure that names a device proves nothing was read
UNREACHABLE = 'qemu+unix:///system?socket=/nonexistent/libvirt-sock'
SECRET = 'Zq8#pw7x'
NIC = {'kind': 'interface', 'mac': '52:54:00:aa:bb:01', 'source': {'network': 'default'}, 'model': 'virtio'}


def manifest(*configs):
    return [{'domain': name, 'config': config} for name, config in zip(('fw', 'vdi'), configs)]


@pytest.mark.parametrize('device, field, value', [
    (dict(NIC, queues=0), 'queues', '0 is out of range'),
    ({'kind': 'disk', 'target': 'vdb', 'readonly': 'maybe'}, 'readonly', "'maybe' is not a valid bool"),
    (dict(NIC, queues='four'), 'queues', "'four' is not a valid int"),
    (dict(NIC, model='e1000 x'), 'model', "'e1000 x'"),
    (dict(NIC, source={'network': 'default', 'bridge': 'br0'}), 'source', "'bridge': 'br0'"),
    (dict(NIC, modle='virtio'), None, 'modle do not belong to interface'),
    ({'kind': 'gpu'}, 'kind', "'gpu' is not one of"),
    ({'kind': 'disk', 'target': 'vdb', 'source': {'file': 'data.qcow2'}}, 'source.file', "'data.qcow2'"),
])
def test_a_bad_device_fails_before_anything_is_read_naming_the_field_and_value(capsys, device, field, value):
    result = run_module(capsys, domain_devices, uri=UNREACHABLE,
                        domains=manifest([NIC], [NIC, {'kind': 'rng', 'backend': '/dev/urandom'}, device]))
    assert result['rc'] == 1, result
    where = 'domains[1].config[2]' + ('.' + field if field else '')
    assert result['msg'].startswith(where + ':'), result['msg']
    assert value in result['msg']
    assert 'libvirt_calls' not in result


def test_values_are_converted_as_for_typed_options(capsys, tmp_path):
    """A manifest templated with Jinja gives strings; they convert as Ansible converts the typed config."""
    image = tmp_path / 'x.img'  # the source_exists guard looks for it
    image.write_bytes(b'')
    typed = [dict(NIC, queues=4), {'kind': 'disk', 'target': 'vdb', 'source': {'file': str(image)},
                                   'readonly': True}]
    text = [dict(NIC, queues='4'), {'kind': 'disk', 'target': 'vdb', 'source': {'file': str(image)},
                                    'readonly': 'yes'}]
    one = run_module(capsys, domain_devices, check=True, uri=TEST_URI, domain='fw', config=typed)
    many = run_module(capsys, domain_devices, check=True, uri=TEST_URI, domains=manifest(text),
                      result_detail='full')
    assert one['rc'] == many['rc'] == 0, (one, many)
    assert one['commands'] == many['results'][0]['commands'] and len(one['commands']) == 2
    assert one['after'] == many['results'][0]['after']


def test_the_single_domain_config_keeps_its_typed_argspec(capsys):
    """ansible-doc and Ansible's own validation still know every option of O(config)."""
    spec = domain_devices.argument_spec()
    assert 'options' not in spec['domains']['options']['config']
    assert {'kind', 'source', 'password', 'queues'} <= set(spec['config']['options'])
    assert spec['config']['options']['password']['no_log'] is True
    result = run_module(capsys, domain_devices, uri=UNREACHABLE, domain='fw', config=[{'kind': 'gpu'}])
    assert result['rc'] == 1 and 'value of kind must be one of' in result['msg']


def _graphics(password=SECRET, **extra):
    return dict({'kind': 'graphics', 'type': 'vnc', 'password': password}, **extra)


@pytest.mark.parametrize('case', ['applied', 'bad-device', 'bad-type', 'unknown-option', 'control-char', 'full'])
def test_a_manifest_password_never_appears_in_the_result_or_the_log(capsys, monkeypatch, case):
    logged = []
    monkeypatch.setattr(AnsibleModule, 'log', lambda self, msg, log_args=None: logged.append((msg, log_args)))
    params = {'uri': TEST_URI, 'domains': manifest([_graphics()], [NIC])}
    if case == 'bad-device':
        params['domains'][1]['config'].append(dict(NIC, mac='01:00:5e:00:00:01'))
    elif case == 'bad-type':
        params['domains'][0]['config'][0]['port'] = 'x'
    elif case == 'unknown-option':
        params['colour'] = 'blue'   # Ansible's own argspec failure echoes the parameters
    elif case == 'control-char':
        params['domains'][0]['config'][0]['password'] = SECRET + '\x07'
    elif case == 'full':
        params['result_detail'] = 'full'
    result = run_module(capsys, domain_devices, check=True, **params)
    assert result['rc'] == (0 if case in ('applied', 'full') else 1), result
    output = json.dumps(result) + repr(logged)
    assert SECRET not in output, [part for part in output.split(',') if SECRET in part]
    if case == 'full':   # the manifest is echoed, its password masked
        echoed = result['invocation']['module_args']['domains'][0]['config'][0]
        assert echoed['password'] == '********'
    if case == 'control-char':
        assert 'domains[0].config[0].password: (value hidden)' in result['msg']
    if case == 'bad-type':
        assert "domains[0].config[0].port: 'x' is not a valid int" in result['msg']
    if case in ('applied', 'full'):
        assert logged and 'Invoked with' in logged[0][0]


def test_a_no_change_manifest_returns_name_and_outcome_per_guest_and_no_echo(capsys):
    domains = manifest([], [])
    compact = run_module(capsys, domain_devices, uri=TEST_URI, domains=domains)
    full = run_module(capsys, domain_devices, uri=TEST_URI, domains=domains, result_detail='full')
    assert compact['rc'] == full['rc'] == 0
    assert compact['results'] == [{'domain': 'fw', 'changed': False, 'outcome': 'not_written'},
                                  {'domain': 'vdi', 'changed': False, 'outcome': 'not_written'}]
    assert compact['invocation']['module_args']['domains'] == '2 domains, 0 devices (not echoed; result_detail=full echoes them)'
    assert compact['libvirt_calls'] == full['libvirt_calls'] and compact['libvirt_calls']['lookup'] == 2  # read once, not again under a lock
    assert 'define' not in compact['libvirt_calls']
    for entry in full['results']:
        assert entry['guest_state'] and entry['commands'] == [] and 'before' in entry
    echoed = full['invocation']['module_args']['domains']
    assert [{key: value for key, value in entry.items() if value is not None} for entry in echoed] == domains


def test_a_changed_guest_is_reported_in_full_and_the_echo_has_no_unset_options(capsys):
    compact = run_module(capsys, domain_devices, check=True, uri=TEST_URI, domains=manifest([NIC], []))
    assert compact['rc'] == 0, compact
    changed, unchanged = compact['results']
    assert changed['changed'] and changed['commands'][0]['op'] == 'attach' and 'after' not in changed
    assert changed['guest_state'] == 'shutoff'
    assert unchanged == {'domain': 'vdi', 'changed': False, 'outcome': 'not_written'}
    full = run_module(capsys, domain_devices, check=True, uri=TEST_URI, domains=manifest([NIC], []),
                      result_detail='full')
    # the echo is the manifest as given: no option the user left out appears, filled in as null
    assert full['invocation']['module_args']['domains'][0]['config'] == [NIC]


def test_a_changed_guest_has_its_device_lists_only_with_diff_or_result_detail_full(capsys):
    """before and after are the guest's whole device lists: a manifest run that changes every guest of a host
    returns them only when asked (--diff, whose diff shows the devices anyway, or result_detail=full); what
    changed is in commands either way."""
    runs = {'compact': run_module(capsys, domain_devices, check=True, uri=TEST_URI, domains=manifest([NIC], [])),
            'diff': run_module(capsys, domain_devices, check=True, diff=True, uri=TEST_URI,
                               domains=manifest([NIC], [])),
            'full': run_module(capsys, domain_devices, check=True, uri=TEST_URI, domains=manifest([NIC], []),
                               result_detail='full')}
    for name, result in runs.items():
        assert result['rc'] == 0, (name, result)
    entries = {name: result['results'][0] for name, result in runs.items()}
    assert 'before' not in entries['compact'] and 'after' not in entries['compact']
    assert entries['diff']['before'] == entries['full']['before']
    assert entries['diff']['after'] == entries['full']['after']
    assert entries['full']['before'] and all('class' in device for device in entries['full']['before'])
    # the NIC is not there before, it is after; everything else of the entry is the same in all three
    assert NIC['mac'] not in json.dumps(entries['full']['before']) and NIC['mac'] in json.dumps(entries['full']['after'])
    assert NIC['mac'] in json.dumps(entries['compact']['commands'])
    assert {key: value for key, value in entries['full'].items() if key not in ('before', 'after')} == entries['compact']
    assert runs['diff']['diff']['before'] and 'diff' not in runs['compact']
    # a single domain is reported in full as before
    single = run_module(capsys, domain_devices, check=True, uri=TEST_URI, domain='fw', config=[NIC])
    assert single['rc'] == 0 and 'before' in single
