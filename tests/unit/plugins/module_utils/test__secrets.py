# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Secrets in the pure core: masking in every escaped form, the placeholder that keeps a secret, the empty
value that removes it, raw XML, diffs, rendered, and the module-level output guard."""

from __future__ import annotations

import html
import json
from xml.sax.saxutils import quoteattr

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _secrets, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine as engine
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import (
    GRAPHICS, SecretAttr, _normalize_field, settle_secrets,
)

KEEP = _secrets.PLACEHOLDER
SECRET = 'Zq7&<>\'"'


def domain(devices):
    return ("<domain type='qemu'><name>g</name><memory>65536</memory><os><type>hvm</type></os>"
            "<devices>%s</devices></domain>" % devices)


# libvirt's form of a VNC device the module wrote: port, autoport and the default <listen> filled in
WRITTEN_VNC = ("<graphics type='vnc' port='-1' autoport='yes' passwd=%s><listen type='address'/></graphics>"
               % quoteattr(SECRET))


def passwd_of(xml_text, graphics_type='vnc'):
    for node in _xml.parse(xml_text).iter('graphics'):
        if node.get('type') == graphics_type:
            return node.get('passwd')
    return 'no device'


def leaks(*outputs):
    return [output for output in outputs if 'Zq7' in (output if isinstance(output, str) else json.dumps(output))]


# --- masking -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize('form', [
    SECRET, html.escape(SECRET), quoteattr(SECRET)[1:-1], "Zq7&amp;&lt;&gt;&apos;&quot;", 'Zq7&amp;&lt;>\'&#34;',
    json.dumps(SECRET)[1:-1], repr(SECRET)[1:-1], repr(SECRET + '\'"')[1:-3],
])
def test_every_escaped_form_is_masked(form):
    text = 'before %s after' % form
    assert _secrets.Masker([SECRET]).text(text) == 'before %s after' % KEEP


def test_masking_reaches_nested_results_and_keys():
    masker = _secrets.Masker([SECRET, 'a\x01b'])
    data = {'msg': "config[0].password: 'a\\x01b' is invalid", 'results': [{SECRET: (html.escape(SECRET),)}]}
    assert masker.data(data) == {'msg': "config[0].password: '%s' is invalid" % KEEP, 'results': [{KEEP: (KEEP,)}]}
    assert masker.data(True) is True and masker.data(None) is None


def test_placeholder_and_empty_are_never_masked_as_secrets():
    masker = _secrets.Masker([KEEP, '', None])
    assert masker.forms == [] and masker.text('a ******** b') == 'a ******** b'


def test_a_secret_field_error_names_the_field_not_the_value():
    field = SecretAttr('password', '', 'passwd', pattern=r'^[a-z]+$')
    with pytest.raises(SpecError) as caught:
        _normalize_field(field, SECRET, 'config[0].password')
    assert str(caught.value).startswith('config[0].password: ') and not leaks(str(caught.value))


def test_the_module_guard_masks_results_failures_warnings_and_arguments():
    class Module:
        params = {'config': [{'kind': 'xml', 'xml': '<graphics passwd=%s/>' % quoteattr(SECRET)}]}
        no_log_values = {'n0-log'}

        def __init__(self):
            self.outputs = []

        def exit_json(self, **result):
            self.outputs.append(result)

        def fail_json(self, **result):
            self.outputs.append(result)

        def warn(self, warning):
            self.outputs.append(warning)

    module = _common.mask_secrets(Module())
    _secrets.remember(SECRET)
    module.exit_json(changed=True, diff={'after': "<graphics passwd='Zq7&amp;&lt;&gt;&apos;&quot;'/>"})
    module.fail_json('libvirt said %r about n0-log' % SECRET, changed=False)
    module.warn('%s' % html.escape(SECRET))
    assert len(module.outputs) == 3 and not leaks(*module.outputs) and 'n0-log' not in json.dumps(module.outputs)
    assert module.outputs[0]['invocation']['module_args']['config'][0]['xml'] == '<graphics passwd="%s"/>' % KEEP
    assert module.outputs[1]['changed'] is False


# --- gathered: presence without value; libvirt's additions understood ------------------------------------

def test_a_device_the_module_wrote_is_gathered_typed_with_the_placeholder():
    (graphics,) = [item for item in engine.gather(domain(WRITTEN_VNC)) if item['kind'] != 'xml']
    assert graphics == {'kind': 'graphics', 'type': 'vnc', 'port': -1, 'autoport': True, 'password': KEEP,
                        'class': 'emulated'}


@pytest.mark.parametrize('listen', ["<listen type='network' network='default'/>",
                                    "<listen type='socket' socket='/run/vnc.sock'/>"])
def test_other_listen_types_are_gathered_raw_with_the_placeholder(listen):
    xml = "<graphics type='spice' autoport='yes' passwd=%s>%s</graphics>" % (quoteattr(SECRET), listen)
    (item,) = engine.gather(domain(xml))
    assert item['kind'] == 'xml' and 'passwd="%s"' % KEEP in item['xml'] and not leaks(item)


def test_a_display_without_listener_is_gathered_typed_with_the_placeholder():
    xml = "<graphics type='spice' autoport='yes' passwd=%s><listen type='none'/></graphics>" % quoteattr(SECRET)
    (item,) = engine.gather(domain(xml))
    assert item['listen_type'] == 'none' and item['password'] == KEEP and not leaks(item)
    assert not engine.plan(domain(xml), engine.declare([item], 'g'), 'replaced').changed


@pytest.mark.parametrize('state', ['merged', 'replaced', 'overridden'])
def test_gathered_fed_back_keeps_every_secret(state):
    current = domain(WRITTEN_VNC + "<graphics type='spice' autoport='yes' passwd='sp' passwdValidTo='2040-01-01"
                                   "T00:00:00'><listen type='address'/></graphics>")
    gathered = engine.gather(current)
    assert [item['kind'] for item in gathered] == ['graphics', 'xml'] and not leaks(gathered)
    result = engine.plan(current, engine.declare(gathered, 'g'), state)
    assert not result.changed and not leaks(result.before)


def test_replaced_without_listen_leaves_libvirts_default_listen_alone():
    current = domain(WRITTEN_VNC)
    for spec in ({'kind': 'graphics', 'type': 'vnc'}, {'kind': 'graphics', 'type': 'vnc', 'autoport': True}):
        assert not engine.plan(current, engine.declare([spec], 'g'), 'replaced').changed


# --- keep, set, remove ----------------------------------------------------------------------------------

@pytest.mark.parametrize('spec,expected,note', [
    ({'kind': 'graphics', 'type': 'vnc', 'password': KEEP}, SECRET, None),
    ({'kind': 'graphics', 'type': 'vnc'}, SECRET, None),
    ({'kind': 'graphics', 'type': 'vnc', 'password': 'n3w'}, 'n3w', 'password changed'),
    ({'kind': 'graphics', 'type': 'vnc', 'password': ''}, None, 'password removed'),
    ({'kind': 'xml', 'xml': "<graphics type='vnc' port='-1' autoport='yes' passwd='%s'/>" % KEEP}, SECRET, None),
    ({'kind': 'xml', 'xml': "<graphics type='vnc' port='-1' autoport='yes'/>"}, SECRET, None),
    ({'kind': 'xml', 'xml': "<graphics type='vnc' port='-1' autoport='yes' passwd='n3w'/>"}, 'n3w',
     'password changed'),
    ({'kind': 'xml', 'xml': "<graphics type='vnc' port='-1' autoport='yes' passwd=''/>"}, None, 'password removed'),
])
@pytest.mark.parametrize('state', ['merged', 'replaced', 'overridden'])
def test_a_secret_is_kept_unless_set_or_removed(spec, expected, note, state):
    result = engine.plan(domain(WRITTEN_VNC), engine.declare([spec], 'g'), state)
    if note is None:
        assert not result.changed
        return
    assert result.changed and passwd_of(result.new_xml) == expected
    assert '<!-- %s -->' % note in result.after_text
    assert not leaks(result.before, result.after, result.before_text, result.after_text)
    assert 'n3w' not in result.after_text + json.dumps(result.after)


@pytest.mark.parametrize('config,field', [
    ([{'kind': 'graphics', 'type': 'vnc', 'password': KEEP}], 'config[0].password'),
    ([{'kind': 'xml', 'xml': "<graphics type='vnc' passwd='%s'/>" % KEEP}], 'config[0].xml'),
])
def test_the_placeholder_on_a_new_device_is_refused(config, field):
    with pytest.raises(SpecError) as caught:
        engine.plan(domain(''), engine.declare(config, 'g'), 'merged')
    assert caught.value.where == field and 'keep the current password' in str(caught.value)


@pytest.mark.parametrize('config,field', [
    ([{'kind': 'graphics', 'type': 'vnc', 'password': KEEP}], 'config[0].password'),
    ([{'kind': 'xml', 'xml': "<graphics type='vnc' passwd='%s'/>" % KEEP}], 'config[0].xml'),
])
@pytest.mark.parametrize('state', ['merged', 'replaced', 'overridden'])
def test_the_placeholder_on_a_console_without_a_password_is_refused(config, field, state):
    """A list gathered from another guest must not leave this guest's open console open silently."""
    open_console = domain("<graphics type='vnc' port='-1' autoport='yes'><listen type='address'/></graphics>")
    with pytest.raises(SpecError) as caught:
        engine.plan(open_console, engine.declare(config, 'g'), state)
    assert caught.value.where == field and 'keep the current password' in str(caught.value)


