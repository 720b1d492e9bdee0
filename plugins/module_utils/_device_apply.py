# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Applying device plans to a domain: persistent definition and running guest (no Ansible).

A running guest has two definitions: the persistent one (what the next boot uses) and the live one.
Both are planned against the same declaration, so they converge to the same devices; a change QEMU
cannot take on a running guest is persisted and reported as waiting for a restart.

apply = config: persistent only.      live: running guest only.
        both:   both, every change must be hot-pluggable.
        auto:   persistent always, running guest too where QEMU can take the change.

The definition is the source of truth for the next boot (docs/domain_devices.md, "Running guests"): the
running guest is changed first, so that a device hot-plugged where QEMU found room is persisted at that
address, and the definition is then written as declared whether or not the guest took every live step,
as ``virsh ... --live --config`` would. Undoing live steps instead would need more live steps, which a
guest that just refused one may refuse again. Every device the guest did not take or release is named
in the result (``waiting_for_restart``, ``pending_unplug``) and converges at the next restart or run.
"""

from __future__ import annotations

import contextlib
import copy
import re
import time

from ansible_collections.virtdev.libvirt.plugins.module_utils import (
    _device_engine, _guest_lock, _ids, _schema, _xml,
)
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import host_devices, removal_consent
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import ConnectionLost, LibvirtFailure
# The host side's passthrough guards: the one place the device layer reaches into the host side (preflight).
# host.preflight (and the sysfs reader behind it) is imported only when a guest assigns a host device: a
# manifest without passthrough, or with host_checks off, does not load it (docs/performance.md).
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import nodedev_source

APPLY_MODES = ('auto', 'config', 'live', 'both')
# What a run really did to a guest (docs/concurrency.md): the result's ``outcome``.
WRITTEN, NOT_WRITTEN, UNKNOWN = 'written', 'not_written', 'unknown'
# Re-reads of a definition that keeps changing between our read and our define, before giving up.
REPLANS = 5
# What allow_live_removal may name: removals that can lose data (a disk the guest still writes to) or
# take a host device away from a guest driver mid-use. Without consent they wait for the next restart.
LIVE_REMOVAL_CLASSES = ('disk', 'passthrough')
# The record of a shutdown this module requested (in the definition's <metadata>, which survives the
# guest stopping): the next run starts a guest that went off because of us.
RESTART_NS = 'urn:virtdev:libvirt:restart:1'
RESTART_PREFIX = 'virtdev'
# Where a live step ended (the 'done' ones are on the running guest).
DONE, PENDING, FAILED, BLOCKED, WITHHELD, SKIPPED = 'done', 'pending', 'failed', 'blocked', 'withheld', 'skipped'
LIVE_ORDER = {'detach': 0, 'update': 1, 'attach': 2}


class ApplyError(Exception):
    """The declaration cannot be applied as asked; the message says what was and was not written."""


def guest_message(name, exc):
    """A failure's message, naming the guest once (docs/concurrency.md: every failure names its guest)."""
    text = str(exc)
    if text.startswith(('domain %s ' % name, 'domain %s:' % name, 'domain %r ' % name)):
        return text
    return 'domain %s: %s' % (name, text)


def _address_number(value):
    """An address attribute as libvirt reads it (strtoul base 0: 0x.. hex, 0.. octal), or the text."""
    try:
        return int(value, 0)
    except ValueError:
        try:
            return int(value, 8) if value.startswith('0') else value
        except ValueError:
            return value


def address_id(address):
    """Comparable identity of an <address> element (multifunction is a property, not a place)."""
    if address is None:
        return None
    return tuple(sorted((name, _address_number(value)) for name, value in address.attrib.items()
                        if name != 'multifunction'))


def holder_of(address, elements, besides=None):
    """The element among ``elements`` (other than ``besides``) at the same address, or None."""
    wanted = address_id(address)
    for element in elements:
        if element is not besides and address_id(element.find('address')) == wanted:
            return element
    return None


def restart_record(domain_xml):
    """The pending-restart record in a definition's <metadata>, as its attributes, or None."""
    if RESTART_NS not in domain_xml:  # the common case costs no second parse of the definition
        return None
    domain = _xml.parse(domain_xml, 'domain XML')
    found = domain.find('metadata/{%s}restart' % RESTART_NS)
    return dict(found.attrib) if found is not None else None


