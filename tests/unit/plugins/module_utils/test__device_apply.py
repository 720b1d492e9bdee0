# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""DomainRun's write path against an in-memory libvirt (only the data source is replaced): compare before
define, the guarded restore, and the per-guest bookkeeping after each kind of failure
(docs/concurrency.md). The same paths against a real libvirtd: tests/functional/test_faults.py."""

from __future__ import annotations

import re

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_apply as apply
from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine as engine
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import (
    ConnectionLost, DomainNotFound, LibvirtFailure,
)
from ansible_collections.virtdev.libvirt.tests.unit.plugins.module_utils.handles import ReadsHandles

UUID = '6c1f3c3e-8a55-4e59-9a3c-0d6a2f1b7e01'
BARE = ("<domain type='qemu'><name>web01</name><uuid>%s</uuid><memory unit='KiB'>65536</memory>"
        "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>" % UUID)
SOUND = "<sound model='ich9'/>"
WATCHDOG = {'kind': 'watchdog', 'model': 'i6300esb', 'action': 'reset'}


class Dom:
    def __init__(self, name, uuid):
        self._name, self._uuid = name, uuid

    def name(self):
        return self._name

    def UUIDString(self):  # noqa: N802 (libvirt's name)
        return self._uuid


class FakeLibvirt(ReadsHandles):
    """One inactive guest. ``on_define`` / ``on_read`` hooks play the other writer or the broken daemon."""

    def __init__(self, xml=BARE):
        self.xml_text = xml
        self.defined = []
        self.lost = False
        self.calls = {}
        self.on_define = None
        self.on_read = None
        self.keep = lambda text: text   # what libvirt keeps of a definition

    def lookup(self, name):
        if name != 'web01' or self.xml_text is None:
            raise DomainNotFound('domain %r is not defined' % name)
        return Dom('web01', UUID)

    def lookup_uuid(self, uuid):
        return self.lookup('web01')

    def find_uuid(self, uuid):
        return Dom('web01', UUID) if self.xml_text is not None else None

    def is_active(self, _dom):
        return False

    def xml(self, _dom, inactive=True):
        if self.on_read is not None:
            self.on_read(self)
        return self.xml_text

    def same_libvirt(self):
        return False   # as over a remote URI: libvirt validates the definition itself

    def define(self, text, _devices_checked=False):
        if self.on_define is not None:
            self.on_define(self, text)
        self.defined.append(text)
        self.xml_text = self.keep(text)


def other_writer_adds_sound(fake):
    fake.xml_text = fake.xml_text.replace('</devices>', SOUND + '</devices>')


def prepared(fake, config=(WATCHDOG,), check_mode=False):
    run = apply.DomainRun(fake, 'web01', engine.declare(list(config), 'web01'), 'merged', 'config', check_mode)
    return run.prepare()


def test_a_definition_changed_after_planning_is_planned_again_and_both_changes_kept():
    fake = FakeLibvirt()
    run = prepared(fake)
    other_writer_adds_sound(fake)   # after our read, before our write
    run.apply()
    assert len(fake.defined) == 1 and 'ich9' in fake.defined[0] and 'i6300esb' in fake.defined[0]
    assert run.replans == 1 and run.outcome == apply.WRITTEN
    assert run.result()['commands'] == [{'op': 'attach', 'kind': 'watchdog', 'key': 'model i6300esb',
                                         'live': False, 'config': True}]


def test_a_definition_that_already_has_the_change_is_not_written_again():
    fake = FakeLibvirt()
    run = prepared(fake)
    fake.xml_text = fake.xml_text.replace('</devices>', "<watchdog model='i6300esb' action='reset'/></devices>")
    run.apply()
    assert fake.defined == [] and run.outcome == apply.NOT_WRITTEN
    assert run.result()['changed'] is False


def test_a_definition_that_keeps_changing_is_not_written():
    fake = FakeLibvirt()
    run = prepared(fake)
    counter = [0]

    def churn(fake):
        counter[0] += 1
        fake.xml_text = fake.xml_text.replace('<memory', '<description>%d</description><memory' % counter[0], 1)

    fake.on_read = churn
    with pytest.raises(apply.ApplyError, match='definition changed 5 times between reading and writing it'):
        run.apply()
    assert fake.defined == [] and run.outcome == apply.NOT_WRITTEN


def test_connection_lost_during_define_is_unknown():
    fake = FakeLibvirt()
    run = prepared(fake)

    def die(fake, _text):
        fake.lost = True
        raise ConnectionLost('lost the connection to libvirt at test:///x while trying to define the domain')

    fake.on_define = die
    with pytest.raises(ConnectionLost):
        run.apply()
    run.fail(ConnectionLost('lost'))
    result = run.result()
    assert result['outcome'] == 'unknown' and result['changed'] is True and result['failed'] is True
    assert 'after' not in result and result['commands'] == []
    assert result['restart_required'] is False


def test_connection_lost_after_define_is_written_with_no_after():
    fake = FakeLibvirt()
    run = prepared(fake)
    reads = [0]

    def die_after_define(fake):
        reads[0] += 1
        if fake.defined:
            fake.lost = True
            raise ConnectionLost('lost')

    fake.on_read = die_after_define
    with pytest.raises(ConnectionLost):
        run.apply()
    run.fail(ConnectionLost('lost'))
    result = run.result()
    assert result['outcome'] == 'written' and result['changed'] is True and 'after' not in result
    assert [command['op'] for command in result['commands']] == ['attach']


def test_libvirt_refusal_names_guest_change_and_option():
    fake = FakeLibvirt()
    run = prepared(fake)

    def refuse(_fake, _text):
        raise LibvirtFailure('libvirt failed to define the domain on test:///x: XML document failed to validate')

    fake.on_define = refuse
    with pytest.raises(apply.ApplyError) as caught:
        run.apply()
    assert str(caught.value).startswith('domain web01: libvirt refused the new definition (attach watchdog model '
                                        'i6300esb (config[0])); nothing of it was written: ')
    run.fail(caught.value)
    assert run.result()['outcome'] == 'not_written' and run.result()['changed'] is False


def drop_watchdog(text):
    return re.sub(r'<watchdog [^>]*/>', '', text)


def test_what_libvirt_did_not_keep_is_restored_to_the_definition_replaced():
    fake = FakeLibvirt()
    fake.keep = drop_watchdog
    run = prepared(fake)
    other_writer_adds_sound(fake)
    with pytest.raises(apply.ApplyError, match='the definition was restored'):
        run.apply()
    # the restore puts back the definition this run replaced: the other writer's sound card stays
    assert len(fake.defined) == 2 and 'ich9' in fake.defined[1] and fake.xml_text == fake.defined[1]
    assert run.outcome == apply.NOT_WRITTEN and run.executed == []


def test_no_restore_over_a_change_made_after_our_define():
    fake = FakeLibvirt()
    fake.keep = drop_watchdog
    run = prepared(fake)

    def change_after_our_define(fake):
        if fake.defined and SOUND not in fake.xml_text and run.readback is not None:
            other_writer_adds_sound(fake)

    fake.on_read = change_after_our_define
    with pytest.raises(apply.ApplyError, match='not restored because another writer changed it'):
        run.apply()
    assert len(fake.defined) == 1 and 'ich9' in fake.xml_text
    assert run.outcome == apply.WRITTEN


def test_check_mode_takes_no_lock_and_predicts(tmp_path):
    fake = FakeLibvirt()
    run = prepared(fake, check_mode=True)
    with run.locked(str(tmp_path / 'locks'), 1):
        run.apply()
    assert not (tmp_path / 'locks').exists() and fake.defined == []
    result = run.result()
    assert result['changed'] is True and result['outcome'] == 'not_written' and result['commands']


def test_the_lock_re_reads_a_guest_undefined_since_planning(tmp_path):
    fake = FakeLibvirt()
    run = prepared(fake)
    fake.xml_text = None
    with pytest.raises(apply.ApplyError, match='web01 was undefined while the task ran'):
        with run.locked(str(tmp_path / 'locks'), 1):
            run.apply()
    assert fake.defined == []


def test_guest_message_names_the_guest_once():
    assert apply.guest_message('web01', 'boom') == 'domain web01: boom'
    assert apply.guest_message('web01', 'domain web01: boom') == 'domain web01: boom'
    assert apply.guest_message('web01', "domain 'web01' is not defined") == "domain 'web01' is not defined"
    assert apply.guest_message('web0', 'domain web01: boom') == 'domain web0: domain web01: boom'


def test_a_refused_define_names_the_device_libvirt_quotes_and_only_a_few_others():
    domain = "<domain type='qemu'><name>g</name><devices/></domain>"
    config = [{'kind': 'disk', 'target': 'vd' + letter, 'source': {'file': '/var/lib/g%s.img' % letter}}
              for letter in 'bcdefgh'] + [{'kind': 'controller', 'type': 'usb', 'index': 0, 'model': 'qemu-xhci'}]
    plan = engine.plan(domain, engine.declare(config, 'g', 'domains[2].config'), 'merged')
    named = apply._describe_changes(plan.changes, "unsupported configuration: 'qemu-xhci' controller only "
                                                  "supports up to '15' ports")
    assert named == 'attach controller type usb 0 (domains[2].config[7])'
    unknown = apply._describe_changes(plan.changes, 'internal error: something else')
    assert unknown == ('attach disk target vdb (domains[2].config[0]), attach disk target vdc '
                       '(domains[2].config[1]), attach disk target vdd (domains[2].config[2]) and 5 more')


def test_under_the_lock_without_live_steps_the_definition_is_read_once_before_the_define(tmp_path):
    """The read under the lock is the last one before the define when nothing is done live in between; a
    writer that changed the guest after planning is still seen there, and both changes are kept."""
    fake = FakeLibvirt()
    run = prepared(fake)
    other_writer_adds_sound(fake)   # after our read, before the lock
    reads = []
    fake.on_read = lambda _fake: reads.append(len(fake.defined))
    with run.locked(str(tmp_path / 'locks'), 1):
        run.apply()
    # one read under the lock before the define (planned again from it), one read back after it
    assert reads == [0, 1]
    assert run.replans == 1 and len(fake.defined) == 1
    assert 'ich9' in fake.defined[0] and 'i6300esb' in fake.defined[0] and run.outcome == apply.WRITTEN


def test_a_writer_between_the_lock_and_a_live_step_is_seen_before_the_define(tmp_path):
    """Live steps can wait for the guest (detach_timeout): after them the definition is read again."""
    fake = FakeLibvirt()
    run = prepared(fake)
    with run.locked(str(tmp_path / 'locks'), 1):
        run.fresh = False   # what a live step does (a running guest is not part of this in-memory libvirt)
        other_writer_adds_sound(fake)
        run.apply()
    assert run.replans == 1 and 'ich9' in fake.defined[0] and 'i6300esb' in fake.defined[0]