@pytest.mark.parametrize('xml', [
    "<graphics type='vnc' passwd='Zq7\x01Wv'/>",        # refused by the string check before it is parsed
    "<graphics type='vnc' passwd='Zq7Yy8'>",            # not well-formed
    "<graphics type='vnc' passwd=\"Zq7&amp;x\"/",       # not well-formed, escaped
    "<graphics type='vnc' passwd='Zq7 unterminated/>",
])
def test_raw_xml_passwords_are_masked_even_when_the_xml_is_refused_unparsed(xml):
    class Module:
        params = {'config': [{'kind': 'xml', 'xml': xml}]}
        no_log_values = set()

        def __init__(self):
            self.outputs = []

        def fail_json(self, **result):
            self.outputs.append(result)

        exit_json = warn = fail_json

    module = _common.mask_secrets(Module())
    module.fail_json('config[0].xml: %r is not well-formed' % xml)
    assert not leaks(*module.outputs), module.outputs


def test_an_empty_password_on_a_new_device_writes_none():
    for config in ([{'kind': 'graphics', 'type': 'vnc', 'password': ''}],
                   [{'kind': 'xml', 'xml': "<graphics type='vnc' passwd=''/>"}]):
        result = engine.plan(domain(''), engine.declare(config, 'g'), 'merged')
        assert result.changed and passwd_of(result.new_xml) is None


