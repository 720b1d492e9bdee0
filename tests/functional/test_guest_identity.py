# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A name is a name: no module takes a guest's name for another guest's UUID; looking a guest up by UUID
is the explicit ``uuid`` option (domain_devices), and ``domain``'s ``uuid`` must match the named guest."""

from __future__ import annotations

VICTIM_UUID = '0d2f8c1e-5b7a-4c39-9e61-2a4b6c8d0e13'
VICTIM = ("<domain type='qemu'><name>victim</name><uuid>%s</uuid><memory unit='MiB'>64</memory>"
          "<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>" % VICTIM_UUID)
RNG = [{'kind': 'rng', 'backend': '/dev/urandom'}]


def test_another_guests_uuid_as_a_name_never_reaches_that_guest(embed_uri, run_module, virsh):
    virsh(embed_uri, 'define', '{xml}', xml=VICTIM)
    before = virsh(embed_uri, 'dumpxml', '--inactive', 'victim')
    absent = run_module('domain', {'uri': embed_uri, 'name': VICTIM_UUID, 'state': 'absent'})
    assert absent['rc'] == 0 and absent['changed'] is False and absent['commands'] == []
    devices = run_module('domain_devices', {'uri': embed_uri, 'domain': VICTIM_UUID, 'config': RNG})
    assert devices['failed'] is True and devices['msg'] == 'domain %r is not defined on %s' % (VICTIM_UUID, embed_uri)
    assert devices['changed'] is False and devices['outcome'] == 'not_written'
    assert virsh(embed_uri, 'dumpxml', '--inactive', 'victim') == before


def test_domain_devices_finds_a_guest_by_uuid_only_when_asked(embed_uri, run_module, virsh):
    virsh(embed_uri, 'define', '{xml}', xml=VICTIM)
    gathered = run_module('domain_devices', {'uri': embed_uri, 'uuid': VICTIM_UUID.upper(), 'state': 'gathered'})
    assert gathered['rc'] == 0 and isinstance(gathered['gathered'], list)
    single = run_module('domain_devices', {'uri': embed_uri, 'uuid': VICTIM_UUID, 'config': RNG})
    assert single['rc'] == 0 and single['outcome'] == 'written' and single['commands'][0]['kind'] == 'rng'
    manifest = run_module('domain_devices', {'uri': embed_uri, 'domains': [{'uuid': VICTIM_UUID, 'config': RNG}]})
    assert manifest['rc'] == 0 and manifest['results'][0]['domain'] == 'victim'
    assert manifest['results'][0]['changed'] is False
    refusals = {
        'domains[0]: give domain (a name) or uuid, not both': [{'domain': 'victim', 'uuid': VICTIM_UUID}],
        'domains[0]: give domain (a name) or uuid, one of them': [{'config': RNG}],
        "domains[0].uuid: 'victim' is not a UUID": [{'uuid': 'victim'}],
    }
    for message, domains in refusals.items():
        refused = run_module('domain_devices', {'uri': embed_uri, 'domains': domains})
        assert refused['failed'] is True and refused['msg'] == message
    both = run_module('domain_devices', {'uri': embed_uri, 'domain': 'victim', 'uuid': VICTIM_UUID, 'config': RNG})
    assert both['failed'] is True and 'mutually exclusive' in both['msg']


def test_domain_uuid_must_match_the_named_guest(embed_uri, run_module, virsh):
    virsh(embed_uri, 'define', '{xml}', xml=VICTIM)
    other = '11111111-2222-4333-8444-555555555555'
    refused = run_module('domain', {'uri': embed_uri, 'name': 'victim', 'uuid': other, 'state': 'absent'})
    assert refused['failed'] is True
    assert refused['msg'] == 'uuid: domain victim has UUID %s, not %s; nothing was changed' % (VICTIM_UUID, other)
    assert 'victim' in virsh(embed_uri, 'list', '--all', '--name')
    removed = run_module('domain', {'uri': embed_uri, 'name': 'victim', 'uuid': VICTIM_UUID, 'state': 'absent'})
    assert removed['rc'] == 0 and removed['commands'] == ['undefine']
    assert 'victim' not in virsh(embed_uri, 'list', '--all', '--name')
