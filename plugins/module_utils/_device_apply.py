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
"""

from __future__ import annotations

import contextlib
import copy

from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine, _guest_lock, _host_pci, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import kind_of_element
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import ConnectionLost, LibvirtFailure

APPLY_MODES = ('auto', 'config', 'live', 'both')
# What a run really did to a guest (docs/concurrency.md): the result's ``outcome``.
WRITTEN, NOT_WRITTEN, UNKNOWN = 'written', 'not_written', 'unknown'
# Re-reads of a definition that keeps changing between our read and our define, before giving up.
REPLANS = 5


class ApplyError(Exception):
    """The declaration cannot be applied as asked; the message says what was and was not written."""


def guest_message(name, exc):
    """A failure's message, naming the guest once (docs/concurrency.md: every failure names its guest)."""
    text = str(exc)
    if text.startswith(('domain %s ' % name, 'domain %s:' % name, 'domain %r ' % name)):
        return text
    return 'domain %s: %s' % (name, text)


class DomainRun:
    """Plan and apply one domain's declared devices, and book what was really done.

    Bookkeeping (what the result reports after a success and after any failure): ``executed`` lists the
    commands that took effect, in order; ``in_doubt`` names a write call whose connection broke before
    libvirt answered; ``outcome`` is WRITTEN, NOT_WRITTEN or UNKNOWN from those. Every write call goes
    through ``_write`` and every completed one is booked with ``_book``.
    """

    def __init__(self, connection, name, declared, state, apply_mode, check_mode, detach_timeout=20,
                 detach_attempts=3, uuid=None, redeclare=None):
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
        self.dom = None
        self.active = False
        self.config_plan = None
        self.live_plan = None
        self.inactive_xml = None    # the definition the config plan was made from
        self.live_xml = None        # the live XML the live plan was made from
        self.readback = None
        self.after = None           # devices really there after a failed write, when they could be read
        self.restarted = False
        self.replans = 0            # plans made again because the guest changed after it was read
        self.executed = []          # commands that took effect
        self.state_written = False  # the guest was stopped or started
        self.in_doubt = None        # the write call whose effect is unknown (connection lost mid-call)
        self.error = None           # why this guest failed, when it did
        self.skipped = None         # why this guest was not attempted (an earlier failure stopped the run)
        self.refusals = []          # host-device guards that refused this guest's assignments

    # -- planning (reads only) ------------------------------------------------------------------
    def prepare(self):
        if self.uuid is not None:
            self.dom = self.connection.lookup_uuid(self.uuid)
            self.name = self.dom.name()
            if self.redeclare is not None:
                self.declared = self.redeclare(self.name)
        else:
            self.dom = self.connection.lookup(self.name)
        self._read_and_plan()
        return self

    def _read_and_plan(self):
        """Read the guest and plan against it; keep the plans when nothing changed since the last read."""
        active = self.connection.is_active(self.dom)
        if self.apply_mode in ('live', 'both') and not active:
            raise ApplyError('domain %s is not running: apply=%s changes a running guest (use apply=auto or '
                             'config to change only its definition)' % (self.name, self.apply_mode))
        inactive = self.connection.xml(self.dom) if self.apply_mode != 'live' else None
        live = self.connection.xml(self.dom, inactive=False) if active else None
        planned = self.config_plan is not None or self.live_plan is not None
        if planned and (active, inactive, live) == (self.active, self.inactive_xml, self.live_xml):
            return
        self.replans += planned
        self.active, self.inactive_xml, self.live_xml = active, inactive, live
        self.config_plan = _device_engine.plan(inactive, self.declared, self.state) if inactive is not None else None
        self.live_plan = _device_engine.plan(live, self.declared, self.state) if live is not None else None
        if self.apply_mode in ('live', 'both'):
            cold = [change.label for change in self.live_plan.changes if not change.hotpluggable()]
            if cold:
                raise ApplyError('domain %s: %s cannot be changed on the running guest; use apply=auto (persist '
                                 'and restart later) or apply=config' % (self.name, ', '.join(cold)))

    @contextlib.contextmanager
    def locked(self, lock_dir, timeout):
        """Hold the guest's lock (docs/concurrency.md) while writing; on entry, check that the guest is still
        the one planned and plan again if another run changed it since it was read. Check mode locks nothing."""
        if self.check_mode:
            yield self
            return
        with _guest_lock.GuestLock(lock_dir, self.dom.UUIDString(), self.name, timeout):
            self._refresh()
            yield self

    def _refresh(self):
        dom = self.connection.find_uuid(self.dom.UUIDString())
        if dom is None:
            raise ApplyError('domain %s was undefined while the task ran (after it was read); nothing of it was '
                             'written' % self.name)
        if self.uuid is None and dom.name() != self.name:  # asked for by name: another name is another guest
            raise ApplyError('domain %s was renamed to %s while the task ran (after it was read); nothing of it was '
                             'written' % (self.name, dom.name()))
        self.dom, self.name = dom, dom.name()
        assigned = _assignment_keys(self)
        self._read_and_plan()
        if not _assignment_keys(self) <= assigned:
            raise ApplyError('domain %s changed while the task ran and now needs host devices assigned that the host '
                             'checks did not see; nothing of it was written (run the task again)' % self.name)

    @property
    def live_changes(self):
        """Changes made (or to be made) on the running guest."""
        if self.live_plan is None or self.apply_mode == 'config':
            return []
        return [change for change in self.live_plan.changes if change.hotpluggable()]

    @property
    def waiting(self):
        """Devices that differ on the running guest and only a restart brings in line."""
        if self.live_plan is None or self.restarted:
            return []
        live = {id(change) for change in self.live_changes}
        return [change.label for change in self.live_plan.changes if id(change) not in live]

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
        """``changed`` as reported: the prediction in check mode, what happened on a real run."""
        return (self.changed or self.restarted) if self.check_mode else self.written

    def _write(self, what, func, *args):
        """Every write call goes through here: when the connection breaks before libvirt answers, nobody
        knows whether the call took effect."""
        try:
            return func(*args)
        except ConnectionLost:
            self.in_doubt = what
            raise

    def _book(self, *commands):
        """Record commands that took effect."""
        self.executed.extend(commands)

    # -- writing ------------------------------------------------------------------------------------
    def apply(self):
        """Running guest first, then the definition: a hot-plug QEMU refuses leaves the definition as it
        was, and a device hot-plugged into a free slot is persisted at that same address."""
        if self.check_mode:
            return self
        if self.live_changes:
            before = _device_engine.locate(self.connection.xml(self.dom))
            for change in self.live_changes:
                self._apply_live(change, before)
        if self.config_plan is not None and self.config_plan.changed:
            self._define()
        return self

    def _define(self):
        base = self._reread_definition()
        if not self.config_plan.changed:
            return  # another writer already made the definition what was declared
        changes = self.config_plan.changes
        try:
            self._write('define', self.connection.define, self.config_plan.new_xml)
        except ConnectionLost:
            raise
        except LibvirtFailure as exc:
            raise ApplyError('domain %s: libvirt refused the new definition (%s); nothing of it was written: %s'
                             % (self.name, _describe_changes(changes), exc))
        self._book(*[change.command(live=False) for change in changes])
        self.readback = self.connection.xml(self.dom)
        problems = _device_engine.verify(self.config_plan, self.readback)
        if problems:
            self._restore(base, problems)
        # report what libvirt really kept (it adds controllers and addresses the prediction cannot know)
        self.config_plan.after = _device_engine.gather(self.readback)

    def _reread_definition(self):
        """Compare before define: re-read the definition just before writing it; when it changed since it was
        planned (a writer that does not take our lock: virsh, another controller), plan again from it.
        Returns the definition the define replaces."""
        for _attempt in range(REPLANS):
            current = self.connection.xml(self.dom)
            if current == self.inactive_xml:
                return current
            previous = self.config_plan
            self.inactive_xml = current
            self.config_plan = _device_engine.plan(current, self.declared, self.state)
            self.replans += 1
            _keep_hotplug_addresses(previous, self.config_plan)
        raise ApplyError('domain %s: its definition changed %d times between reading and writing it (another tool '
                         'is writing it); nothing of the definition was written' % (self.name, REPLANS))

    def _restore(self, base, problems):
        """Put back the definition this run replaced, but only if it is still the one this run wrote: a
        change another writer made since must not be undone."""
        summary = '; '.join(problems)
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
        raise ApplyError('libvirt did not keep the requested devices of %s, the definition was restored: %s'
                         % (self.name, summary))

    def _apply_live(self, change, persistent):
        try:
            if change.op == 'attach':
                self._attach_live(change, persistent)
            elif change.op == 'update':
                self._write('live update', self.connection.update_live, self.dom, _xml.to_string(change.new))
                self._book(change.command(live=True, config=False))
            else:
                alias = change.old.find('alias')
                released = self._write('live detach', self.connection.detach_live,
                                       self.dom, _xml.to_string(change.old),
                                       alias.get('name') if alias is not None else None,
                                       self.detach_timeout, self.detach_attempts)
                if released:
                    self._book(change.command(live=True, config=False))
                else:
                    raise ApplyError(
                        'domain %s: the guest did not release %s within %d x %d s (its OS must support hot-unplug '
                        'and be running); the device is still attached to the running guest and its definition '
                        'was not changed' % (self.name, change.label, self.detach_attempts, self.detach_timeout))
        except ApplyError:
            raise
        except Exception as exc:  # a libvirt failure: say what is where
            raise ApplyError('domain %s: live %s of %s failed, the persistent definition was not changed: %s'
                             % (self.name, change.op, change.label, exc))

    def _attach_live(self, change, persistent):
        """Hot-plug where the persistent definition already has the device, if it has it; else where QEMU
        finds room, and give the persistent definition that same address."""
        element = copy.deepcopy(change.new)
        known = persistent.get(change.verify_key) if change.verify_key is not None else None
        if element.find('address') is None and known is not None and known.find('address') is not None:
            element.append(copy.deepcopy(known.find('address')))
        self._write('live attach', self.connection.attach_live, self.dom, _xml.to_string(element))
        self._book(change.command(live=True, config=False))
        planned = self.config_plan.change_for(change.verify_key) if self.config_plan is not None else None
        if planned is None or planned.new is None or planned.new.find('address') is not None:
            return
        plugged = _device_engine.locate(self.connection.xml(self.dom, inactive=False)).get(change.verify_key)
        if plugged is not None and plugged.find('address') is not None:
            planned.new.append(copy.deepcopy(plugged.find('address')))

    def restart(self, timeout):
        """Graceful shutdown and start, for restart=if_required."""
        if self.check_mode or not self.waiting:
            self.restarted = bool(self.waiting)
            return
        if not self._write('shutdown', self.connection.shutdown, self.dom, timeout):
            raise ApplyError('domain %s did not shut down within %d s for the restart its new devices need; '
                             'the definition is updated, the guest still runs' % (self.name, timeout))
        self.state_written = True
        self._write('start', self.connection.start, self.dom)
        self.restarted = True

    # -- failures -------------------------------------------------------------------------------------
    def fail(self, exc):
        """This guest failed: keep the message (naming the guest) and read what is really there now."""
        self.error = guest_message(self.name, exc)
        if self.check_mode or self.outcome != WRITTEN or self.dom is None or self.connection.lost:
            return
        try:
            inactive = self.apply_mode != 'live'
            self.after = _device_engine.gather(self.connection.xml(self.dom, inactive=inactive))
        except LibvirtFailure:
            self.after = None

    # -- reporting ------------------------------------------------------------------------------------
    def commands(self):
        """Planned commands in check mode; on a real run the ones that took effect (live and/or config)."""
        live_labels = {change.label for change in self.live_changes}
        config_changes = self.config_plan.changes if self.config_plan is not None else []
        planned = [change.command(live=change.label in live_labels) for change in config_changes]
        config_labels = {change.label for change in config_changes}
        planned += [change.command(live=True, config=False) for change in self.live_changes
                    if change.label not in config_labels]
        if self.check_mode:
            return planned
        done = {}
        for command in self.executed:
            flags = done.setdefault((command['op'], command['kind'], command['key']), {'live': False, 'config': False})
            flags['live'] = flags['live'] or command['live']
            flags['config'] = flags['config'] or command['config']
        return [dict(command, **done[(command['op'], command['kind'], command['key'])]) for command in planned
                if (command['op'], command['kind'], command['key']) in done]

    def result(self, compact=False):
        """Per-domain result. ``compact`` (a many-domain manifest) leaves the device lists out of domains that
        did not change: a host's no-change run then returns a few bytes per guest, not its whole inventory."""
        changed = self.reported_changed
        result = {'domain': self.name, 'changed': changed, 'outcome': self.outcome, 'commands': self.commands(),
                  'restart_required': bool(self.waiting), 'waiting_for_restart': self.waiting,
                  'restarted': self.restarted}
        if self.error is not None:
            result.update(failed=True, msg=self.error)
        elif self.skipped is not None:
            result['msg'] = 'not attempted: %s' % self.skipped
        shown = self.config_plan if self.config_plan is not None else self.live_plan
        if shown is None or (compact and not changed and self.error is None):
            return result
        result.update(before=shown.before, implicit=shown.implicit)
        if changed:  # as the network resource modules do: after only when something changed
            after = self._after(shown)
            if after is not None:
                result['after'] = after
        return result

    def _after(self, shown):
        """The devices after the run: predicted in check mode, read back on a real run, absent when unknown."""
        if self.check_mode or (self.error is None and self.outcome == WRITTEN):
            return shown.after
        return self.after  # a failure: what fail() read, None when the outcome is unknown

    def release(self):
        """Drop the XML trees once the domain's result is taken."""
        self.config_plan = self.live_plan = None
        self.inactive_xml = self.live_xml = self.readback = None

    def diff(self):
        shown = self.config_plan if self.config_plan is not None else self.live_plan
        if not self.reported_changed or shown is None or self.error is not None:
            return None
        return {'before_header': '%s devices' % self.name, 'after_header': '%s devices' % self.name,
                'before': shown.before_text + '\n', 'after': shown.after_text + '\n'}