def test_settle_secrets_copies_the_current_secret_into_a_raw_device():
    existing = _xml.parse(WRITTEN_VNC)
    new = settle_secrets(_xml.parse("<graphics type='vnc'/>"), existing, 'config[0].xml')
    assert new.get('passwd') == SECRET


def test_verify_names_the_password_without_its_value():
    (item,) = engine.declare([{'kind': 'graphics', 'type': 'vnc', 'password': 'n3w'}], 'g')
    result = engine.plan(domain(WRITTEN_VNC), [item], 'merged')
    problems = engine.verify(result, domain(WRITTEN_VNC))  # libvirt "kept" the old password
    assert problems == ['config[0] (graphics type vnc): libvirt did not keep the password as asked (set)']


# --- rendered, parsed --------------------------------------------------------------------------------------

def test_rendered_and_parsed_show_the_placeholder():
    declared = engine.declare([{'kind': 'graphics', 'type': 'vnc', 'password': SECRET},
                               {'kind': 'xml', 'xml': "<graphics type='spice' passwd=%s/>" % quoteattr(SECRET)}], 'g')
    rendered = engine.render(declared)
    assert all('passwd="%s"' % KEEP in xml for xml in rendered) and not leaks(rendered)
    assert declared[0].element.get('passwd') == SECRET  # what is written still has it
    parsed = engine.gather(domain(WRITTEN_VNC))
    assert not leaks(parsed)


def test_graphics_password_option_is_no_log():
    assert GRAPHICS.fields['password'].secret


# --- a running guest's definition: what QEMU chose is no difference ----------------------------------------

RUNNING_VNC = ("<graphics type='vnc' port='5902' autoport='yes' listen='127.0.0.1' passwd=%s>"
               "<listen type='address' address='127.0.0.1'/></graphics>" % quoteattr(SECRET))


@pytest.mark.parametrize('state', ['merged', 'replaced', 'overridden'])
def test_gathered_fed_back_to_a_running_guest_changes_nothing(state):
    gathered = engine.gather(domain(WRITTEN_VNC))
    running = domain(RUNNING_VNC).replace("<domain type='qemu'>", "<domain type='qemu' id='3'>")
    assert not engine.plan(running, engine.declare(gathered, 'g'), state).changed


def test_an_explicit_listen_is_still_reset_in_the_persistent_definition():
    persistent = domain(RUNNING_VNC.replace("port='5902'", "port='-1'"))
    result = engine.plan(persistent, engine.declare([{'kind': 'graphics', 'type': 'vnc'}], 'g'), 'replaced')
    assert result.changed and 'listen' not in result.new_xml.split('<graphics')[1].split('>')[0]