class DomainRun:
    """Plan and apply one domain's declared devices, and book what was really done.

    Bookkeeping (what the result reports after a success and after any failure): ``executed`` lists the
    commands that took effect, in order; ``in_doubt`` names a write call whose connection broke before
    libvirt answered; ``outcome`` is WRITTEN, NOT_WRITTEN or UNKNOWN from those. Every write call goes
    through ``_write`` and every completed one is booked with ``_book``. On the running guest each planned
    change ends in ``outcomes``: DONE, PENDING (an unplug the guest has not answered), FAILED or BLOCKED
    (not taken; BLOCKED when planned too, where the guest's PCI topology cannot take it), WITHHELD (a removal
    that needs allow_live_removal) or SKIPPED (the guest stopped).
    """

    def __init__(self, connection, name, declared, state, apply_mode, check_mode, detach_timeout=30,
                 detach_attempts=3, uuid=None, redeclare=None, allow_live_removal=(), overridden_kinds=None):
        self.connection = connection
        self.name = name if name is not None else uuid
        self.uuid = uuid            # the guest was asked for by UUID (the uuid option), not by name
        self.redeclare = redeclare  # name -> declared devices (derived MACs need the real name)
        self.declared = declared
        self.state = state
        self.apply_mode = apply_mode
        self.check_mode = check_mode
        self.detach_timeout = detach_timeout
        self.detach_attempts = detach_attempts
        self.allow_live_removal = tuple(allow_live_removal or ())
        self.overridden_kinds = overridden_kinds   # state overridden: the kinds it removes from (None: all)
        self.dom = None
        self.active = False
        self.guest_state = None     # running, paused, shutoff, ...: as found, then as the run leaves it
        self.config_plan = None
        self.live_plan = None
        self.inactive_xml = None    # the definition the config plan was made from
        self.live_xml = None        # the live XML the live plan was made from
        self.readback = None
        # the definition read back after writing (after a failure: what is there then; None when unknown),
        # described for the result only when the result shows it (a manifest's compact result does not)
        self.after_source = None
        self.record = None          # a shutdown an earlier run requested and did not see through
        self.live_changes = []      # the changes planned for the running guest
        self.outcomes = {}          # id(live change) -> DONE, PENDING, FAILED, BLOCKED, WITHHELD or SKIPPED
        self.reasons = {}           # id(live change) -> why it did not happen live
        self.plan_warnings = []     # what the plan tells (a paused guest, an address that must move)
        self.warnings = []          # what the run found (devices the guest did not take or release)
        self.defined = False        # the definition was written (and kept)
        self.restarted = False
        self.shutdown_pending = False
        self.replans = 0            # plans made again because the guest changed after it was read
        self.executed = []          # commands that took effect
        self.state_written = False  # the guest was stopped or started
        self.in_doubt = None        # the write call whose effect is unknown (connection lost mid-call)
        self.error = None           # why this guest failed, when it did
        self.skipped = None         # why this guest was not attempted (an earlier failure stopped the run)
        self.refusals = []          # host-device guards that refused this guest's assignments
        self.host_requests = []     # the host devices the passthrough guards judged for this guest
        # the definition was read under the lock and nothing was done since: that read is the last one before
        # the define (compare before define, docs/concurrency.md), no second read is needed
        self.fresh = False
        self.unchecked_paths = []   # disk source paths whose existence the host could not tell (remote, no pool)

    # -- planning (reads only) ------------------------------------------------------------------
    def prepare(self):
        if self.uuid is not None:
            self.dom = self.connection.lookup_uuid(self.uuid)
            self.name = self.connection.name_of(self.dom)
            if self.redeclare is not None:
                self.declared = self.redeclare(self.name)
        else:
            self.dom = self.connection.lookup(self.name)
        self._read_and_plan()
        return self

    def _read_and_plan(self):
        """Read the guest and plan against it; keep the plans when nothing changed since the last read.
        Returns whether it planned (again)."""
        active = self.connection.is_active(self.dom)
        guest_state = self.connection.state(self.dom) if active else 'shutoff'
        if self.apply_mode in ('live', 'both') and guest_state != 'running':
            raise ApplyError('domain %s is %s: apply=%s changes a running guest (use apply=auto or config to '
                             'change only its definition)'
                             % (self.name, guest_state.replace('_', ' '), self.apply_mode))
        inactive = self.connection.xml(self.dom) if self.apply_mode != 'live' else None
        live = self.connection.xml(self.dom, inactive=False) if active else None
        planned = self.config_plan is not None or self.live_plan is not None
        seen = (active, guest_state, inactive, live)
        if planned and seen == (self.active, self.guest_state, self.inactive_xml, self.live_xml):
            return False
        self.replans += planned
        self.active, self.guest_state, self.inactive_xml, self.live_xml = active, guest_state, inactive, live
        self.config_plan = self._plan(inactive) if inactive is not None else None
        self.live_plan = self._plan(live) if live is not None else None
        for item in self.declared:  # held until written: the plans hold what they need of them
            item.forget_element()
        self.record = restart_record(inactive) if inactive is not None else None
        self.outcomes, self.reasons, self.plan_warnings = {}, {}, []
        if self.live_plan is not None:
            self._withhold_destructive_removals()
            self._hold_what_the_guest_cannot_take()
            if self.config_plan is not None:
                self._persist_at_live_addresses()
        self.live_changes = self._live_steps()
        if self.active and not self.running and self.apply_mode == 'auto' and self.live_plan.changes:
            # a paused guest answers no hot-plug request until it resumes: nothing to wait for now
            self.plan_warnings.append(
                'domain %s is %s: only its definition is changed; the running guest keeps %s until it runs again '
                'and a later run, or its restart, brings it in line' % (
                    self.name, self.guest_state.replace('_', ' '),
                    ', '.join(change.label for change in self.live_plan.changes)))
        if self.apply_mode in ('live', 'both'):
            cold = [change.label + (' (%s)' % self.reasons[id(change)] if self.outcomes.get(id(change)) == BLOCKED
                                    else '')
                    for change in self.live_plan.changes
                    if not change.hotpluggable() or self.outcomes.get(id(change)) == BLOCKED]
            if cold:
                raise ApplyError('domain %s: %s cannot be changed on the running guest; use apply=auto (persist '
                                 'and restart later) or apply=config' % (self.name, ', '.join(cold)))
            withheld = [change.label for change in self.live_plan.changes if self.outcomes.get(id(change)) == WITHHELD]
            if withheld:
                raise ApplyError('domain %s: removing %s from the running guest needs allow_live_removal (%s); '
                                 'nothing was changed' % (self.name, ', '.join(withheld),
                                                          ', '.join(LIVE_REMOVAL_CLASSES)))

    def _plan(self, domain_xml):
        return _device_engine.plan(domain_xml, self.declared, self.state, self.overridden_kinds)

    @contextlib.contextmanager
    def locked(self, lock_dir, timeout):
        """Hold the guest's lock (docs/concurrency.md) while writing; on entry, check that the guest is still
        the one planned and plan again if another run changed it since it was read. Check mode locks nothing."""
        if self.check_mode:
            yield self
            return
        with _guest_lock.GuestLock(lock_dir, self.connection.uuid_of(self.dom), self.name, timeout):
            self._refresh()
            self.fresh = True
            yield self

    def _refresh(self):
        dom = self.connection.find_uuid(self.connection.uuid_of(self.dom))
        if dom is None:
            raise ApplyError('domain %s was undefined while the task ran (after it was read); nothing of it was '
                             'written' % self.name)
        name = self.connection.name_of(dom)
        if self.uuid is None and name != self.name:  # asked for by name: another name is another guest
            raise ApplyError('domain %s was renamed to %s while the task ran (after it was read); nothing of it was '
                             'written' % (self.name, name))
        self.dom, self.name = dom, name
        try:
            planned = (self.config_plan, self.live_plan)
            grown = self._read_and_plan() and not _assignment_keys(self) <= _assignment_keys(self, planned)
        except _ids.IdError as exc:  # an address libvirt would read differently: never written unchecked
            raise ApplyError('domain %s: %s; nothing of it was written' % (self.name, exc))
        if grown:
            raise ApplyError('domain %s changed while the task ran and now needs host devices assigned that the host '
                             'checks did not see; nothing of it was written (run the task again)' % self.name)

    @property
    def running(self):
        """Only a running guest answers hot-plug and shutdown requests (a paused one holds them)."""
        return self.active and self.guest_state == 'running'

    def _withhold_destructive_removals(self):
        for change in self.live_plan.changes:
            if change.op != 'detach':
                continue
            needed = removal_consent(change.old)
            if needed is not None and needed not in self.allow_live_removal:
                self.outcomes[id(change)] = WITHHELD
                self.reasons[id(change)] = 'removing a %s from a running guest needs allow_live_removal: [%s]' % (
                    'disk' if needed == 'disk' else 'passthrough device', needed)

    def _hold_what_the_guest_cannot_take(self):
        """Changes the kind table lets QEMU make live that this guest's PCI topology keeps out (an i440fx machine
        without ACPI, a q35 machine without a free root port: the live plan's ``refusal``) are BLOCKED when planned:
        never attempted, persisted for the next start and named in waiting_for_restart, in check mode as on a
        real run."""
        held = {}
        for change in self.live_plan.changes:
            if id(change) in self.outcomes or not change.hotpluggable():
                continue
            reason = self.live_plan.refusal(change)
            if reason is not None:
                self.outcomes[id(change)] = BLOCKED
                self.reasons[id(change)] = reason
                held.setdefault(reason, []).append(change.label)
        if not self.running or self.apply_mode == 'config':
            return  # nothing is tried live anyway (a paused guest is named as such)
        for reason, labels in held.items():
            self.plan_warnings.append(
                'domain %s: %s cannot be plugged into or out of the running guest: %s; the definition has %s as '
                'declared and the guest gets %s at its next restart (waiting_for_restart)'
                % (self.name, ', '.join(labels), reason, 'it' if len(labels) == 1 else 'them',
                   'it' if len(labels) == 1 else 'them'))

    def _persist_at_live_addresses(self):
        """A device the running guest already has (hot-plugged before, live only) that the definition gains
        keeps what the guest sees: its address and, for a NIC declared without MAC, its MAC."""
        devices = _device_engine.device_elements(_device_engine.devices_of(self.config_plan.tree))
        for change in self.config_plan.changes:
            if change.op != 'attach' or change.item is None:
                continue
            live = self.live_plan.matched.get(change.item.where)
            if live is None:
                continue
            derived = change.item.kind.fields[change.item.derived.option] if change.item.derived else None
            if derived is not None and derived.read(live) is not None:
                derived.write(change.new, derived.read(live))
                change.verify_key = _device_engine.identity(change.new)
            address = live.find('address')
            if change.new.find('address') is not None or address is None:
                continue
            holder = holder_of(address, devices, besides=change.new)
            if holder is None:
                change.new.append(copy.deepcopy(address))
            else:
                self.plan_warnings.append(
                    'domain %s: %s is at %s on the running guest, where the definition has another device; it gets '
                    'another address in the definition and moves at the next boot'
                    % (self.name, change.label, dict(address.attrib)))

    def _live_steps(self):
        """Changes to make on the running guest: hot-pluggable ones not withheld or held out by the guest's PCI
        topology (none on a paused guest)."""
        if self.live_plan is None or self.apply_mode == 'config' or not self.running:
            return []
        return [change for change in self.live_plan.changes
                if change.hotpluggable() and self.outcomes.get(id(change)) not in (WITHHELD, BLOCKED)]

    def _live_outcome(self, change):
        """DONE when the change is (predicted, in check mode) on the running guest."""
        if id(change) in self.outcomes:
            return self.outcomes[id(change)]
        if self.check_mode and any(change is planned for planned in self.live_changes):
            return DONE
        return None

    @property
    def waiting(self):
        """Devices the running guest has otherwise than the definition; only a restart brings them in line
        (a pending unplug may still complete by itself). None once the guest restarted or stopped."""
        if self.live_plan is None or self.restarted or not self.active:
            return []
        return [change.label for change in self.live_plan.changes if self._live_outcome(change) != DONE]

    @property
    def pending_unplug(self):
        """Devices the guest was asked to release and still holds."""
        if self.live_plan is None or self.restarted or not self.active:
            return []
        return [change.label for change in self.live_plan.changes if self.outcomes.get(id(change)) == PENDING]

    @property
    def changed(self):
        """What the plans say would change (check mode reports this)."""
        return bool((self.config_plan and self.config_plan.changed) or self.live_changes)

    # -- bookkeeping of what really happened ------------------------------------------------------------
    @property
    def outcome(self):
        if self.in_doubt is not None:
            return UNKNOWN
        return WRITTEN if self.executed or self.state_written else NOT_WRITTEN

    @property
    def written(self):
        """Something of this guest was (or may have been) changed."""
        return self.outcome != NOT_WRITTEN

    @property
    def reported_changed(self):
        """``changed`` as reported: the prediction in check mode, what happened on a real run. A guest the
        real run would not write changes nothing in either: one halted before writing (on_error=stop after
        another guest failed) and one that fails in check mode (refused, unreadable)."""
        if self.check_mode:
            return (self.changed or self.restarted) and self.skipped is None and self.error is None
        return self.written

    def _write(self, what, func, *args, **kwargs):
        """Every write call goes through here: when the connection breaks before libvirt answers, nobody
        knows whether the call took effect."""
        try:
            return func(*args, **kwargs)
        except ConnectionLost:
            self.in_doubt = what
            raise

    def _book(self, *commands):
        """Record commands that took effect."""
        self.executed.extend(commands)

    # -- writing ------------------------------------------------------------------------------------
    def has_work(self, restart_wanted):
        """Whether writing this guest could write anything: a change to make live or to its definition, a
        restart record to finish, or a restart O(restart=if_required) asks for. A guest without work is neither
        locked nor read again (on a no-change run of a host that halves the libvirt calls); what it was read as
        is what the run reports. Check mode writes nothing anyway."""
        return bool(self.check_mode or self.live_changes or (self.config_plan is not None and self.config_plan.changed)
                    or self.record is not None or (restart_wanted and self.waiting))

    def apply(self):
        """Running guest first, then the definition, written as declared whatever the guest did live."""
        if self.check_mode:
            return self
        if self.live_changes:
            self.fresh = False  # live steps can take detach_timeout: read the definition again before writing it
            persistent = _device_engine.locate(self.inactive_xml) if self.inactive_xml is not None else {}
            # removals first: a device planned where a removed one sat can take its place
            for change in sorted(self.live_changes, key=lambda change: LIVE_ORDER[change.op]):
                if not self.active:
                    self.outcomes[id(change)] = SKIPPED
                    continue
                self._apply_live(change, persistent)
            self._report_live_leftovers()
        if self.config_plan is not None and self.config_plan.changed:
            self._define()
        elif self.apply_mode == 'live' and self.executed:
            self.after_source = self.connection.xml(self.dom, inactive=False)
        if self.apply_mode in ('live', 'both'):
            missed = [change.label for change in self.live_changes if self.outcomes.get(id(change)) != DONE]
            if missed:
                raise ApplyError('domain %s: %s did not take effect on the running guest (apply=%s); %s'
                                 % (self.name, ', '.join(missed), self.apply_mode,
                                    'the definition was written as declared' if self.defined
                                    else 'its definition was not changed'))
        return self

    def _report_live_leftovers(self):
        by_outcome = {}
        for change in self.live_changes:
            by_outcome.setdefault(self.outcomes.get(id(change)), []).append(change)
        if by_outcome.get(PENDING):
            self.warnings.append(
                'domain %s: the guest did not release %s within %d s (its OS must support hot-unplug and accept '
                'it); the request stays with the guest, the device is gone from the definition and leaves at the '
                'latest at the next restart (pending_unplug)'
                % (self.name, ', '.join(change.label for change in by_outcome[PENDING]), self.detach_timeout))
        for change in by_outcome.get(FAILED, []) + by_outcome.get(BLOCKED, []):
            self.warnings.append('domain %s: %s was not changed on the running guest (%s); the definition has it as '
                                 'declared and the guest gets it at its next restart (waiting_for_restart)'
                                 % (self.name, change.label, self.reasons[id(change)]))
        if by_outcome.get(SKIPPED):
            self.warnings.append('domain %s stopped while the task ran; %s was not changed live, the definition '
                                 'has it as declared' % (self.name, ', '.join(c.label for c in by_outcome[SKIPPED])))

    def _live_note(self):
        done = [change.label for change in self.live_changes if self.outcomes.get(id(change)) == DONE]
        return ' (the running guest was changed already: %s)' % ', '.join(done) if done else ''

    def _define(self):
        base = self._reread_definition()
        if not self.config_plan.changed:
            return  # another writer already made the definition what was declared
        changes = self.config_plan.changes
        # the devices the plan adds or changes checked against libvirt's schema here when it is the daemon's;
        # libvirt checks the definition itself otherwise, and when they fail here (its refusal explained as always)
        checked = self.connection.same_libvirt() and _schema.devices_pass(
            [change.new for change in changes if change.new is not None]) is True
        try:
            self._write('define', self.connection.define, self.config_plan.new_xml, checked)
        except ConnectionLost:
            raise
        except LibvirtFailure as exc:
            explained = _schema.explain_plan(self.name, self.config_plan, str(exc))  # per device and option
            if explained:
                raise ApplyError(explained + self._live_note()) from exc
            raise ApplyError('domain %s: libvirt refused the new definition (%s); nothing of it was written%s: %s'
                             % (self.name, _describe_changes(changes, str(exc)), self._live_note(), exc))
        self._book(*[change.command(live=False) for change in changes])
        self.defined = True
        self.readback = self.connection.xml(self.dom)
        kept = _xml.parse(self.readback, 'domain XML')  # parsed once: the check and the result read the same tree
        problems = _device_engine.verify(self.config_plan, kept)
        if problems:
            self.defined = False
            self._restore(base, problems)
        # report what libvirt really kept (it adds controllers and addresses the prediction cannot know)
        self.after_source = kept

    def _reread_definition(self):
        """Compare before define: re-read the definition just before writing it; when it changed since it was
        planned (a writer that does not take our lock: virsh, another controller), plan again from it.
        Returns the definition the define replaces; right after the read under the lock (no live step between)
        that read is the last one before the define, and is not made twice."""
        if self.fresh:
            self.fresh = False
            return self.inactive_xml
        for _attempt in range(REPLANS):
            current = self.connection.xml(self.dom)
            if current == self.inactive_xml:
                return current
            previous = self.config_plan
            self.inactive_xml = current
            self.config_plan = self._plan(current)
            self.replans += 1
            _keep_hotplug_addresses(previous, self.config_plan)
            if self.live_plan is not None:
                self._persist_at_live_addresses()
        raise ApplyError('domain %s: its definition changed %d times between reading and writing it (another tool '
                         'is writing it); nothing of the definition was written' % (self.name, REPLANS))

    def _restore(self, base, problems):
        """Put back the definition this run replaced, but only if it is still the one this run wrote: a
        change another writer made since must not be undone."""
        summary = _first_few(problems, '; ')
        if self.connection.xml(self.dom) != self.readback:
            raise ApplyError('libvirt did not keep the requested devices of %s (%s); the definition was not restored '
                             'because another writer changed it after this run wrote it' % (self.name, summary))
        try:
            self._write('restore', self.connection.define, base)
        except ConnectionLost:
            raise
        except LibvirtFailure as exc:
            raise ApplyError('libvirt did not keep the requested devices of %s (%s), and restoring the previous '
                             'definition failed: %s' % (self.name, summary, exc))
        self.executed = [dict(command, config=False) for command in self.executed if command['live']]
        self.readback = base
        raise ApplyError('libvirt did not keep the requested devices of %s, the definition was restored: %s%s'
                         % (self.name, summary, self._live_note()))

    def _apply_live(self, change, persistent):
        """One live step; what the guest did is booked in ``outcomes``, never raised (the definition is
        written whatever happens here), except a lost connection."""
        try:
            if change.op == 'attach':
                self._attach_live(change, persistent)
            elif change.op == 'update':
                self._write('live update', self.connection.update_live, self.dom, _xml.to_string(change.new))
                self._done(change)
            else:
                alias = change.old.find('alias')
                outcome = self._write('live detach', self.connection.detach_live,
                                      self.dom, _xml.to_string(change.old),
                                      alias.get('name') if alias is not None else None,
                                      self.detach_timeout, self.detach_attempts)
                if outcome == 'released':
                    self._done(change)
                elif outcome == 'guest_off':
                    self._guest_stopped(change)
                else:
                    self.outcomes[id(change)] = PENDING
        except ConnectionLost:
            raise
        except LibvirtFailure as exc:
            if not self.connection.is_active(self.dom):
                self._guest_stopped(change)
                return
            self.outcomes[id(change)] = FAILED
            self.reasons[id(change)] = 'live %s failed: %s' % (change.op, exc)

    def _done(self, change):
        self.outcomes[id(change)] = DONE
        self._book(change.command(live=True, config=False))

    def _guest_stopped(self, change):
        self.outcomes[id(change)] = SKIPPED
        self.active = False
        self.guest_state = 'shutoff'

    def _attach_live(self, change, persistent):
        """Hot-plug where the persistent definition already has the device, if it has it and that address is
        free on the running guest; else where QEMU finds room, and give the definition that same address."""
        element = copy.deepcopy(change.new)
        known = persistent.get(change.verify_key) if change.verify_key is not None else None
        if element.find('address') is None and known is not None and known.find('address') is not None:
            live_devices = _device_engine.device_elements(_device_engine.devices_of(
                _xml.parse(self.connection.xml(self.dom, inactive=False), 'domain XML')))
            holder = holder_of(known.find('address'), live_devices)
            if holder is not None:
                self.outcomes[id(change)] = BLOCKED
                self.reasons[id(change)] = ('its address in the definition, %s, is used on the running guest by %s'
                                            % (dict(known.find('address').attrib), _device_engine.describe(holder)))
                return
            element.append(copy.deepcopy(known.find('address')))
        self._write('live attach', self.connection.attach_live, self.dom, _xml.to_string(element))
        self._done(change)
        planned = self.config_plan.change_for(change.verify_key) if self.config_plan is not None else None
        if planned is None or planned.new is None or planned.new.find('address') is not None:
            return
        plugged = _device_engine.locate(self.connection.xml(self.dom, inactive=False)).get(change.verify_key)
        if plugged is None or plugged.find('address') is None:
            return
        devices = _device_engine.device_elements(_device_engine.devices_of(self.config_plan.tree))
        if holder_of(plugged.find('address'), devices, besides=planned.new) is None:
            planned.new.append(copy.deepcopy(plugged.find('address')))
        else:
            self.warnings.append('domain %s: %s was hot-plugged at %s, which the definition gives to another '
                                 'device; it gets another address in the definition and moves at the next boot'
                                 % (self.name, change.label, dict(plugged.find('address').attrib)))

    # -- restarts the module owns ---------------------------------------------------------------------
    def restart(self, wanted, timeout):
        """Restart when changes wait for it (``wanted``: restart=if_required), and finish a restart an earlier
        run began: a guest that went off after our shutdown request is started whatever ``restart`` says.

        Once the power button is pressed the request cannot be withdrawn, so it is recorded in the
        definition's metadata first: a guest that powers off after ``timeout`` (or after this process died)
        is started by the next run."""
        if not self.active:
            if self.record is not None:
                self._start_again()
            return
        if not self.running or self.apply_mode == 'live':
            self.shutdown_pending = self.record is not None
            if wanted and self.waiting and not self.running:
                self.warnings.append('domain %s is %s: it was not restarted (restart_required stays true)'
                                     % (self.name, self.guest_state.replace('_', ' ')))
            return
        if not self.waiting:
            if self.record is not None and not self.check_mode:
                self._set_record(None)  # it restarted since (or nothing waits any more)
            return
        if not wanted:
            self.shutdown_pending = self.record is not None  # our earlier request may still be under way
            return
        if self.check_mode:
            self.restarted = True
            return
        self._set_record({'requested': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()), 'timeout': str(timeout)})
        self._write('shutdown', self.connection.request_shutdown, self.dom)
        self.state_written = True
        if not self.connection.wait_shutoff(self.dom, timeout):
            self.shutdown_pending = True
            raise ApplyError(
                'domain %s did not power off within %d s of the shutdown request for the restart its devices need '
                '(restart_timeout); the definition is updated, the guest still runs and the shutdown stays pending: '
                'the next run of this module starts the guest if it is off by then (recorded in its metadata)'
                % (self.name, timeout))
        self.active, self.guest_state = False, 'shutoff'
        self._start_again()

    def start_if_ours(self):
        """After a failure elsewhere in the run: a guest that is off because of our shutdown request is started."""
        if self.record is not None and not self.restarted and not self.check_mode and self.dom is not None \
                and not self.connection.lost and not self.connection.is_active(self.dom):
            self._start_again()

    def _start_again(self):
        if self.check_mode:
            self.restarted = True
            return
        try:
            self._write('start', self.connection.start, self.dom)
        except ConnectionLost:
            raise
        except LibvirtFailure as exc:
            raise ApplyError('domain %s is off after the shutdown this module requested and did not start again: %s; '
                             'the next run of this module tries again' % (self.name, exc))
        self.active, self.guest_state = True, 'running'
        self.restarted = self.state_written = True
        self.shutdown_pending = False
        self._set_record(None)

    def _set_record(self, attributes):
        """Write (or remove, with None) the pending-shutdown record: in the definition, which outlives the
        guest stopping, and in the running guest's XML while it runs."""
        element = _xml.to_string(_xml.new_element('restart', attributes)) if attributes is not None else None
        self._write('metadata', self.connection.set_metadata, self.dom, RESTART_PREFIX, RESTART_NS, element,
                    live=self.active)
        self.record = attributes

    # -- failures -------------------------------------------------------------------------------------
    def fail(self, exc):
        """This guest failed: keep the message (naming the guest) and read what is really there now."""
        self.error = guest_message(self.name, exc)
        self.after_source = None  # what a failed run leaves is read again below, or unknown
        if self.check_mode or self.outcome != WRITTEN or self.dom is None or self.connection.lost:
            return
        try:
            self.after_source = self.connection.xml(self.dom, inactive=self.apply_mode != 'live')
        except LibvirtFailure:
            self.after_source = None

    # -- reporting ------------------------------------------------------------------------------------
    def commands(self):
        """Planned commands in check mode; on a real run the ones that took effect (live and/or config).
        A removal that needs allow_live_removal is marked ``destructive`` (done live or withheld)."""
        live_labels = {change.label for change in self.live_changes}
        destructive = {change.label for change in (self.live_plan.changes if self.live_plan is not None else ())
                       if change.op == 'detach' and removal_consent(change.old) is not None}
        config_changes = self.config_plan.changes if self.config_plan is not None else []
        config_labels = {change.label for change in config_changes}
        entries = [(change, change.command(live=change.label in live_labels)) for change in config_changes]
        entries += [(change, change.command(live=True, config=False)) for change in self.live_changes
                    if change.label not in config_labels]
        planned = []
        for change, command in entries:
            if change.op == 'detach' and change.label in destructive:
                command['destructive'] = True
            planned.append(command)
        if self.check_mode:
            return planned
        done = {}
        for command in self.executed:
            flags = done.setdefault((command['op'], command['kind'], command['key']), {'live': False, 'config': False})
            flags['live'] = flags['live'] or command['live']
            flags['config'] = flags['config'] or command['config']
        return [dict(command, **done[(command['op'], command['kind'], command['key'])]) for command in planned
                if (command['op'], command['kind'], command['key']) in done]

    def result(self, compact=False, devices=True):
        """Per-domain result. ``compact`` (a many-domain manifest) leaves out of a domain that did not change
        everything but its name, outcome and the keys that are not empty or false: a host's no-change run
        then returns a few bytes per guest, not its whole inventory. Without ``devices`` a domain that changed
        has no ``before`` and, unless it failed, no ``after`` (a manifest without --diff: its result grows with
        what changed, which ``commands`` says, not with each changed guest's whole device list,
        docs/performance.md); a failed domain always shows what it was left with."""
        changed = self.reported_changed
        waiting = self.waiting
        result = {'domain': self.name, 'changed': changed, 'outcome': self.outcome, 'commands': self.commands(),
                  'restart_required': bool(waiting), 'waiting_for_restart': waiting,
                  'pending_unplug': self.pending_unplug, 'restarted': self.restarted,
                  'shutdown_pending': self.shutdown_pending, 'guest_state': self.guest_state}
        if self.error is not None:
            result.update(failed=True, msg=self.error)
        elif self.skipped is not None:
            result['msg'] = 'not attempted: %s' % self.skipped
        if compact and not changed and self.error is None and self.skipped is None:
            # a no-change run over a host returns a few bytes per guest: its name, its outcome and only what
            # is not the default (a guest still waiting for a restart says so)
            return {key: value for key, value in result.items()
                    if key in ('domain', 'changed', 'outcome') or (value and key != 'guest_state')}
        shown = self.config_plan if self.config_plan is not None else self.live_plan
        if shown is None:
            return result
        if devices:
            result['before'] = shown.before
        result['implicit'] = shown.implicit
        if changed and (devices or self.error is not None):  # as the network resource modules do: after only
            after = self._after(shown)                          # when something changed
            if after is not None:
                result['after'] = after
        return result

    def _after(self, shown):
        """The devices after the run: predicted in check mode, read back on a real run (the plan where nothing
        of the devices was written, only the guest restarted), absent when unknown."""
        if self.check_mode:
            return shown.after
        if self.error is None and self.outcome == WRITTEN and self.after_source is None:
            return shown.after
        if self.after_source is None:
            return None  # a failure left the outcome unknown
        return _device_engine.gather(self.after_source)  # read back; after a failure what fail() read

    def release(self):
        """Drop the XML trees once the domain's result is taken (the declared devices' too)."""
        self.config_plan = self.live_plan = self.declared = None
        self.inactive_xml = self.live_xml = self.readback = self.after_source = None
        self.live_changes, self.outcomes = [], {}

    def diff(self):
        """The <devices> before and after; removals that need consent are marked by a comment."""
        shown = self.config_plan if self.config_plan is not None else self.live_plan
        if not self.reported_changed or shown is None or self.error is not None:
            return None
        notes = []
        for change in self.live_plan.changes if self.live_plan is not None else ():
            if change.op != 'detach' or removal_consent(change.old) is None:
                continue
            if self.outcomes.get(id(change)) == WITHHELD:
                notes.append('<!-- %s: removed from the definition only, it stays on the running guest until its '
                             'next restart (allow_live_removal: [%s] hot-unplugs it) -->'
                             % (change.label, removal_consent(change.old)))
            else:
                notes.append('<!-- %s: hot-unplugged from the running guest (destructive, allowed by '
                             'allow_live_removal) -->' % change.label)
        return {'before_header': '%s devices' % self.name, 'after_header': '%s devices' % self.name,
                'before': shown.before_text + '\n', 'after': '\n'.join(notes + [shown.after_text]) + '\n'}


