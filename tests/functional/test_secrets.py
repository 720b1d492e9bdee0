# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Secrets against a real libvirt (docs/domain_devices.md, "Adopting a guest").

What ``gathered`` cannot show (a console password) survives ``replaced``, ``overridden`` and ``merged``
with the gathered list, is removed only when asked, and never appears in any output: results, diffs,
errors, ``ansible-playbook -vvv``. The secret in the definition is checked with the definition read
with ``--security-info`` (VIR_DOMAIN_XML_SECURE).

Every password holds ``& < > ' "`` (XML escapes) and starts with a marker no output may contain: every
form a password can take (raw, XML-escaped, JSON or repr escapes) starts with that marker.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from xml.sax.saxutils import quoteattr

import pytest
from lxml import etree

from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import all_kinds
from ansible_collections.virtdev.libvirt.plugins.module_utils._secrets import PLACEHOLDER

SMALL_GUEST = ("<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory>"
               "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>%s</devices></domain>")
# VNC passwords are at most 8 characters (libvirt refuses longer ones)
SECRETS = {'vnc': 'Zq7&<>\'"', 'spice': 'Xw4&<>\'" spice pw'}
NEW_SECRETS = {'vnc': 'Nn5&<>\'"', 'spice': 'Mm6&<>\'" new pw'}
MARKERS = ('Zq7', 'Xw4', 'Nn5', 'Mm6')

# (kind, secret option, the rest of the device) for every secret field of the kind table
TYPED_CASES = [('graphics', 'password', {'type': 'vnc'}), ('graphics', 'password', {'type': 'spice', 'autoport': True})]


def assert_hidden(*outputs):
    text = '\n'.join(output if isinstance(output, str) else json.dumps(output) for output in outputs)
    leaked = [marker for marker in MARKERS if marker in text]
    assert not leaked, 'a secret (%s) leaked:\n%s' % (leaked, text[:4000])


def secure_secrets(virsh, uri, name):
    """{graphics type: passwd} of the persistent definition read with the secure flag."""
    domain = etree.fromstring(virsh(uri, 'dumpxml', '--inactive', '--security-info', name).encode())
    return {node.get('type'): node.get('passwd') for node in domain.iter('graphics')}


def converge(run_module, uri, name, state, config, check_mode=False):
    result = run_module('domain_devices', {'uri': uri, 'domain': name, 'state': state, 'config': config},
                        check_mode=check_mode, diff=True)
    assert result['rc'] == 0, result
    assert_hidden(result)
    return result


def assert_feeding_back_changes_nothing(run_module, virsh, uri, name, gathered, expected):
    for state in ('replaced', 'overridden', 'merged'):
        for check_mode in (True, False):
            result = converge(run_module, uri, name, state, gathered, check_mode=check_mode)
            assert result['changed'] is False and result['commands'] == [], (state, check_mode, result)
        assert secure_secrets(virsh, uri, name) == expected, state


def predict_and_apply(run_module, uri, name, config):
    """Check mode, then the real run: both change, the same way."""
    predicted = converge(run_module, uri, name, 'merged', config, check_mode=True)
    applied = converge(run_module, uri, name, 'merged', config)
    assert predicted['changed'] is applied['changed'] is True
    assert predicted['commands'] == applied['commands']
    assert predicted['diff']['after'].count('<!--') == applied['diff']['after'].count('<!--')
    return applied


def test_every_secret_field_of_the_kind_table_is_covered():
    known = {(kind.name, field.option) for kind in all_kinds() for field in kind.secret_fields}
    assert known == {(kind, option) for kind, option, _rest in TYPED_CASES}


@pytest.mark.parametrize('kind,option,rest', TYPED_CASES, ids=lambda value: value.get('type', '') if
                         isinstance(value, dict) else value)
