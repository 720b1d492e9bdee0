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

import copy

from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine, _host_pci, _ids, _schema, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import LibvirtFailure

APPLY_MODES = ('auto', 'config', 'live', 'both')


class ApplyError(Exception):
    """The declaration cannot be applied as asked; the message says what was and was not written."""


class DomainRun:
    """Plan and apply one domain's declared devices."""

    def __init__(self, connection, name, declared, state, apply_mode, check_mode, detach_timeout=20,
                 detach_attempts=3):
        self.connection = connection
        self.name = name
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
        self.inactive_xml = None
        self.readback = None
        self.restarted = False
        self.written = False   # something of this domain was changed (reported even when a later step fails)

    # -- planning (reads only) ------------------------------------------------------------------
    def prepare(self):
        self.dom = self.connection.lookup(self.name)
        self.active = self.connection.is_active(self.dom)
        if self.apply_mode in ('live', 'both') and not self.active:
            raise ApplyError('domain %s is not running: apply=%s changes a running guest (use apply=auto or '
                             'config to change only its definition)' % (self.name, self.apply_mode))
        if self.apply_mode != 'live':
            self.inactive_xml = self.connection.xml(self.dom)
            self.config_plan = _device_engine.plan(self.inactive_xml, self.declared, self.state)
        if self.active:
            self.live_plan = _device_engine.plan(self.connection.xml(self.dom, inactive=False), self.declared,
                                                 self.state)
        if self.apply_mode in ('live', 'both'):
            cold = [change.label for change in self.live_plan.changes if not change.hotpluggable()]
            if cold:
                raise ApplyError('domain %s: %s cannot be changed on the running guest; use apply=auto (persist '
                                 'and restart later) or apply=config' % (self.name, ', '.join(cold)))
        return self

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
        return bool((self.config_plan and self.config_plan.changed) or self.live_changes)

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
        original = self.inactive_xml  # hot-plugging does not touch the persistent definition
        if self.connection.find(self.dom.UUIDString()) is None:
            raise ApplyError('domain %s disappeared while the task ran; nothing was written' % self.name)
        try:
            self.connection.define(self.config_plan.new_xml)
        except LibvirtFailure as exc:  # a schema rejection is told per device and option (_schema)
            explained = _schema.explain_plan(self.name, self.config_plan, str(exc))
            if explained:
                raise ApplyError(explained) from exc
            raise
        self.written = True
        self.readback = self.connection.xml(self.dom)
        problems = _device_engine.verify(self.config_plan, self.readback)
        if problems:
            # leave the domain as we found it rather than half-applied
            self.connection.define(original)
            self.written = bool(self.live_changes)
            raise ApplyError('libvirt did not keep the requested devices of %s, the definition was restored: %s'
                             % (self.name, '; '.join(problems)))
        # report what libvirt really kept (it adds controllers and addresses the prediction cannot know)
        self.config_plan.after = _device_engine.gather(self.readback)

    def _apply_live(self, change, persistent):
        try:
            if change.op == 'attach':
                self._attach_live(change, persistent)
            elif change.op == 'update':
                self.connection.update_live(self.dom, _xml.to_string(change.new))
                self.written = True
            else:
                alias = change.old.find('alias')
                released = self.connection.detach_live(
                    self.dom, _xml.to_string(change.old), alias.get('name') if alias is not None else None,
                    self.detach_timeout, self.detach_attempts)
                self.written = self.written or released
                if not released:
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
        self.connection.attach_live(self.dom, _xml.to_string(element))
        self.written = True
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
        if not self.connection.shutdown(self.dom, timeout):
            raise ApplyError('domain %s did not shut down within %d s for the restart its new devices need; '
                             'the definition is updated, the guest still runs' % (self.name, timeout))
        self.connection.start(self.dom)
        self.restarted = self.written = True

    # -- reporting ------------------------------------------------------------------------------------
    def result(self, compact=False):
        """Per-domain result. ``compact`` (a many-domain manifest) leaves the device lists out of domains that
        did not change: a host's no-change run then returns a few bytes per guest, not its whole inventory."""
        if compact and not self.changed:
            return {'domain': self.name, 'changed': False, 'commands': [], 'restart_required': bool(self.waiting),
                    'waiting_for_restart': self.waiting, 'restarted': self.restarted}
        live_labels = {change.label for change in self.live_changes}
        config_changes = self.config_plan.changes if self.config_plan is not None else []
        commands = [change.command(live=change.label in live_labels) for change in config_changes]
        config_labels = {change.label for change in config_changes}
        commands += [change.command(live=True, config=False) for change in self.live_changes
                     if change.label not in config_labels]
        shown = self.config_plan if self.config_plan is not None else self.live_plan
        result = {'domain': self.name, 'changed': self.changed, 'before': shown.before, 'commands': commands,
                  'implicit': shown.implicit, 'restart_required': bool(self.waiting),
                  'waiting_for_restart': self.waiting, 'restarted': self.restarted}
        if self.changed:  # as the network resource modules do: after only when something changed
            result['after'] = shown.after
        return result

    def release(self):
        """Drop the XML trees once the domain's result is taken."""
        self.config_plan = self.live_plan = None
        self.inactive_xml = self.readback = None

    def diff(self):
        shown = self.config_plan if self.config_plan is not None else self.live_plan
        if not self.changed:
            return None
        return {'before_header': '%s devices' % self.name, 'after_header': '%s devices' % self.name,
                'before': shown.before_text + '\n', 'after': shown.after_text + '\n'}


# -- passthrough preflight (docs/host_devices.md) -----------------------------------------------------------

def _assignment_requests(run):
    """The host devices a run would give its guest: hostdevs and SR-IOV interfaces it adds or changes, typed
    or raw XML alike, their addresses read the way libvirt reads them (``_host_pci.requests_of_element``;
    an address that cannot be read raises IdError, which refuses the run)."""
    requests = []
    for plan in (run.config_plan, run.live_plan):
        for change in (plan.changes if plan is not None else ()):
            if change.op != 'detach':
                where = change.item.where if change.item is not None else change.label
                requests.extend(_host_pci.requests_of_element(change.new, where))
    unique = {}
    for request in requests:  # the same device in the config and the live plan is one request
        unique.setdefault(tuple(sorted((k, str(v)) for k, v in request.items() if k != 'where')), request)
    return list(unique.values())


def preflight(connection, runs, host_root, force):
    """Check every host device the runs would assign, before anything is written.

    Returns (errors, warnings). Runs that assign nothing cost nothing: sysfs and the other domains are
    read only when some run adds or changes a passthrough device.
    """
    wanted, unreadable = [], []
    for run in runs:
        try:
            wanted.append((run, _assignment_requests(run)))
        except _ids.IdError as exc:  # a guard is never skipped because an address was not understood
            unreadable.append('domain %s: %s [guard address]' % (run.name, exc))
    if unreadable:
        return unreadable, []
    if not any(requests for _run, requests in wanted):
        return [], []
    host = _host_pci.read_host(host_root)
    domains = []
    for dom in connection.domains():
        live = connection.xml(dom, inactive=False) if connection.is_active(dom) else None
        config = connection.xml(dom) if connection.is_persistent(dom) else None
        domains.append({'name': dom.name(), 'live_xml': live, 'config_xml': config})
    try:
        usage = _host_pci.usage_from_domains(domains)
    except ValueError as exc:  # another guest's XML we cannot read: its devices cannot be ruled out
        return ['cannot tell which host devices other domains use: %s' % exc], []
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