# a failure message names this many devices (or problems); the rest are in the result (commands, results)
SHOWN = 3


def _first_few(texts, separator=', '):
    """The first SHOWN texts, and how many more there are: a message stays one or two lines."""
    shown = separator.join(texts[:SHOWN])
    more = len(texts) - SHOWN
    return shown + (' and %d more' % more if more > 0 else '')


def _describe_changes(changes, libvirt_message=''):
    """'attach disk vdb (config[0])': the devices a failed define was about. When libvirt's message quotes a
    value that only some of the changed devices carry ('qemu-xhci', 'hde'), those are the ones named."""
    quoted = set(re.findall(r"'([^']+)'", libvirt_message))

    def carries(change):
        element = change.new if change.new is not None else change.old
        return any(value in quoted for node in element.iter() if isinstance(node.tag, str)
                   for value in node.attrib.values())
    suspects = [change for change in changes if carries(change)]
    named = suspects if 0 < len(suspects) < len(changes) else changes
    return _first_few(['%s %s%s' % (change.op, change.label, ' (%s)' % change.item.where if change.item else '')
                       for change in named])


def _keep_hotplug_addresses(previous, replanned):
    """A device hot-plugged before the definition was planned again keeps the address QEMU gave it."""
    if previous is None:
        return
    for change in replanned.changes:
        old = previous.change_for(change.verify_key)
        if change.new is None or old is None or old.new is None:
            continue
        if change.new.find('address') is None and old.new.find('address') is not None:
            change.new.append(copy.deepcopy(old.new.find('address')))