def test_a_secret_the_module_set_survives_every_state_until_removed(kind, option, rest, libvirtd_uri, run_module,
                                                                    virsh):
    name = 'sec-typed-%s' % rest['type']
    virsh(libvirtd_uri, 'define', '{xml}', xml=SMALL_GUEST % (name, ''))
    secret = SECRETS[rest['type']]
    try:
        predict_and_apply(run_module, libvirtd_uri, name, [dict(rest, kind=kind, **{option: secret})])
        assert secure_secrets(virsh, libvirtd_uri, name) == {rest['type']: secret}

        gathered = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'state': 'gathered'})
        assert_hidden(gathered)
        # the device the module wrote comes back typed (libvirt's <listen type='address'/> is understood)
        (entry,) = [item for item in gathered['gathered'] if item['kind'] == kind]
        assert entry[option] == PLACEHOLDER and entry['type'] == rest['type']
        assert not [item for item in gathered['gathered'] if item['kind'] == 'xml' and '<%s' % kind in item['xml']]
        assert_feeding_back_changes_nothing(run_module, virsh, libvirtd_uri, name, gathered['gathered'],
                                            {rest['type']: secret})

        changed = predict_and_apply(run_module, libvirtd_uri, name,
                                    [dict(rest, kind=kind, **{option: NEW_SECRETS[rest['type']]})])
        assert '%s changed' % option in changed['diff']['after']
        assert secure_secrets(virsh, libvirtd_uri, name) == {rest['type']: NEW_SECRETS[rest['type']]}

        removal = [dict(rest, kind=kind, **{option: ''})]
        removed = predict_and_apply(run_module, libvirtd_uri, name, removal)
        assert '<!-- %s removed -->' % option in removed['diff']['after']
        assert removed['commands'][0]['op'] == 'update'
        assert secure_secrets(virsh, libvirtd_uri, name) == {rest['type']: None}
        assert converge(run_module, libvirtd_uri, name, 'merged', removal)['changed'] is False
    finally:
        virsh(libvirtd_uri, 'undefine', name, check=False)


# Guests defined by hand (virsh define = defineXML): plain devices come back typed, devices with parts no
# option describes (sharePolicy, a network listen, passwdValidTo) come back as raw xml with the placeholder.
HAND_MADE = {
    'vnc-typed': "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1' passwd=%s>"
                 "<listen type='address' address='127.0.0.1'/></graphics>",
    'vnc-raw': "<graphics type='vnc' port='-1' autoport='yes' sharePolicy='force-shared' passwd=%s/>",
    'spice-typed': "<graphics type='spice' autoport='yes' passwd=%s/>",
    'spice-raw': "<graphics type='spice' autoport='yes' passwd=%s passwdValidTo='2040-01-01T00:00:00' "
                 "connected='keep'><listen type='network' network='default'/><image compression='off'/></graphics>",
}


@pytest.mark.parametrize('case', sorted(HAND_MADE))
def test_a_hand_made_guest_keeps_its_password_when_adopted(case, embed_uri, run_module, virsh):
    graphics_type, form = case.split('-')
    name = 'hand-%s' % case
    secret = SECRETS[graphics_type]
    virsh(embed_uri, 'define', '{xml}', xml=SMALL_GUEST % (name, HAND_MADE[case] % quoteattr(secret)))
    assert secure_secrets(virsh, embed_uri, name) == {graphics_type: secret}

    gathered = run_module('domain_devices', {'uri': embed_uri, 'domain': name, 'state': 'gathered'})
    assert_hidden(gathered)
    (entry,) = [item for item in gathered['gathered'] if item['kind'] == 'graphics' or
                item.get('xml', '').startswith('<graphics')]
    if form == 'typed':
        assert entry['kind'] == 'graphics' and entry['password'] == PLACEHOLDER
    else:
        assert entry['kind'] == 'xml' and 'passwd="%s"' % PLACEHOLDER in entry['xml']
    assert_feeding_back_changes_nothing(run_module, virsh, embed_uri, name, gathered['gathered'],
                                        {graphics_type: secret})

    def with_password(value):
        if form == 'typed':
            return [dict(entry, password=value)]
        return [{'kind': 'xml', 'xml': entry['xml'].replace('passwd="%s"' % PLACEHOLDER, 'passwd=%s' % quoteattr(value))}]

    changed = predict_and_apply(run_module, embed_uri, name, with_password(NEW_SECRETS[graphics_type]))
    assert '<!-- password changed -->' in changed['diff']['after']
    assert secure_secrets(virsh, embed_uri, name) == {graphics_type: NEW_SECRETS[graphics_type]}

    removed = predict_and_apply(run_module, embed_uri, name, with_password(''))
    assert '<!-- password removed -->' in removed['diff']['after']
    assert secure_secrets(virsh, embed_uri, name) == {graphics_type: None}
    # (libvirt drops passwdValidTo and connected with the password: adopt again from a fresh gathered)
    again = run_module('domain_devices', {'uri': embed_uri, 'domain': name, 'state': 'gathered'})
    assert PLACEHOLDER not in json.dumps(again['gathered'])
    assert_feeding_back_changes_nothing(run_module, virsh, embed_uri, name, again['gathered'], {graphics_type: None})


def test_the_placeholder_on_a_guest_without_that_password_is_refused(embed_uri, run_module, virsh):
    virsh(embed_uri, 'define', '{xml}', xml=SMALL_GUEST % ('nopw', ''))
    for config, field in (([{'kind': 'graphics', 'type': 'vnc', 'password': PLACEHOLDER}], 'config[0].password'),
                          ([{'kind': 'xml', 'xml': "<graphics type='vnc' passwd='%s'/>" % PLACEHOLDER}],
                           'config[0].xml')):
        result = run_module('domain_devices', {'uri': embed_uri, 'domain': 'nopw', 'config': config})
        assert result['failed'] is True and result['msg'].startswith('domain nopw: ' + field), result
        assert 'keep the current password' in result['msg']
    assert secure_secrets(virsh, embed_uri, 'nopw') == {}


