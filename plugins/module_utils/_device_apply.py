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

import copy
import time

from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine, _host_pci, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import (
    PASSTHROUGH, element_class, kind_of_element,
)
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import LibvirtFailure

APPLY_MODES = ('auto', 'config', 'live', 'both')
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


def removal_class(element):
    """'disk' or 'passthrough' when removing the element from a running guest needs consent, else None."""
    if element.tag == 'disk':
        return 'disk'
    return 'passthrough' if element_class(element) == PASSTHROUGH else None


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
    domain = _xml.parse(domain_xml, 'domain XML')
    found = domain.find('metadata/{%s}restart' % RESTART_NS)
    return dict(found.attrib) if found is not None else None


class DomainRun:
    """Plan and apply one domain's declared devices."""

    def __init__(self, connection, name, declared, state, apply_mode, check_mode, detach_timeout=30,
                 detach_attempts=3, allow_live_removal=()):
        self.connection = connection
        self.name = name
        self.declared = declared
        self.state = state
        self.apply_mode = apply_mode
        self.check_mode = check_mode
        self.detach_timeout = detach_timeout
        self.detach_attempts = detach_attempts
        self.allow_live_removal = tuple(allow_live_removal or ())
        self.dom = None
        self.active = False
        self.guest_state = None      # running, paused, shutoff, ...: as found, then as the run leaves it
        self.config_plan = None
        self.live_plan = None
        self.inactive_xml = None
        self.readback = None
        self.record = None           # a shutdown an earlier run requested and did not see through
        self.live_changes = []       # the changes planned for the running guest (fixed when planned)
        self.outcomes = {}           # id(live change) -> DONE, PENDING, FAILED, BLOCKED, WITHHELD or SKIPPED
        self.reasons = {}            # id(live change) -> why it did not happen live
        self.warnings = []
        self.defined = False         # the definition was written
        self.restarted = False
        self.shutdown_pending = False
        self.written = False   # something of this domain was changed (reported even when a later step fails)

    # -- planning (reads only) ------------------------------------------------------------------
    def prepare(self):
        self.dom = self.connection.lookup(self.name)
        self.active = self.connection.is_active(self.dom)
        self.guest_state = self.connection.state(self.dom) if self.active else 'shutoff'
        if self.apply_mode in ('live', 'both') and not self.running:
            raise ApplyError('domain %s is %s: apply=%s changes a running guest (use apply=auto or config to '
                             'change only its definition)' % (self.name, self.guest_state.replace('_', ' '),
                                                               self.apply_mode))
        if self.apply_mode != 'live':
            self.inactive_xml = self.connection.xml(self.dom)
            self.config_plan = _device_engine.plan(self.inactive_xml, self.declared, self.state)
            self.record = restart_record(self.inactive_xml)
        if self.active:
            self.live_plan = _device_engine.plan(self.connection.xml(self.dom, inactive=False), self.declared,
                                                 self.state)
            self._withhold_destructive_removals()
            if self.config_plan is not None:
                self._persist_at_live_addresses()
        self.live_changes = self._live_steps()
        if self.active and not self.running and self.apply_mode == 'auto' and self.live_plan.changes:
            # a paused guest answers no hot-plug request until it resumes: nothing to wait for now
            self.warnings.append('domain %s is %s: only its definition is changed; the running guest keeps %s until '
                                 'it runs again and a later run, or its restart, brings it in line'
                                 % (self.name, self.guest_state.replace('_', ' '),
                                    ', '.join(change.label for change in self.live_plan.changes)))
        if self.apply_mode in ('live', 'both'):
            cold = [change.label for change in self.live_plan.changes if not change.hotpluggable()]
            if cold:
                raise ApplyError('domain %s: %s cannot be changed on the running guest; use apply=auto (persist '
                                 'and restart later) or apply=config' % (self.name, ', '.join(cold)))
            withheld = [change.label for change in self.live_plan.changes if self.outcomes.get(id(change)) == WITHHELD]
            if withheld:
                raise ApplyError('domain %s: removing %s from the running guest needs allow_live_removal (%s); '
                                 'nothing was changed' % (self.name, ', '.join(withheld),
                                                          ', '.join(LIVE_REMOVAL_CLASSES)))
        return self

    @property
    def running(self):
        """Only a running guest answers hot-plug and shutdown requests (a paused one holds them)."""
        return self.active and self.guest_state == 'running'

    def _withhold_destructive_removals(self):
        for change in self.live_plan.changes:
            if change.op != 'detach':
                continue
            needed = removal_class(change.old)
            if needed is not None and needed not in self.allow_live_removal:
                self.outcomes[id(change)] = WITHHELD
                self.reasons[id(change)] = 'removing a %s from a running guest needs allow_live_removal: [%s]' % (
                    'disk' if needed == 'disk' else 'passthrough device', needed)

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
            if change.item.mac_derived and live.find('mac') is not None and change.new.find('mac') is not None:
                change.new.find('mac').set('address', live.find('mac').get('address'))
                change.verify_key = _device_engine.identity(change.new)
            address = live.find('address')
            if change.new.find('address') is not None or address is None:
                continue
            holder = holder_of(address, devices, besides=change.new)
            if holder is None:
                change.new.append(copy.deepcopy(address))
            else:
                self.warnings.append('domain %s: %s is at %s on the running guest, where the definition has %s; it '
                                     'gets another address in the definition and moves at the next boot'
                                     % (self.name, change.label, dict(address.attrib),
                                        _device_engine.describe_key(_device_engine.identity(holder) or ('',))))

    def _live_steps(self):
        """Changes to make on the running guest: hot-pluggable ones not withheld (none on a paused guest)."""
        if self.live_plan is None or self.apply_mode == 'config' or not self.running:
            return []
        return [change for change in self.live_plan.changes
                if change.hotpluggable() and self.outcomes.get(id(change)) != WITHHELD]

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
        (a pending unplug may still complete by itself)."""
        if self.live_plan is None or self.restarted or not self.active:
            return []
        return [change.label for change in self.live_plan.changes if self._live_outcome(change) != DONE]

    @property
    def pending_unplug(self):
        """Devices the guest was asked to release and still holds (none once it restarted or stopped)."""
        if self.live_plan is None or self.restarted or not self.active:
            return []
        return [change.label for change in self.live_plan.changes if self.outcomes.get(id(change)) == PENDING]

    @property
    def changed(self):
        if self.check_mode:
            return bool((self.config_plan and self.config_plan.changed) or self.live_changes or self.restarted)
        return self.written

    # -- writing ------------------------------------------------------------------------------------
    def apply(self):
        """Running guest first, then the definition, written as declared whatever the guest did."""
        if self.check_mode:
            return self
        if self.live_changes:
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
        elif self.apply_mode == 'live' and self.written:
            self.live_plan.after = _device_engine.gather(self.connection.xml(self.dom, inactive=False))
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

    def _define(self):
        original = self.inactive_xml  # hot-plugging does not touch the persistent definition
        live_done = [change.label for change in self.live_changes if self.outcomes.get(id(change)) == DONE]
        if self.connection.find(self.dom.UUIDString()) is None:
            raise ApplyError('domain %s disappeared while the task ran; nothing was written%s'
                             % (self.name, self._live_note(live_done)))
        try:
            self.connection.define(self.config_plan.new_xml)
        except LibvirtFailure as exc:
            raise ApplyError('%s; the definition of %s was not changed%s'
                             % (exc, self.name, self._live_note(live_done)))
        self.written = self.defined = True
        self.readback = self.connection.xml(self.dom)
        problems = _device_engine.verify(self.config_plan, self.readback)
        if problems:
            # leave the definition as we found it rather than half-applied
            self.connection.define(original)
            self.defined = False
            self.written = bool(live_done)
            raise ApplyError('libvirt did not keep the requested devices of %s, the definition was restored: %s%s'
                             % (self.name, '; '.join(problems), self._live_note(live_done)))
        # report what libvirt really kept (it adds controllers and addresses the prediction cannot know)
        self.config_plan.after = _device_engine.gather(self.readback)

    @staticmethod
    def _live_note(live_done):
        if not live_done:
            return ''
        return ' (the running guest was changed already: %s)' % ', '.join(live_done)

    def _apply_live(self, change, persistent):
        try:
            if change.op == 'attach':
                self._attach_live(change, persistent)
            elif change.op == 'update':
                self.connection.update_live(self.dom, _xml.to_string(change.new))
                self._done(change)
            else:
                alias = change.old.find('alias')
                outcome = self.connection.detach_live(
                    self.dom, _xml.to_string(change.old), alias.get('name') if alias is not None else None,
                    self.detach_timeout, self.detach_attempts)
                if outcome == 'released':
                    self._done(change)
                elif outcome == 'guest_off':
                    self._guest_stopped(change)
                else:
                    self.outcomes[id(change)] = PENDING
        except LibvirtFailure as exc:
            if not self.connection.is_active(self.dom):
                self._guest_stopped(change)
                return
            self.outcomes[id(change)] = FAILED
            self.reasons[id(change)] = 'live %s failed: %s' % (change.op, exc)

    def _done(self, change):
        self.outcomes[id(change)] = DONE
        self.written = True

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
        self.connection.attach_live(self.dom, _xml.to_string(element))
        self._done(change)
        planned = self.config_plan.change_for(change.verify_key) if self.config_plan is not None else None
        if planned is None or planned.new is None or planned.new.find('address') is not None:
            return
        plugged = _device_engine.locate(self.connection.xml(self.dom, inactive=False)).get(change.verify_key)
        if plugged is None or plugged.find('address') is None:
            return
        devices = _device_engine.device_elements(_device_engine.devices_of(self.config_plan.tree))
        holder = holder_of(plugged.find('address'), devices, besides=planned.new)
        if holder is None:
            planned.new.append(copy.deepcopy(plugged.find('address')))
        else:
            self.warnings.append('domain %s: %s was hot-plugged at %s, which the definition gives to another '
                                 'device; it gets another address in the definition and moves at the next boot'
                                 % (self.name, change.label, dict(plugged.find('address').attrib)))

    # -- restarts the module owns ---------------------------------------------------------------------
    def restart(self, wanted, timeout):
        """Restart when changes wait for it (``wanted``: restart=if_required), and finish a restart an earlier
        run began: a guest that went off after our shutdown request is started whatever ``restart`` says."""
        if not self.active:
            if self.record is not None:
                self._start_again()
            return
        if not self.running or self.apply_mode == 'live':
            if self.record is not None:
                self.shutdown_pending = True
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
        self.connection.request_shutdown(self.dom)
        if not self.connection.wait_shutoff(self.dom, timeout):
            self.shutdown_pending = True
            raise ApplyError(
                'domain %s did not power off within %d s of the shutdown request for the restart its devices need '
                '(restart_timeout); the definition is updated, the guest still runs and the shutdown stays pending: '
                'the next run of this module starts the guest if it is off by then (recorded in its metadata)'
                % (self.name, timeout))
        self.active = False
        self.guest_state = 'shutoff'
        self._start_again()

    def start_if_ours(self):
        """After a failure elsewhere in the run: a guest that is off because of our shutdown request is started."""
        if self.record is not None and not self.restarted and not self.check_mode \
                and not self.connection.is_active(self.dom):
            self._start_again()

    def _start_again(self):
        if self.check_mode:
            self.restarted = True
            return
        try:
            self.connection.start(self.dom)
        except LibvirtFailure as exc:
            if self.record is None:
                self._set_record({'requested': 'unknown', 'timeout': '0'})
            raise ApplyError('domain %s is off after the shutdown this module requested and did not start again: %s; '
                             'the next run of this module tries again' % (self.name, exc))
        self.active, self.guest_state = True, 'running'
        self.restarted = self.written = True
        self._set_record(None)
        self.shutdown_pending = False

    def _set_record(self, attributes):
        """Write (or remove, with None) the pending-shutdown record; it is in the definition, so it outlives
        the guest stopping, and in the running guest's XML while it runs."""
        element = None
        if attributes is not None:
            record = _xml.new_element('restart', attributes)
            element = _xml.to_string(record)
        self.connection.set_metadata(self.dom, RESTART_PREFIX, RESTART_NS, element, live=self.active)
        self.record = attributes

    # -- reporting ------------------------------------------------------------------------------------
    def _commands(self):
        config_changes = self.config_plan.changes if self.config_plan is not None else []
        live_by_key = {}
        for change in self.live_plan.changes if self.live_plan is not None else ():
            live_by_key[change.label] = change
        config_done = self.defined or (self.check_mode and self.apply_mode != 'live')
        commands = []
        for change in config_changes:
            live = live_by_key.get(change.label)
            commands.append(self._command(change, live, config_done))
        config_labels = {change.label for change in config_changes}
        for change in live_by_key.values():
            if change.label not in config_labels and (self._live_outcome(change) is not None):
                commands.append(self._command(change, change, False))
        return commands

    def _command(self, change, live, config):
        command = change.command(live=live is not None and self._live_outcome(live) == DONE, config=config)
        if live is not None and live.op == 'detach' and self.active and removal_class(live.old) is not None:
            command['destructive'] = True
        return command

    def result(self, compact=False):
        """Per-domain result. ``compact`` (a many-domain manifest) leaves the device lists out of domains that
        did not change: a host's no-change run then returns a few bytes per guest, not its whole inventory."""
        waiting = self.waiting
        common = {'domain': self.name, 'changed': self.changed, 'restart_required': bool(waiting),
                  'waiting_for_restart': waiting, 'pending_unplug': self.pending_unplug, 'restarted': self.restarted,
                  'shutdown_pending': self.shutdown_pending, 'guest_state': self.guest_state}
        if compact and not self.changed:
            common['commands'] = []
            return common
        shown = self.config_plan if self.config_plan is not None else self.live_plan
        result = dict(common, before=shown.before, commands=self._commands(), implicit=shown.implicit)
        if self.changed:  # as the network resource modules do: after only when something changed
            result['after'] = shown.after
        return result

    def release(self):
        """Drop the XML trees once the domain's result is taken."""
        self.config_plan = self.live_plan = None
        self.inactive_xml = self.readback = None

    def diff(self):
        shown = self.config_plan if self.config_plan is not None else self.live_plan
        if not self.changed or shown is None:
            return None
        notes = []
        for change in self.live_plan.changes if self.live_plan is not None and self.active else ():
            if change.op != 'detach' or removal_class(change.old) is None:
                continue
            if self.outcomes.get(id(change)) == WITHHELD:
                notes.append('<!-- %s: removed from the definition only, it stays on the running guest until its '
                             'next restart (allow_live_removal: [%s] hot-unplugs it) -->'
                             % (change.label, removal_class(change.old)))
            else:
                notes.append('<!-- %s: hot-unplugged from the running guest (destructive, allowed by '
                             'allow_live_removal) -->' % change.label)
        after = '\n'.join(notes + [shown.after_text])
        return {'before_header': '%s devices' % self.name, 'after_header': '%s devices' % self.name,
                'before': shown.before_text + '\n', 'after': after + '\n'}


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