def _assignment_keys(run, plans=None):
    return {tuple(sorted((k, str(v)) for k, v in request.items() if k != 'where'))
            for request in _assignment_requests(run, plans)}


# -- passthrough preflight (docs/host_devices.md) -----------------------------------------------------------

def _assignment_requests(run, plans=None):
    """The host devices a run would give its guest: hostdevs and SR-IOV interfaces it adds or changes, typed
    or raw XML alike, their addresses read the way libvirt reads them (the kind table's host_devices column;
    an address that cannot be read raises IdError, which refuses the run). ``plans``: (config, live) plans
    other than the run's current ones."""
    requests = []
    for plan in plans or (run.config_plan, run.live_plan):
        for change in (plan.changes if plan is not None else ()):
            if change.op != 'detach':
                where = change.item.where if change.item is not None else change.label
                kept = host_devices(change.old, where) if change.old is not None else []
                # a disk source the guest has already is not judged again (only what the run gives it)
                requests.extend(request for request in host_devices(change.new, where)
                                if request['type'] != 'path' or request not in kept)
    unique = {}
    for request in requests:  # the same device in the config and the live plan is one request
        unique.setdefault(tuple(sorted((k, str(v)) for k, v in request.items())), request)  # where: one entry
    return list(unique.values())


def assigns_host_devices(run):
    """Whether a planned run gives its guest a host device (PCI, USB, mdev, VF); an address that cannot be read
    counts (the preflight refuses it)."""
    try:
        return any(request['type'] != 'path' for request in _assignment_requests(run))
    except _ids.IdError:
        return True