def test_rendered_parsed_and_failures_never_show_a_secret(embed_uri, run_module, virsh):
    secret, long_secret = SECRETS['vnc'], 'Zq7&<>\'" is longer than eight'
    rendered = run_module('domain_devices', {'state': 'rendered', 'config': [
        {'kind': 'graphics', 'type': 'vnc', 'password': secret},
        {'kind': 'xml', 'xml': '<graphics type="spice" passwd=%s/>' % quoteattr(SECRETS['spice'])}]})
    assert_hidden(rendered)
    assert ['passwd="%s"' % PLACEHOLDER in xml for xml in rendered['rendered']] == [True, True]

    domain_xml = SMALL_GUEST % ('p', "<graphics type='vnc' passwd=%s/>" % quoteattr(secret))
    parsed = run_module('domain_devices', {'state': 'parsed', 'running_config': domain_xml})
    assert_hidden(parsed)
    assert [item['password'] for item in parsed['parsed'] if item['kind'] == 'graphics'] == [PLACEHOLDER]

    virsh(embed_uri, 'define', '{xml}', xml=SMALL_GUEST % ('fails', ''))
    # libvirt refuses the definition (a VNC password longer than 8 characters): the failure shows none
    for config in ([{'kind': 'graphics', 'type': 'vnc', 'password': long_secret}],
                   [{'kind': 'xml', 'xml': '<graphics type="vnc" passwd=%s/>' % quoteattr(long_secret)}]):
        failed = run_module('domain_devices', {'uri': embed_uri, 'domain': 'fails', 'config': config}, diff=True)
        assert failed['failed'] is True and 'VNC password' in failed['msg'], failed
        assert_hidden(failed)
    assert secure_secrets(virsh, embed_uri, 'fails') == {}


PLAYBOOK = '''
- name: Every state with console passwords, run with -vvv
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Set passwords (check mode, then for real)
      virtdev.libvirt.domain_devices: &set
        uri: "{{ uri }}"
        domain: vvv
        config:
          - {kind: graphics, type: vnc, password: "{{ vnc_pw }}"}
          - {kind: xml, xml: "{{ spice_xml }}"}
      check_mode: true
    - name: Set passwords
      virtdev.libvirt.domain_devices: *set
    - name: Gather
      virtdev.libvirt.domain_devices: {uri: "{{ uri }}", domain: vvv, state: gathered}
      register: gathered
    - name: Feed back
      virtdev.libvirt.domain_devices: {uri: "{{ uri }}", domain: vvv, state: "{{ item }}", config: "{{ gathered.gathered }}"}
      loop: [replaced, overridden, merged]
    - name: Many guests
      virtdev.libvirt.domain_devices:
        uri: "{{ uri }}"
        domains: [{domain: vvv, config: [{kind: graphics, type: vnc, password: "{{ new_pw }}"}]}]
    - name: Rendered
      virtdev.libvirt.domain_devices: {state: rendered, config: [{kind: graphics, type: vnc, password: "{{ vnc_pw }}"}]}
    - name: Parsed
      virtdev.libvirt.domain_devices: {state: parsed, running_config: "{{ domain_xml }}"}
    - name: A failure
      virtdev.libvirt.domain_devices:
        uri: "{{ uri }}"
        domain: vvv
        config: [{kind: graphics, type: vnc, password: "{{ long_pw }}"}]
      ignore_errors: true
    - name: Remove one password
      virtdev.libvirt.domain_devices:
        uri: "{{ uri }}"
        domain: vvv
        config: [{kind: graphics, type: vnc, password: ""}]
    - name: Delete the other device
      virtdev.libvirt.domain_devices:
        uri: "{{ uri }}"
        domain: vvv
        state: deleted
        config: [{kind: graphics, type: spice}]
'''