def _describe_changes(changes):
    """'attach disk vdb (config[0]), ...': the devices a failed define was about."""
    return ', '.join('%s %s%s' % (change.op, change.label, ' (%s)' % change.item.where if change.item else '')
                     for change in changes)


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


def _assignment_keys(run):
    return {tuple(sorted((k, str(v)) for k, v in request.items() if k != 'where'))
            for request in _assignment_requests(run)}


# -- passthrough preflight (docs/host_devices.md) -----------------------------------------------------------

def _assignment_requests(run):
    """The host devices a run would give its guest: hostdevs and SR-IOV interfaces it adds or changes."""
    requests = []
    for plan in (run.config_plan, run.live_plan):
        for change in (plan.changes if plan is not None else ()):
            if change.op == 'detach':
                continue
            element = change.new
            where = change.item.where if change.item is not None else change.label
            kind = kind_of_element(element)
            spec = kind.parse(element) if kind is not None else {}
            if element.tag == 'hostdev' and spec.get('type') == 'pci' and spec.get('address'):
                requests.append({'type': 'pci', 'address': spec['address'], 'managed': spec.get('managed', True),
                                 'where': where})
            elif element.tag == 'hostdev' and spec.get('type') == 'usb':
                bus, _sep, device = (spec.get('address') or '').partition('.')
                requests.append({'type': 'usb', 'vendor': spec.get('vendor'), 'product': spec.get('product'),
                                 'bus': int(bus) if bus else None, 'device': int(device) if device else None,
                                 'where': where})
            elif element.tag == 'hostdev' and spec.get('type') == 'mdev':
                requests.append({'type': 'mdev', 'uuid': spec['uuid'], 'where': where})
            elif element.tag == 'interface' and 'hostdev' in spec.get('source', {}):
                requests.append({'type': 'sriov_vf', 'address': spec['source']['hostdev'], 'where': where})
    unique = {}
    for request in requests:  # the same device in the config and the live plan is one request
        unique.setdefault(tuple(sorted((k, str(v)) for k, v in request.items() if k != 'where')), request)
    return list(unique.values())


def preflight(connection, runs, host_root, force):
    """Check every host device the runs would assign, before anything is written.

    Returns (errors, warnings). Runs that assign nothing cost nothing: sysfs and the other domains are
    read only when some run adds or changes a passthrough device.
    """
    wanted = [(run, _assignment_requests(run)) for run in runs]
    if not any(requests for _run, requests in wanted):
        return [], []
    host = _host_pci.read_host(host_root)
    domains = []
    for dom in connection.domains():
        live = connection.xml(dom, inactive=False) if connection.is_active(dom) else None
        config = connection.xml(dom) if connection.is_persistent(dom) else None
        domains.append({'name': dom.name(), 'live_xml': live, 'config_xml': config})
    usage = _host_pci.usage_from_domains(domains)
    errors, warnings = [], []
    for run, requests in wanted:
        if not requests:
            continue
        check = _host_pci.check_assignment(host, requests, run.name, usage, force=force)
        run.refusals = list(check.errors)
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