def read_host(host_root, host_source=None):
    """The host model: from ``host_source`` (a remote host's node devices) or this machine's sysfs below
    ``host_root``."""
    if host_source is not None:
        return host_source.read_host()
    from ansible_collections.virtdev.libvirt.plugins.module_utils.host import preflight as host_preflight
    return host_preflight.read_host(host_root)


def names_vf_by_pf(item):
    """Whether a declared device is an interface taking an SR-IOV VF by its PF and index (``source: {pf, vf}``)."""
    return item.kind is not None and item.kind.tag == 'interface' and 'pf' in item.spec.get('source', {})


def vf_address(host, source, where):
    """The PCI address of VF ``source['vf']`` of the PF ``source['pf']`` on ``host``; a PF that is not there,
    is not a PF, or has no such VF raises SpecError naming ``where``.pf or ``where``.vf and the value.

    The index is the kernel's (virtfnN in sysfs); libvirt lists a PF's VFs in that order."""
    pf, index = source['pf'], source['vf']
    dev = host.device(pf)
    if dev is None:
        raise SpecError(where + '.pf', 'there is no PCI device %s on this host (not %s)' % (pf, host.pci_listing))
    if dev.physfn:
        raise SpecError(where + '.pf', '%s is an SR-IOV VF (of PF %s), not a PF' % (pf, dev.physfn))
    if not dev.vfs and not dev.sriov_totalvfs:
        raise SpecError(where + '.pf', '%s is not an SR-IOV physical function (it has no VFs)' % pf)
    if index >= len(dev.vfs):
        have = '%d VFs (0..%d)' % (len(dev.vfs), len(dev.vfs) - 1) if dev.vfs else \
            'no VFs enabled (create them with virtdev.libvirt.sriov_vfs)'
        raise SpecError(where + '.vf', '%d is out of range: PF %s has %s' % (index, pf, have))
    return dev.vfs[index]


