# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Binding PCI devices to vfio-pci (or pci-stub) and back to their host driver.

Plans are made before anything is written ("all checks first"), judged by the same guards as the report
(``guards.assess_pci``). Applying a list of devices is a transaction: a failure rolls back what was
already done, each device back to its original driver and ``driver_override``, and the rollback itself
is verified.

The kernel facts this relies on: ``driver_override`` + unbind + ``drivers_probe`` binds one device to one
driver, whatever other devices share its vendor:device. A bogus override + ``drivers_probe`` "succeeds" and
leaves the device without a driver: only the ``driver`` link tells, so every step is verified by reading it
back. Unbinding a device from vfio-pci while its group is open (a running guest) blocks in the kernel: the
processes holding ``/dev/vfio/<group>`` are looked up first.
"""

from __future__ import annotations

import re

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import guards, model, preflight
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import sysfs_writer


VFIO_DRIVER = 'vfio-pci'


STUB_DRIVER = 'pci-stub'


DRIVER_NAME_RE = re.compile(r'^[a-z0-9][a-z0-9_-]{0,63}$')


class BindFailure(sysfs_writer.PrepareError):
    """A device did not end up where it should (driverless after drivers_probe, another driver, a write
    that the kernel refused)."""


def check_driver_name(driver):
    """vfio-pci, pci-stub or a vfio-pci variant driver (``mlx5_vfio_pci``); ValueError otherwise."""
    if not isinstance(driver, str) or not DRIVER_NAME_RE.fullmatch(driver):
        raise ValueError('driver: %r is not a kernel driver name' % (driver,))
    if driver not in (VFIO_DRIVER, STUB_DRIVER) and not driver.endswith(('_vfio_pci', '-vfio-pci')):
        raise ValueError('driver: %r is not vfio-pci, pci-stub or a vfio-pci variant driver (NAME_vfio_pci)'
                         % driver)
    return driver


def module_of_driver(driver):
    return driver.replace('-', '_')


class DeviceAction:
    """What happens to one device: its state before, the state wanted, the steps between."""

    def __init__(self, address, label, requested, group, before, after):
        self.address = address
        self.label = label
        self.requested = requested
        self.group = group
        self.before = before  # {'driver', 'driver_override'}
        self.after = after

    @property
    def changed(self):
        return self.before != self.after

    def as_dict(self):
        return {'address': self.address, 'requested': self.requested, 'iommu_group': self.group,
                'before': dict(self.before), 'after': dict(self.after), 'changed': self.changed}


class BindPlan:
    def __init__(self):
        self.actions = []
        self.check = preflight.AssignmentCheck()
        self.need_driver_load = False

    @property
    def errors(self):
        return self.check.errors

    @property
    def warnings(self):
        return self.check.warnings

    @property
    def changed(self):
        return any(action.changed for action in self.actions)


def normalize_addresses(addresses, field='addresses'):
    """[(label, address)] for the user's list; ValueError naming the item for malformed ones."""
    if not addresses:
        raise ValueError('%s: give at least one PCI address' % field)
    result = []
    for index, text in enumerate(addresses):
        try:
            result.append(('%s[%d]' % (field, index), _ids.pci_text(text, None)))
        except ValueError as exc:
            raise ValueError('%s[%d]: %s' % (field, index, exc))
    return result


# findings that vfio_bind does not report as such: 'bind' is the work itself, 'vfio' (the vfio modules are
# not loaded) is handled by loading the driver
_BIND_IGNORED_GUARDS = ('bind', 'vfio')


