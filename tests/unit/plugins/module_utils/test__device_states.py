# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The resource-module states over EVERY kind of the table (family members included), derived from the table
itself as the bad-input tests are: each kind's example is attached, found again, changed option by option,
deleted and gathered back (docs/domain_devices.md, "States"). Hand-written cases on a realistic definition:
test__device_engine.py."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine as engine
from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import (
    ROWS_BY_TAG, UNTYPED, all_kinds, is_implicit,
)

KINDS = list(all_kinds())
IDS = [kind.label for kind in KINDS]
# A guest with one device the declarations never name: every state must leave it alone.
BARE = ("<domain type='qemu'><name>guest</name><uuid>3f0c1a52-6a47-4a2b-8f7e-3d1e4a2b9c11</uuid>"
        "<memory unit='KiB'>65536</memory><devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
        "<crypto model='virtio' type='qemu'><backend model='builtin'/></crypto></devices></domain>")


def plan(xml, config, state, overridden_kinds=None):
    return engine.plan(xml, engine.declare(config, 'guest'), state, overridden_kinds)


def ops(result):
    return [command['op'] for command in result.commands]


def device_tags(xml):
    return [el.tag for el in engine.device_elements(_xml.parse(xml).find('devices'))]


@pytest.mark.parametrize('state', ['merged', 'replaced', 'overridden'])
@pytest.mark.parametrize('kind', KINDS, ids=IDS)
def test_every_kind_is_attached_once_and_found_again(kind, state):
    scope = [kind.tag] if state == 'overridden' else None    # the guest's <crypto> is another kind: kept
    first = plan(BARE, [kind.example], state, scope)
    assert ops(first) == ['attach'], first.commands
    assert device_tags(first.new_xml) == ['crypto', kind.tag]           # nothing else added or lost
    again = plan(first.new_xml, [kind.example], state, scope)
    assert not again.changed and again.new_xml is None, again.commands
    check_mode = plan(first.new_xml, [kind.example], 'merged')       # what a check run would predict
    assert check_mode.after == again.after == engine.gather(first.new_xml)


@pytest.mark.parametrize('kind', KINDS, ids=IDS)
def test_every_kind_is_deleted_by_identity_and_only_it(kind):
    defined = plan(BARE, [kind.example], 'merged').new_xml
    deleted = plan(defined, [kind.example], 'deleted')
    assert ops(deleted) == ['detach']
    assert device_tags(deleted.new_xml) == ['crypto']
    assert not plan(deleted.new_xml, [kind.example], 'deleted').changed    # absent already
    assert not plan(BARE, [kind.example], 'deleted').changed


@pytest.mark.parametrize('kind', KINDS, ids=IDS)
def test_every_kind_gathers_back_to_a_declaration_that_changes_nothing(kind):
    defined = plan(BARE, [kind.example], 'merged').new_xml
    gathered = [item for item in engine.gather(defined) if item.get('kind') != 'xml' or '<crypto' not in item['xml']]
    assert len(gathered) == 1 and gathered[0]['kind'] == kind.name
    assert gathered[0]['class'] == kind.device_class(kind.normalize(kind.example, 'x'))
    for state in ('merged', 'replaced'):
        assert not plan(defined, gathered, state).changed, (state, gathered)
    assert not plan(defined, gathered, 'overridden', [kind.tag]).changed, gathered
    # the whole gathered list (the <crypto> too) is the guest's devices exactly: overridden changes nothing
    assert not plan(defined, engine.gather(defined), 'overridden').changed


def _changed_options(kind):
    """(option, value) pairs: each option with choices set to another choice than the example's."""
    example = kind.normalize(kind.example, 'x')
    for option, field in kind.fields.items():
        if not field.choices or option == 'type' or field.secret:
            continue
        for choice in field.choices:
            if choice != example.get(option):
                yield option, choice
                break


CHANGES = [(kind, option, value) for kind in KINDS for option, value in _changed_options(kind)]


@pytest.mark.parametrize('kind, option, value', CHANGES,
                         ids=['%s.%s=%s' % (kind.label, option, value) for kind, option, value in CHANGES])
def test_every_option_with_choices_changes_the_device_it_names(kind, option, value):
    spec = dict(kind.example, **{option: value})
    try:
        engine.declare([spec], 'guest')
    except SpecError:
        pytest.skip('%s=%s is refused together with the example\'s other options' % (option, value))
    defined = plan(BARE, [kind.example], 'merged').new_xml
    (before,), (after,) = engine.declare([kind.example], 'guest'), engine.declare([spec], 'guest')
    # the engine's matching rule: by identity, else (identity left to libvirt, or derived: a NIC's MAC made for
    # its position) only a device that agrees on every declared option: one found so never has an option changed
    derived = after.derived.option if after.derived else None
    same_device = after.key == before.key if after.key is not None and derived is None else \
        all(after.spec.get(option) == before.spec.get(option) for option in after.spec if option != derived)
    changed = plan(defined, [spec], 'replaced')
    assert ops(changed) == (['update'] if same_device else ['attach']), changed.commands
    assert not plan(changed.new_xml, [spec], 'replaced').changed