def preflight(connection, runs, host_root, force, host_source=None, paths=None):
    """Check every host device the runs would assign, before anything is written.

    Returns (errors, warnings). Runs that assign nothing cost nothing: sysfs and the other domains are
    read only when some run adds or changes a passthrough device. ``host_source``: a ``host.source.HostSource``
    when the host is not this machine's sysfs under ``host_root`` (a remote host's node devices,
    ``host.nodedev_source``); when it raises ``NodeDevicesUnavailable`` every run that assigns a device is
    refused. ``paths``: answers whether a disk source path exists on the host (``host.preflight.LocalPaths``
    / ``PoolPaths``); the source_exists guard refuses a missing one, and the paths it cannot tell are kept in
    ``run.unchecked_paths``.
    """
    from ansible_collections.virtdev.libvirt.plugins.module_utils.host import preflight as host_preflight
    wanted, errors = [], []
    for run in runs:
        try:
            requests = _assignment_requests(run)
        except _ids.IdError as exc:  # a guard is never skipped because an address was not understood
            run.refusals = ['%s [guard address]' % exc]
            errors.append('domain %s: %s' % (run.name, run.refusals[0]))
            continue
        sources = [request for request in requests if request['type'] == 'path']
        if sources and paths is not None:
            check, run.unchecked_paths = host_preflight.check_sources(paths, sources, force=force)
            run.refusals = list(check.errors)
            errors.extend('domain %s: %s' % (run.name, error) for error in check.errors)
        wanted.append((run, [request for request in requests if request['type'] != 'path']))
    wanted = [(run, requests) for run, requests in wanted if requests]
    if not wanted:
        return errors, []
    for run, requests in wanted:
        run.host_requests = requests
    try:
        host = read_host(host_root, host_source)
    except nodedev_source.NodeDevicesUnavailable as exc:  # no guard could run: nothing is assigned unchecked
        for run, _requests in wanted:
            run.refusals.append('the passthrough guards cannot run: %s' % exc)
            errors.append('domain %s: %s' % (run.name, run.refusals[-1]))
        return errors, []
    try:
        usage = host_preflight.usage_from_domains(connection.domain_definitions())
    except ValueError as exc:  # another guest's XML we cannot read: its devices cannot be ruled out
        for run, _requests in wanted:
            run.refusals.append('cannot tell which host devices other domains use: %s' % exc)
            errors.append('domain %s: %s' % (run.name, run.refusals[-1]))
        return errors, []
    warnings = []
    for run, requests in wanted:
        check = host_preflight.check_assignment(host, requests, run.name, usage, force=force)
        run.refusals += check.errors
        errors.extend('domain %s: %s' % (run.name, error) for error in check.errors)
        warnings.extend('domain %s: %s' % (run.name, warning) for warning in check.warnings)
        # two domains of one manifest asking for the same device collide as if it were defined already
        for request in requests:
            if request['type'] in ('pci', 'sriov_vf'):
                usage.setdefault(('pci', request['address']), []).append(
                    {'domain': run.name, 'live': False, 'config': True})
            elif request['type'] == 'mdev':
                usage.setdefault(('mdev', request['uuid']), []).append(
                    {'domain': run.name, 'live': False, 'config': True})
    return errors, warnings