def plan_bind(host, sysfs, addresses, driver=VFIO_DRIVER, whole_group=False, force=False):
    """Plan binding ``addresses`` (already normalized, ``[(label, address)]``) to ``driver``.

    With ``whole_group`` every endpoint of each device's IOMMU group is added (bridges are skipped: they
    stay with pcieport, which keeps the group viable). Each device goes through the guards of
    ``guards.assess_pci`` with the whole set as ``together``; ``force`` turns overridable errors into
    warnings. Nothing is written.
    """
    plan = BindPlan()
    wanted = []  # (label, address, requested)
    seen = {}
    for label, address in addresses:
        if address in seen:
            plan.check.add('%s (%s)' % (label, address), 'duplicate', 'the same device as %s' % seen[address], force)
            continue
        seen[address] = label
        wanted.append((label, address, True))
    if whole_group:
        for label, address, _requested in list(wanted):
            for member in host.bindable_peers(address):
                if member in seen:
                    continue
                seen[member] = label
                wanted.append(('%s (%s) whole_group member' % (label, address), member, False))
    together = [address for _label, address, _requested in wanted]
    for label, address, requested in wanted:
        shown = '%s (%s)' % (label, address) if requested else '%s %s' % (label, address)
        dev = host.pci.get(address)
        before = {'driver': dev.driver, 'driver_override': dev.driver_override} if dev is not None else None
        after = {'driver': driver, 'driver_override': driver}
        for finding in guards.assess_pci(host, address, together):
            severity = guards.IGNORE if finding.guard in _BIND_IGNORED_GUARDS else None
            if finding.guard == 'group' and whole_group:
                severity = guards.IGNORE  # cannot happen: the members are in together
            if finding.guard == 'group_open' and before == after:
                severity = guards.IGNORE  # already bound: nothing is unbound, a running guest may keep it
            plan.check.add(shown, finding.guard, finding.message, force, severity)
        if dev is None:
            continue
        plan.actions.append(DeviceAction(address, shown, requested, dev.iommu_group, before, after))
    if not sysfs.driver_registered(driver) and any(action.changed for action in plan.actions):
        plan.need_driver_load = True
    return plan


def plan_unbind(host, addresses, driver=VFIO_DRIVER, whole_group=False, host_driver=None):
    """Plan giving ``addresses`` back to their host drivers. Devices not on ``driver`` (and without an
    override for it) are left alone. A device whose IOMMU group is open (a running guest) is refused:
    the kernel would block in the unbind."""
    plan = BindPlan()
    wanted = []
    seen = set()
    for label, address in addresses:
        if address in seen:
            continue
        seen.add(address)
        wanted.append(('%s (%s)' % (label, address), address, True))
    if whole_group:
        for label, address, _requested in list(wanted):
            for member in host.bindable_peers(address):
                if member in seen:
                    continue
                seen.add(member)
                wanted.append(('%s whole_group member %s' % (label, member), member, False))
    for label, address, requested in wanted:
        dev = host.pci.get(address)
        if dev is None:
            plan.check.add(label, 'exists', 'there is no PCI device %s on this host (not under /sys/bus/pci/devices)'
                           % address, False)
            continue
        on_driver = dev.driver == driver or dev.driver_override == driver
        before = {'driver': dev.driver, 'driver_override': dev.driver_override}
        if on_driver:
            after = {'driver': host_driver, 'driver_override': None}
            users = host.open_by(dev.iommu_group)
            if users:
                plan.check.add(label, 'group_open', 'IOMMU group %s is held open by %s: a running guest uses it; stop '
                               'it first (unbinding now would hang in the kernel)'
                               % (dev.iommu_group, model.describe_users(users)), False)
        else:
            after = dict(before)
        plan.actions.append(DeviceAction(address, label, requested, dev.iommu_group, before, after))
    return plan