def test_overridden_keeps_what_the_table_calls_implicit_and_removes_the_rest():
    implicit = ("<controller type='pci' index='0' model='pcie-root'/><controller type='usb' index='0'/>"
                "<input type='mouse' bus='ps2'/><memballoon model='virtio'/><audio id='1' type='none'/>"
                "<console type='pty'><target type='serial' port='0'/></console>")
    removable = ("<controller type='usb' index='1' model='qemu-xhci'/><input type='tablet' bus='usb'/>"
                 "<console type='pty'><target type='virtio' port='1'/></console>")
    serial = "<serial type='pty'><target port='0'/></serial>"   # the serial console mirrors it
    xml = BARE.replace('</devices>', serial + implicit + removable + '</devices>')
    config = [{'kind': 'controller', 'type': 'scsi', 'index': 0, 'model': 'virtio-scsi'},
              {'kind': 'input', 'type': 'keyboard', 'bus': 'virtio'}, {'kind': 'memballoon', 'model': 'virtio'},
              {'kind': 'console', 'type': 'pty', 'target_type': 'serial'},
              {'kind': 'xml', 'xml': "<audio id='2' type='none'/>"}]
    result = plan(xml, config, 'overridden', ['controller', 'input', 'memballoon', 'console', 'audio'])
    detached = sorted(change.label for change in result.changes if change.op == 'detach')
    assert detached == ['console console virtio', 'controller type usb 1', 'input input tablet usb'], detached
    assert sorted(item.get('kind') for item in result.implicit) == ['audio', 'controller', 'controller', 'input']
    for element in _xml.parse(xml).find('devices'):
        assert is_implicit(element) == (element.tag != 'emulator' and _xml.to_string(element) in
                                        [_xml.to_string(e) for e in _xml.parse('<d>%s</d>' % implicit)])


LIBVIRT_ADDS = ("<controller type='pci' index='0' model='pcie-root'/>"
                "<controller type='pci' index='1' model='pcie-root-port'/><controller type='sata' index='0'/>"
                "<controller type='usb' index='0' model='qemu-xhci'/><input type='mouse' bus='ps2'/>"
                "<input type='keyboard' bus='ps2'/><graphics type='vnc' port='-1' autoport='yes'/>"
                "<video><model type='vga'/></video><memballoon model='virtio'/>")


def test_overridden_removes_a_kind_dropped_from_the_manifest_but_not_what_libvirt_adds():
    xml = BARE.replace('</devices>', LIBVIRT_ADDS + "<rng model='virtio'><backend model='random'>/dev/urandom"
                       "</backend></rng><video><model type='virtio'/></video></devices>")
    everything = engine.gather(xml)
    assert not plan(xml, everything, 'overridden').changed            # the whole list: a no-op
    without_rng = [item for item in everything if item['kind'] != 'rng']
    dropped = plan(xml, without_rng, 'overridden')
    assert [(c['op'], c['kind']) for c in dropped.commands] == [('detach', 'rng')], dropped.commands
    assert 'rng' not in device_tags(dropped.new_xml)
    assert not plan(dropped.new_xml, without_rng, 'overridden').changed
    # a manifest of one graphics device: every device libvirt adds or owns stays, and is listed in implicit
    only_graphics = plan(xml, [{'kind': 'graphics', 'type': 'vnc'}], 'overridden')
    assert sorted(c['kind'] for c in only_graphics.commands) == ['crypto', 'rng', 'video'], only_graphics.commands
    assert device_tags(only_graphics.new_xml) == [
        'controller', 'controller', 'controller', 'controller', 'input', 'input', 'graphics', 'video', 'memballoon']
    assert len(only_graphics.implicit) == 8   # the first video of a guest with graphics among them
    # narrowed to named kinds: the earlier behaviour (other kinds untouched)
    narrow = plan(xml, without_rng, 'overridden', ['video'])
    assert not narrow.changed
    assert [c['kind'] for c in plan(xml, without_rng, 'overridden', ['rng']).commands] == ['rng']


def test_every_device_tag_has_one_row_and_untyped_rows_are_matched_by_attributes():
    assert set(UNTYPED) & {kind.tag for kind in KINDS} == set()
    assert set(ROWS_BY_TAG) == set(UNTYPED) | {kind.tag for kind in KINDS}
    xml = BARE.replace('</devices>', "<redirfilter><usbdev allow='no'/></redirfilter></devices>")
    first = plan(xml, [{'kind': 'xml', 'xml': "<redirfilter><usbdev allow='no'/></redirfilter>"}], 'merged')
    assert not first.changed                                  # the filter there is that filter
    deleted = plan(xml, [{'kind': 'xml', 'xml': "<crypto model='virtio' type='qemu'><backend model='builtin'/>"
                                                "</crypto>"}], 'deleted')
    assert ops(deleted) == ['detach'] and device_tags(deleted.new_xml) == ['redirfilter']