def test_ansible_playbook_vvv_shows_no_secret(embed_uri, collection_pythonpath, virsh, tmp_path):
    virsh(embed_uri, 'define', '{xml}', xml=SMALL_GUEST % ('vvv', ''))
    (tmp_path / 'play.yml').write_text(PLAYBOOK, encoding='utf-8')
    variables = {'uri': embed_uri, 'vnc_pw': SECRETS['vnc'], 'new_pw': NEW_SECRETS['vnc'],
                 'long_pw': 'Zq7&<>\'" too long for VNC',
                 'spice_xml': '<graphics type="spice" autoport="yes" passwd=%s/>' % quoteattr(SECRETS['spice']),
                 'domain_xml': SMALL_GUEST % ('p', '<graphics type="spice" passwd=%s/>' % quoteattr(NEW_SECRETS['spice']))}
    (tmp_path / 'vars.json').write_text(json.dumps(variables), encoding='utf-8')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collection_pythonpath), ANSIBLE_NOCOLOR='1',
               ANSIBLE_LOCALHOST_WARNING='false', ANSIBLE_INVENTORY_UNPARSED_WARNING='false')
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-vvv', '--diff',
                           str(tmp_path / 'play.yml'), '-e', '@%s' % (tmp_path / 'vars.json')],
                          env=env, text=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=900, check=False)
    output = proc.stdout + proc.stderr
    recap = re.search(r'localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=0\s+failed=0\s+skipped=0\s+'
                      r'rescued=0\s+ignored=1', output)
    assert proc.returncode == 0 and recap, output[-5000:]
    if os.environ.get('VIRTDEV_SECRETS_VVV_OUT'):
        with open(os.environ['VIRTDEV_SECRETS_VVV_OUT'], 'w', encoding='utf-8') as handle:
            handle.write(output)
    # the outputs that matter are really there: results, the echoed arguments, rendered, parsed, diffs, the failure
    for shown in ('"gathered": [', '"module_args": {', '"rendered": [', '"parsed": [', 'password removed',
                  'VNC password', '"results": ['):
        assert shown in output, shown
    assert_hidden(output)
    assert secure_secrets(virsh, embed_uri, 'vvv') == {'vnc': None}


def test_a_running_guest_keeps_its_password_and_changes_it_live(libvirtd_uri, run_module, virsh):
    """The running guest's definition has what QEMU chose (the VNC port, the listen address from qemu.conf):
    feeding gathered back is still no change and no restart; a new or removed password goes live too. The
    guest needs no OS for this: it only has to run (BIOS only, one TCG guest)."""
    name, secret, new = 'sec-running', SECRETS['vnc'], NEW_SECRETS['vnc']
    virsh(libvirtd_uri, 'define', '{xml}', xml=SMALL_GUEST % (name, "<graphics type='vnc' port='-1' autoport='yes' "
                                                                    "passwd=%s/>" % quoteattr(secret)))
    virsh(libvirtd_uri, 'start', name)

    def both():
        live = etree.fromstring(virsh(libvirtd_uri, 'dumpxml', '--security-info', name).encode())
        return secure_secrets(virsh, libvirtd_uri, name)['vnc'], live.find('devices/graphics').get('passwd')

    try:
        gathered = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'state': 'gathered'})
        for state in ('replaced', 'overridden', 'merged'):
            for check_mode in (True, False):
                result = converge(run_module, libvirtd_uri, name, state, gathered['gathered'], check_mode=check_mode)
                assert result['changed'] is False and result['waiting_for_restart'] == [], (state, result)
        assert both() == (secret, secret)

        changed = predict_and_apply(run_module, libvirtd_uri, name, [{'kind': 'graphics', 'type': 'vnc',
                                                                      'password': new}])
        assert changed['commands'][0]['live'] is True and changed['waiting_for_restart'] == []
        assert both() == (new, new)
        predict_and_apply(run_module, libvirtd_uri, name, [{'kind': 'graphics', 'type': 'vnc', 'password': ''}])
        assert both() == (None, None)
    finally:
        virsh(libvirtd_uri, 'destroy', name, check=False)
        virsh(libvirtd_uri, 'undefine', name, check=False)


def test_a_virt_install_guest_keeps_its_passwords_when_adopted(libvirtd_uri, run_module, virsh):
    """The guest of the issue: virt-install --graphics vnc,password=... (and spice), adopted as documented."""
    name = 'sec-virt-install'
    # virt-install splits its options like a shell and escapes & < > twice: plain passwords here (the
    # escaped forms are covered by the other tests)
    expected = {'vnc': 'Zq7vi-pw', 'spice': 'Xw4-spice-pw'}
    proc = subprocess.run(['virt-install', '--connect', libvirtd_uri, '--print-xml', '--name', name, '--memory', '256',
                           '--vcpus', '1', '--import', '--virt-type', 'qemu', '--noautoconsole', '--osinfo', 'generic',
                           '--disk', 'none', '--network', 'none',
                           '--graphics', 'vnc,password=%s' % expected['vnc'],
                           '--graphics', 'spice,password=%s' % expected['spice']],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    virsh(libvirtd_uri, 'define', '{xml}', xml=proc.stdout)
    try:
        assert secure_secrets(virsh, libvirtd_uri, name) == expected
        gathered = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'state': 'gathered'})
        assert_hidden(gathered)
        assert_feeding_back_changes_nothing(run_module, virsh, libvirtd_uri, name, gathered['gathered'], expected)
    finally:
        virsh(libvirtd_uri, 'undefine', name, check=False)