class DriverTransaction:
    """Applies device actions one by one; ``rollback()`` puts every touched device back as it was."""

    def __init__(self, sysfs, timeout=5.0, load_host_module=None):
        self.sysfs = sysfs
        self.timeout = timeout
        self.load_host_module = load_host_module  # callable(address) -> None, root / only
        self.touched = []  # (address, before)

    def bind(self, action, driver):
        sysfs, address = self.sysfs, action.address
        self.touched.append((address, dict(action.before)))
        current = sysfs.driver(address)
        if sysfs.override(address) != driver:
            sysfs.write(sysfs.device(address) + '/driver_override', driver)
        if current != driver:
            if current is not None:
                sysfs.write('sys/bus/pci/drivers/%s/unbind' % current, address)
            sysfs.write('sys/bus/pci/drivers_probe', address)
        if sysfs.dry_run:
            return
        final = sysfs.wait_driver(address, lambda found: found == driver, self.timeout)
        if final != driver:
            if final is None:
                raise BindFailure('%s: after driver_override=%s and drivers_probe the device has no driver at all '
                                  '(the kernel reports success for a probe that bound nothing; check dmesg for why '
                                  '%s refused it)' % (action.label, driver, driver))
            raise BindFailure('%s: after driver_override=%s and drivers_probe the device is bound to %s'
                              % (action.label, driver, final))

    def unbind(self, action, driver, host_driver=None):
        sysfs, address = self.sysfs, action.address
        self.touched.append((address, dict(action.before)))
        if sysfs.override(address) is not None:
            sysfs.write(sysfs.device(address) + '/driver_override', '\n')
        current = sysfs.driver(address)
        if current is not None:
            sysfs.write('sys/bus/pci/drivers/%s/unbind' % current, address)
        if self.load_host_module is not None and not sysfs.dry_run:
            self.load_host_module(address)
        if sysfs.dry_run or sysfs.driver(address) is None:
            sysfs.write('sys/bus/pci/drivers_probe', address)
        if sysfs.dry_run:
            return None
        final = sysfs.wait_driver(address, lambda found: found is not None, self.timeout)
        if final == driver or (host_driver and final != host_driver):
            raise BindFailure('%s: after clearing driver_override and drivers_probe the device is bound to %s, not %s'
                              % (action.label, final or 'no driver', host_driver or 'its host driver'))
        return final

    def rollback(self):
        """Undo in reverse order; returns ``(restored, problems)``: lists of addresses and messages."""
        sysfs = self.sysfs
        restored, problems = [], []
        for address, before in reversed(self.touched):
            try:
                self._restore(address, before)
                restored.append(address)
            except sysfs_writer.PrepareError as exc:
                problems.append(str(exc))
        self.touched = []
        return restored, problems

    def _restore(self, address, before):
        sysfs = self.sysfs
        if not sysfs.exists(address):
            raise sysfs_writer.PrepareError('%s: cannot be restored: it is gone from /sys/bus/pci/devices' % address)
        current = sysfs.driver(address)
        if current != before['driver']:
            if current is not None:
                sysfs.write('sys/bus/pci/drivers/%s/unbind' % current, address)
            if sysfs.override(address) != before['driver_override']:
                sysfs.write(sysfs.device(address) + '/driver_override', before['driver_override'] or '\n')
            if before['driver'] is not None:
                try:
                    sysfs.write('sys/bus/pci/drivers/%s/bind' % before['driver'], address)
                except sysfs_writer.PrepareError:
                    sysfs.write('sys/bus/pci/drivers_probe', address)
        elif sysfs.override(address) != before['driver_override']:
            sysfs.write(sysfs.device(address) + '/driver_override', before['driver_override'] or '\n')
        if sysfs.dry_run:
            return
        final = sysfs.wait_driver(address, lambda found: found == before['driver'], self.timeout)
        if final != before['driver']:
            raise sysfs_writer.PrepareError('%s: rollback left it on %s instead of %s'
                                            % (address, final or 'no driver', before['driver'] or 'no driver'))


def run_actions(transaction, plan, state, driver, host_driver=None):
    """Apply the changed actions of ``plan`` through ``transaction``; returns ``{address: final driver}``.
    On a failure the caller rolls back (``rollback_message``)."""
    final = {}
    for action in plan.actions:
        if not action.changed:
            continue
        if state == 'bound':
            transaction.bind(action, driver)
            final[action.address] = driver
        else:
            final[action.address] = transaction.unbind(action, driver, host_driver)
    return final


def rollback_message(exc, transaction):
    """Roll ``transaction`` back and say what happened, for the error message."""
    restored, problems = transaction.rollback()
    message = '%s; rolled back: %s' % (exc, ', '.join(restored) if restored else 'nothing had been changed')
    if problems:
        message += '; ROLLBACK PROBLEMS: %s' % '; '.join(problems)
    return message, restored, problems
