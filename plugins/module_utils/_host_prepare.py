# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The write side of host preparation: vfio-pci binding, SR-IOV VF counts, mediated devices, boot files.

Everything is read and written below a ``root`` (``/`` on a real host, a fixture tree in tests), through
``_host_pci.SysRoot`` so symlinks never lead out of it. No Ansible and no libvirt here: the modules
(``vfio_bind``, ``sriov_vfs``, ``mdev``) plan with the pure functions, then apply through ``Sysfs``,
whose single primitive ``write_attribute`` is what a test replaces with a simulated kernel.

Plans are made before anything is written ("all checks first"); applying a list of devices is a
transaction: a failure rolls back what was already done, each device back to its original driver and
``driver_override``, and the rollback itself is verified.

The kernel facts this relies on:

- ``driver_override`` + unbind + ``drivers_probe`` binds one device to one driver, whatever other devices
  share its vendor:device. A bogus override + ``drivers_probe`` "succeeds" and leaves the device without
  a driver: only the ``driver`` link tells, so every step is verified by reading it back.
- Unbinding a device from vfio-pci while its group is open (a running guest) blocks in the kernel: the
  processes holding ``/dev/vfio/<group>`` are looked up first.
- ``sriov_numvfs`` refuses to go from one non-zero count to another (EBUSY): it goes through 0.
- ``mdev_supported_types/<type>/create`` takes a UUID; ``<mdev>/remove`` takes ``1``.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
import tempfile
import time

from ansible_collections.virtdev.libvirt.plugins.module_utils import _host_pci, _host_root, _ids, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._host_pci import (
    AssignmentCheck, IGNORE, SysRoot, UUID_RE, assess_pci, normalize_pci_address)

MANAGED_BY = 'Managed by virtdev.libvirt'
VFIO_DRIVER = 'vfio-pci'
STUB_DRIVER = 'pci-stub'
DRIVER_NAME_RE = re.compile(r'^[a-z0-9][a-z0-9_-]{0,63}$')
IFNAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}$')

# persistence files (paths below root)
UDEV_VFIO_RULES = '/etc/udev/rules.d/40-virtdev-vfio-pci.rules'
MODPROBE_VFIO_CONF = '/etc/modprobe.d/virtdev-vfio.conf'
INITRAMFS_TOOLS_HOOK = '/etc/initramfs-tools/hooks/virtdev-vfio'
DRACUT_CONF = '/etc/dracut.conf.d/virtdev-vfio.conf'
SRIOV_RULES_DIR = '/etc/udev/rules.d'
MDEVCTL_DIR = '/etc/mdevctl.d'

# kernel modules the initramfs needs for vfio-pci; vfio_virqfd only where the kernels still ship it
VFIO_INITRAMFS_MODULES = ('vfio', 'vfio_iommu_type1', 'vfio_pci')
VFIO_VIRQFD = 'vfio_virqfd'


class PrepareError(Exception):
    """A step failed; ``str()`` is the message for the user."""


class BindFailure(PrepareError):
    """A device did not end up where it should (driverless after drivers_probe, another driver, a write
    that the kernel refused)."""


# -- the one place that writes to sysfs ---------------------------------------------------------------

def write_attribute(path, value):
    """Write ``value`` to a sysfs attribute in one write(2), as ``echo value > path`` does.

    Nothing is created: a missing attribute is an error. Tests replace this function with a simulated
    kernel (``tests/unit/sysfs_trees.FakeKernel``).
    """
    fd = os.open(path, os.O_WRONLY | getattr(os, 'O_NOFOLLOW', 0))
    try:
        os.write(fd, value.encode('utf-8'))
    finally:
        os.close(fd)


def _os_error(exc):
    name = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else 'error'
    return '%s (%s)' % (exc.strerror or exc, name)


class Sysfs:
    """Reads and writes of sysfs/procfs below ``root``; every write is recorded in ``writes``."""

    def __init__(self, root='/', dry_run=False):
        self.sysroot = SysRoot(root)
        self.root = self.sysroot.root
        self.dry_run = dry_run
        self.writes = []

    def full(self, relative):
        """The full path of ``relative`` with every link resolved inside root (the last part need not
        exist); PrepareError naming the path when it cannot stay inside root."""
        return under(self.root, '/' + relative.lstrip('/'))

    def write(self, relative, value):
        full = self.full(relative)  # refused before it is recorded or written when it leaves root
        self.writes.append({'path': '/' + relative.lstrip('/'), 'value': value})
        if self.dry_run:
            return
        try:
            write_attribute(full, value)
        except OSError as exc:
            raise PrepareError('writing %r to /%s failed: %s' % (value.strip(), relative.lstrip('/'), _os_error(exc)))

    def read(self, relative):
        return self.sysroot.read(relative)

    def device(self, address):
        return 'sys/bus/pci/devices/' + address

    def exists(self, address):
        return self.sysroot.resolve(self.device(address)) is not None

    def driver(self, address):
        link = self.device(address) + '/driver'
        if not self.sysroot.islink(link) or self.sysroot.resolve(link) is None:
            return None
        return os.path.basename((self.sysroot.readlink(link) or '').rstrip('/')) or None

    def override(self, address):
        value = self.read(self.device(address) + '/driver_override')
        return None if value in (None, '', '(null)') else value

    def group(self, address):
        resolved = self.sysroot.resolve(self.device(address) + '/iommu_group')
        name = os.path.basename(resolved) if resolved else None
        return int(name) if name and name.isdigit() else None

    def driver_registered(self, driver):
        return self.sysroot.isdir('sys/bus/pci/drivers/' + driver)

    def wait_driver(self, address, wanted, timeout, settle=None):
        """Poll the driver link until ``wanted(driver)`` holds or ``timeout`` passes; return the driver."""
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            current = self.driver(address)
            if wanted(current) or time.monotonic() >= deadline:
                return current
            time.sleep(0.05 if settle is None else settle)


# -- who holds a vfio group open: one reading, in _host_pci ------------------------------------------------

vfio_group_users = _host_pci.vfio_group_users
describe_users = _host_pci.describe_users


# -- vfio_bind: plan --------------------------------------------------------------------------------------

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
        self.check = AssignmentCheck()
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
            result.append(('%s[%d]' % (field, index), normalize_pci_address(text)))
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
    ``_host_pci.assess_pci`` with the whole set as ``together``; ``force`` turns overridable errors into
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
        for finding in assess_pci(host, address, together):
            severity = IGNORE if finding.guard in _BIND_IGNORED_GUARDS else None
            if finding.guard == 'group' and whole_group:
                severity = IGNORE  # cannot happen: the members are in together
            if finding.guard == 'group_open' and before == after:
                severity = IGNORE  # already bound: nothing is unbound, a running guest may keep it
            plan.check.add(shown, finding.guard, finding.message, force, severity)
        if dev is None:
            continue
        plan.actions.append(DeviceAction(address, shown, requested, dev.iommu_group, before, after))
    if not sysfs.driver_registered(driver) and any(action.changed for action in plan.actions):
        plan.need_driver_load = True
    return plan


def plan_unbind(host, sysfs, addresses, driver=VFIO_DRIVER, whole_group=False, host_driver=None):
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
                               % (dev.iommu_group, describe_users(users)), False)
        else:
            after = dict(before)
        plan.actions.append(DeviceAction(address, label, requested, dev.iommu_group, before, after))
    return plan


# -- vfio_bind: apply ---------------------------------------------------------------------------------------

class Transaction:
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
            except PrepareError as exc:
                problems.append(str(exc))
        self.touched = []
        return restored, problems

    def _restore(self, address, before):
        sysfs = self.sysfs
        if not sysfs.exists(address):
            raise PrepareError('%s: cannot be restored: it is gone from /sys/bus/pci/devices' % address)
        current = sysfs.driver(address)
        if current != before['driver']:
            if current is not None:
                sysfs.write('sys/bus/pci/drivers/%s/unbind' % current, address)
            if sysfs.override(address) != before['driver_override']:
                sysfs.write(sysfs.device(address) + '/driver_override', before['driver_override'] or '\n')
            if before['driver'] is not None:
                try:
                    sysfs.write('sys/bus/pci/drivers/%s/bind' % before['driver'], address)
                except PrepareError:
                    sysfs.write('sys/bus/pci/drivers_probe', address)
        elif sysfs.override(address) != before['driver_override']:
            sysfs.write(sysfs.device(address) + '/driver_override', before['driver_override'] or '\n')
        if sysfs.dry_run:
            return
        final = sysfs.wait_driver(address, lambda found: found == before['driver'], self.timeout)
        if final != before['driver']:
            raise PrepareError('%s: rollback left it on %s instead of %s'
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


# -- kernel modules under root --------------------------------------------------------------------------------

def installed_kernels(sysroot):
    """Kernel releases with a modules.dep under ``lib/modules`` (``usr/lib/modules`` on merged-/usr)."""
    found = []
    for base in ('lib/modules', 'usr/lib/modules'):
        for release in sysroot.listdir(base):
            if release not in found and sysroot.read('%s/%s/modules.dep' % (base, release)) is not None:
                found.append(release)
    return sorted(found)


def _lines(sysroot, relative):
    """All lines of a file below root (``SysRoot.read`` stops at 64 KiB; modules.dep is larger)."""
    resolved = sysroot.resolve(relative)
    if resolved is None:
        return []
    try:
        with open(os.path.join(sysroot.root, resolved), 'rb') as handle:
            return handle.read().decode('utf-8', 'replace').splitlines()
    except OSError:
        return []


def _module_names(sysroot, release, filename):
    names = set()
    for base in ('lib/modules', 'usr/lib/modules'):
        for line in _lines(sysroot, '%s/%s/%s' % (base, release, filename)):
            path = line.split(':', 1)[0].strip()
            if not path:
                continue
            name = os.path.basename(path)
            for suffix in ('.xz', '.gz', '.zst'):
                if name.endswith(suffix):
                    name = name[:-len(suffix)]
            if name.endswith('.ko'):
                names.add(name[:-3].replace('-', '_'))
        if names:
            break
    return names


def kernel_module_state(sysroot, module):
    """{release: 'module' | 'builtin' | 'missing'} for every installed kernel."""
    module = module.replace('-', '_')
    result = {}
    for release in installed_kernels(sysroot):
        if module in _module_names(sysroot, release, 'modules.dep'):
            result[release] = 'module'
        elif module in _module_names(sysroot, release, 'modules.builtin'):
            result[release] = 'builtin'
        else:
            result[release] = 'missing'
    return result


def initramfs_modules(sysroot, driver=VFIO_DRIVER):
    """Modules to put in the initramfs: the vfio set, the driver's own module, and vfio_virqfd only when
    every installed kernel ships it as a loadable module (kernels from 6.2 on merged it into vfio; listing
    it there breaks dracut). Modules built into every kernel are left out."""
    wanted = list(VFIO_INITRAMFS_MODULES)
    if module_of_driver(driver) not in wanted:
        wanted.append(module_of_driver(driver))
    kernels = installed_kernels(sysroot)
    result = []
    for module in wanted:
        states = kernel_module_state(sysroot, module)
        if kernels and all(state == 'builtin' for state in states.values()):
            continue
        result.append(module)
    virqfd = kernel_module_state(sysroot, VFIO_VIRQFD)
    if virqfd and all(state == 'module' for state in virqfd.values()):
        result.insert(result.index('vfio_pci') if 'vfio_pci' in result else len(result), VFIO_VIRQFD)
    return result


def module_for_modalias(sysroot, modalias):
    """The module whose ``modules.alias`` pattern matches ``modalias`` (running kernel), or None."""
    release = sysroot.read('proc/sys/kernel/osrelease')
    kernels = installed_kernels(sysroot)
    if release in kernels:
        kernels = [release]
    for kernel in kernels:
        for base in ('lib/modules', 'usr/lib/modules'):
            for line in _lines(sysroot, '%s/%s/modules.alias' % (base, kernel)):
                parts = line.split()
                if len(parts) == 3 and parts[0] == 'alias' and fnmatch.fnmatchcase(modalias, parts[1]):
                    if parts[2] not in ('vfio_pci', 'pci_stub'):
                        return parts[2]
    return None


def host_module_of(sysroot, address, current_driver):
    """The module of the host driver of a device: its driver's ``module`` link, else modules.alias."""
    if current_driver and not _host_pci.is_vfio_driver(current_driver) and current_driver != STUB_DRIVER:
        resolved = sysroot.resolve('sys/bus/pci/drivers/%s/module' % current_driver)
        if resolved:
            return os.path.basename(resolved)
        return current_driver.replace('-', '_')
    modalias = sysroot.read('sys/bus/pci/devices/%s/modalias' % address)
    return module_for_modalias(sysroot, modalias) if modalias else None


# -- persistence: files -----------------------------------------------------------------------------------------

class FileChange:
    def __init__(self, path, before, after, mode=0o644):
        self.path = path  # absolute path as seen on the target (below root)
        self.before = before  # None: missing
        self.after = after  # None: to be removed
        self.mode = mode

    @property
    def changed(self):
        return self.before != self.after

    def diff(self, root):
        shown = under(root, self.path)
        return {'before': self.before or '', 'after': self.after or '', 'before_header': shown, 'after_header': shown}


def under(root, path):
    """The real path of ``path`` (absolute on the target) below ``root``, links resolved inside it
    (``_host_root.real_path``); PrepareError naming the path when it would leave root."""
    try:
        return _host_root.real_path(root, path)
    except _host_root.OutsideRoot as exc:
        raise PrepareError(str(exc))


def file_path(root, path):
    """Where a managed file lives: its directory resolved inside root, its own name as it is (a link
    there is replaced or removed, never followed)."""
    return os.path.join(under(root, os.path.dirname(path)), os.path.basename(path))


def read_text(root, path):
    """The text of one of our files below root (None when missing); a file that is itself a symbolic
    link is refused (the directories on the way may be links: they are resolved inside root)."""
    last = file_path(root, path)
    if os.path.islink(last):
        raise PrepareError('%s is a symbolic link; refusing to manage it' % last)
    full = under(root, path)
    try:
        with open(full, 'rb') as handle:
            return handle.read().decode('utf-8')
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise PrepareError('cannot read %s: %s' % (full, exc))


class FileWriter:
    """Writes ``FileChange`` objects below root (temp file in the same directory, then an atomic move);
    ``rollback()`` restores what was there before."""

    def __init__(self, root, atomic_move=None):
        self.root = root
        self.atomic_move = atomic_move or os.replace
        self.done = []

    def apply(self, change):
        if not change.changed:
            return
        full = file_path(self.root, change.path)
        self.done.append(change)
        if change.after is None:
            if os.path.lexists(full):
                os.unlink(full)
            return
        directory = os.path.dirname(full)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(full), dir=directory)
        try:
            with os.fdopen(fd, 'wb') as handle:
                handle.write(change.after.encode('utf-8'))
            os.chmod(tmp, change.mode)
            self.atomic_move(tmp, full)
            os.chmod(full, change.mode)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def rollback(self):
        problems = []
        for change in reversed(self.done):
            full = change.path
            try:
                full = file_path(self.root, change.path)
                if change.before is None:
                    if os.path.lexists(full):
                        os.unlink(full)
                else:
                    with open(full, 'wb') as handle:
                        handle.write(change.before.encode('utf-8'))
            except (OSError, PrepareError) as exc:
                problems.append('could not restore %s: %s' % (full, exc))
        self.done = []
        return problems


def _remove_empty_dirs(root, path, stop):
    """After removing ``path``, remove its now-empty parent directories up to (not including) ``stop``."""
    directory = os.path.dirname(under(root, path))
    stop = under(root, stop)
    while directory.startswith(stop + os.sep):
        try:
            os.rmdir(directory)
        except OSError:
            return
        directory = os.path.dirname(directory)


# -- persistence: vfio_bind -------------------------------------------------------------------------------------

_UDEV_ENTRY_RE = re.compile(r'^# virtdev-vfio (?P<address>\S+) (?P<vendor>0x[0-9a-f]{4}):(?P<device>0x[0-9a-f]{4}) '
                            r'(?P<driver>\S+)$')
_MODPROBE_ENTRY_RE = re.compile(r'^# virtdev-vfio (?P<address>\S+) (?P<vendor>0x[0-9a-f]{4}):(?P<device>0x[0-9a-f]{4}) '
                                r'(?P<driver>\S+) host=(?P<host>\S+)$')


def parse_entries(text, regex):
    """{address: {...}} from the comment lines of one of our files."""
    entries = {}
    for line in (text or '').splitlines():
        match = regex.match(line.strip())
        if match and _host_pci.PCI_NAME_RE.match(match.group('address')):
            entries[match.group('address')] = match.groupdict()
    return entries


def render_udev_vfio(entries):
    """The udev rules file for ``entries`` ({address: {vendor, device, driver}}); None when empty.

    For each device: set ``driver_override`` when the device is added (before any host driver module that
    udev loads for it can claim it), load the driver, and, when a driver built into the kernel or loaded
    earlier already took the device, unbind it and probe again. The rule matches the address *and* the
    vendor:device ids, so a different card in that slot is left alone.
    """
    if not entries:
        return None
    lines = ['# %s (vfio_bind, persistent: true). Do not edit: the module rewrites this file.' % MANAGED_BY,
             '# Binds each listed PCI address to its driver at boot, by address (driver_override), never by',
             '# vendor:device ids.']
    for address in sorted(entries):
        entry = entries[address]
        driver = entry['driver']
        dev = '/sys/bus/pci/devices/' + address
        lines.append('# virtdev-vfio %s %s:%s %s' % (address, entry['vendor'], entry['device'], driver))
        lines.append(
            'ACTION=="add", SUBSYSTEM=="pci", KERNEL=="%(a)s", ATTR{vendor}=="%(v)s", ATTR{device}=="%(d)s", '
            'ATTR{driver_override}="%(drv)s", RUN{builtin}+="kmod load %(drv)s", '
            'RUN+="/bin/sh -c \'test -e /sys/bus/pci/drivers/%(drv)s/%(a)s || { test ! -e %(dev)s/driver || '
            'echo %(a)s > %(dev)s/driver/unbind; echo %(a)s > /sys/bus/pci/drivers_probe; }\'"'
            % {'a': address, 'v': entry['vendor'], 'd': entry['device'], 'drv': driver, 'dev': dev})
    return '\n'.join(lines) + '\n'


def _short_id(value):
    return value[2:] if value.startswith('0x') else value


def render_modprobe_vfio(entries):
    """modprobe.d text for ``entries`` ({address: {vendor, device, driver, host}}); None when empty."""
    if not entries:
        return None
    lines = ['# %s (vfio_bind, persistent: true, persist_method: modprobe). Do not edit.' % MANAGED_BY]
    for address in sorted(entries):
        entry = entries[address]
        lines.append('# virtdev-vfio %s %s:%s %s host=%s' % (address, entry['vendor'], entry['device'],
                                                             entry['driver'], entry['host']))
    by_driver = {}
    for entry in entries.values():
        by_driver.setdefault(module_of_driver(entry['driver']), set()).add(
            '%s:%s' % (_short_id(entry['vendor']), _short_id(entry['device'])))
    for module in sorted(by_driver):
        lines.append('options %s ids=%s' % (module, ','.join(sorted(by_driver[module]))))
    softdeps = {}
    for entry in entries.values():
        if entry['host'] and entry['host'] != '-':
            softdeps.setdefault(entry['host'], set()).add(module_of_driver(entry['driver']))
    for host_module in sorted(softdeps):
        lines.append('softdep %s pre: %s' % (host_module, ' '.join(sorted(softdeps[host_module]))))
    return '\n'.join(lines) + '\n'


def render_initramfs_tools_hook(modules, rules_path):
    lines = [
        '#!/bin/sh',
        '# %s (vfio_bind, persistent: true). Do not edit: the module rewrites this file.' % MANAGED_BY,
        '# Puts the vfio modules and the per-address binding rules into the initramfs, so devices are bound',
        '# to vfio-pci before a host driver loaded from the initramfs can claim them.',
        'PREREQ=""',
        'prereqs() { echo "$PREREQ"; }',
        'case "$1" in',
        'prereqs) prereqs; exit 0 ;;',
        'esac',
        '. /usr/share/initramfs-tools/hook-functions',
    ]
    if modules:
        lines.append('manual_add_modules %s' % ' '.join(modules))
    if rules_path:
        lines += [
            'if [ -e %s ]; then' % rules_path,
            '    mkdir -p "${DESTDIR}%s"' % os.path.dirname(rules_path),
            '    cp -p %s "${DESTDIR}%s"' % (rules_path, rules_path),
            'fi',
        ]
    return '\n'.join(lines) + '\n'


def render_dracut_conf(modules, install_items):
    lines = ['# %s (vfio_bind, persistent: true). Do not edit: the module rewrites this file.' % MANAGED_BY]
    if modules:
        lines.append('add_drivers+=" %s "' % ' '.join(modules))
    if install_items:
        lines.append('install_items+=" %s "' % ' '.join(install_items))
    return '\n'.join(lines) + '\n'


def initramfs_systems(sysroot):
    """Which initramfs generators the system under root uses: 'initramfs-tools' and/or 'dracut'."""
    found = []
    if sysroot.isdir('etc/initramfs-tools') or sysroot.isdir('usr/share/initramfs-tools'):
        found.append('initramfs-tools')
    if sysroot.isdir('etc/dracut.conf.d') or sysroot.isdir('usr/lib/dracut'):
        found.append('dracut')
    return found


def plan_vfio_persistence(root, sysroot, host, actions, state, driver, method):
    """FileChanges for ``persistent: true``: the udev rules (or modprobe.d) entries of the devices of
    ``actions`` are added (state bound) or removed (state unbound); the initramfs configuration follows.

    ``method='modprobe'`` is refused (ValueError) when ``ids=`` would also catch a device that stays on the
    host: another device with the same vendor:device that is not bound persistently.
    """
    changes = []
    udev_before = read_text(root, UDEV_VFIO_RULES)
    modprobe_before = read_text(root, MODPROBE_VFIO_CONF)
    udev_entries = parse_entries(udev_before, _UDEV_ENTRY_RE)
    modprobe_entries = parse_entries(modprobe_before, _MODPROBE_ENTRY_RE)
    for action in actions:
        dev = host.pci.get(action.address)
        if state == 'bound':
            entry = {'address': action.address, 'vendor': dev.vendor, 'device': dev.device, 'driver': driver}
            if method == 'udev':
                udev_entries[action.address] = entry
                modprobe_entries.pop(action.address, None)
            else:
                known = modprobe_entries.get(action.address, {}).get('host')
                found = host_module_of(sysroot, action.address, action.before['driver'])
                entry = dict(entry, host=found or known or '-')
                modprobe_entries[action.address] = entry
                udev_entries.pop(action.address, None)
        else:
            udev_entries.pop(action.address, None)
            modprobe_entries.pop(action.address, None)
    if modprobe_entries:
        for address, entry in sorted(modprobe_entries.items()):
            for other in sorted(host.pci.values(), key=lambda d: d.address):
                if other.address in modprobe_entries or (other.vendor, other.device) != (entry['vendor'], entry['device']):
                    continue
                raise ValueError(
                    'persist_method: modprobe would write "options vfio-pci ids=%s:%s", which at boot also binds '
                    '%s (now on driver %s), a device with the same vendor:device that is not bound persistently; '
                    'use persist_method: udev (per address), or add %s to addresses (nothing was changed)'
                    % (_short_id(entry['vendor']), _short_id(entry['device']), other.address,
                       other.driver or 'none', other.address))
    udev_after = render_udev_vfio(udev_entries)
    modprobe_after = render_modprobe_vfio(modprobe_entries)
    changes.append(FileChange(UDEV_VFIO_RULES, udev_before, udev_after))
    changes.append(FileChange(MODPROBE_VFIO_CONF, modprobe_before, modprobe_after))
    drivers = sorted({entry['driver'] for entry in list(udev_entries.values()) + list(modprobe_entries.values())})
    modules = []
    for name in drivers or [driver]:
        for module in initramfs_modules(sysroot, name):
            if module not in modules:
                modules.append(module)
    anything = bool(udev_entries or modprobe_entries)
    systems = initramfs_systems(sysroot)
    if 'initramfs-tools' in systems or read_text(root, INITRAMFS_TOOLS_HOOK) is not None:
        after = render_initramfs_tools_hook(modules, UDEV_VFIO_RULES if udev_entries else None) if anything else None
        changes.append(FileChange(INITRAMFS_TOOLS_HOOK, read_text(root, INITRAMFS_TOOLS_HOOK), after, 0o755))
    if 'dracut' in systems or read_text(root, DRACUT_CONF) is not None:
        items = ([UDEV_VFIO_RULES] if udev_entries else []) + ([MODPROBE_VFIO_CONF] if modprobe_entries else [])
        after = render_dracut_conf(modules, items) if anything else None
        changes.append(FileChange(DRACUT_CONF, read_text(root, DRACUT_CONF), after))
    return [change for change in changes if change.changed], systems


def initramfs_command(systems, which):
    """The command regenerating the initramfs: ``update-initramfs -u`` or ``dracut -f``; ``which(name)``
    finds a program (None when missing)."""
    if 'initramfs-tools' in systems and which('update-initramfs'):
        return [which('update-initramfs'), '-u']
    if 'dracut' in systems and which('dracut'):
        return [which('dracut'), '-f']
    return None


# -- SR-IOV ---------------------------------------------------------------------------------------------

def resolve_pf(sysroot, host, pf):
    """A PCI address from ``pf`` (an address or a network interface name); ValueError naming the value."""
    if not isinstance(pf, str) or not pf.strip():
        raise ValueError('pf: give the PF as a PCI address or a network interface name (got %r)' % (pf,))
    try:
        return normalize_pci_address(pf)
    except ValueError:
        pass
    if not IFNAME_RE.fullmatch(pf):
        raise ValueError('pf: %r is neither a PCI address (%s) nor a network interface name' % (pf, _host_pci.PCI_HINT))
    resolved = sysroot.resolve('sys/class/net/%s/device' % pf)
    if resolved is None or not _host_pci.PCI_NAME_RE.match(os.path.basename(resolved)):
        raise ValueError('pf: there is no network interface %r backed by a PCI device (sys/class/net/%s/device)'
                         % (pf, pf))
    return os.path.basename(resolved)


def pf_interfaces(sysroot, address):
    return sysroot.listdir('sys/bus/pci/devices/%s/net' % address)


def normalize_vf_settings(vfs, num_vfs):
    """Validate the ``vfs`` option; returns a list of dicts with ``index`` and the settings given."""
    result = []
    seen = set()
    for position, item in enumerate(vfs or []):
        where = 'vfs[%d]' % position
        index = item.get('index')
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError('%s.index: %r is not a VF number (0, 1, ...)' % (where, index))
        if index >= num_vfs:
            raise ValueError('%s.index: VF %d does not exist with num_vfs %d (VFs are numbered 0 to %d)'
                             % (where, index, num_vfs, num_vfs - 1) if num_vfs else
                             '%s.index: VF %d does not exist with num_vfs 0' % (where, index))
        if index in seen:
            raise ValueError('%s.index: VF %d is listed twice' % (where, index))
        seen.add(index)
        entry = {'index': index}
        mac = item.get('mac')
        if mac is not None:
            entry['mac'] = _ids.parse_mac(str(mac).strip().replace('-', ':'), '%s.mac' % where)
        vlan = item.get('vlan')
        if vlan is not None:
            if not isinstance(vlan, int) or isinstance(vlan, bool) or not 0 <= vlan <= 4095:
                raise ValueError('%s.vlan: %r is not a VLAN id from 0 (none) to 4095' % (where, vlan))
            entry['vlan'] = vlan
        for flag in ('trust', 'spoofchk'):
            value = item.get(flag)
            if value is not None:
                if not isinstance(value, bool):
                    raise ValueError('%s.%s: %r is not true or false' % (where, flag, value))
                entry[flag] = value
        result.append(entry)
    return sorted(result, key=lambda entry: entry['index'])


def parse_ip_vfinfo(text):
    """{vf index: {'mac', 'vlan', 'trust', 'spoofchk'}} from ``ip -j -d link show dev PF`` output."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise PrepareError('cannot parse the output of ip -j link show: %s' % exc)
    result = {}
    for link in data if isinstance(data, list) else []:
        for info in link.get('vfinfo_list') or []:
            index = info.get('vf')
            if not isinstance(index, int):
                continue
            vlan = 0
            if info.get('vlan_list'):
                vlan = info['vlan_list'][0].get('vlan', 0)
            elif 'vlan' in info:
                vlan = info.get('vlan') or 0
            result[index] = {'mac': (info.get('address') or info.get('mac') or '').lower() or None,
                             'vlan': vlan, 'trust': info.get('trust'), 'spoofchk': info.get('spoofchk')}
    return result


def vf_commands(ifname, wanted, current):
    """``ip link set`` argument lists for the settings of ``wanted`` that differ from ``current`` (None:
    unknown, everything is set)."""
    commands = []
    for entry in wanted:
        have = (current or {}).get(entry['index']) if current is not None else None
        args = []
        if 'mac' in entry and (have is None or have.get('mac') != entry['mac']):
            args += ['mac', entry['mac']]
        if 'vlan' in entry and (have is None or have.get('vlan') != entry['vlan']):
            args += ['vlan', str(entry['vlan'])]
        for flag in ('trust', 'spoofchk'):
            if flag in entry and (have is None or have.get(flag) != entry[flag]):
                args += [flag, 'on' if entry[flag] else 'off']
        if args:
            commands.append(['link', 'set', 'dev', ifname, 'vf', str(entry['index'])] + args)
    return commands


def sriov_rules_path(address):
    return '%s/70-virtdev-sriov-%s.rules' % (SRIOV_RULES_DIR, address.replace(':', '_').replace('.', '_'))


def render_sriov_rules(address, vendor, device, num_vfs, ifname, vfs, ip_path):
    """udev rules giving PF ``address`` ``num_vfs`` VFs when its driver binds; None for 0 VFs."""
    if not num_vfs:
        return None
    lines = ['# %s (sriov_vfs, persistent: true). Do not edit: the module rewrites this file.' % MANAGED_BY,
             '# %s (%s:%s) gets %d VFs each time its driver binds.' % (address, vendor, device, num_vfs),
             'ACTION=="bind", SUBSYSTEM=="pci", KERNEL=="%s", ATTR{vendor}=="%s", ATTR{device}=="%s", '
             'ATTR{sriov_numvfs}="%d"' % (address, vendor, device, num_vfs)]
    runs = vf_commands(ifname, vfs, None) if ifname else []
    for command in runs:
        lines.append('ACTION=="bind", SUBSYSTEM=="pci", KERNEL=="%s", ATTR{vendor}=="%s", ATTR{device}=="%s", '
                     'RUN+="%s %s"' % (address, vendor, device, ip_path, ' '.join(command)))
    return '\n'.join(lines) + '\n'


class SriovPlan:
    def __init__(self, address, ifname, before, after, writes, errors, warnings):
        self.address = address
        self.ifname = ifname
        self.before = before
        self.after = after
        self.writes = writes  # [(relative path, value)]
        self.errors = errors
        self.warnings = warnings


def plan_sriov(host, sysfs, address, num_vfs):
    """The writes that take PF ``address`` to ``num_vfs`` VFs (through 0), and the guards."""
    errors, warnings = [], []
    dev = host.pci.get(address)
    if dev is None:
        raise ValueError('pf: there is no PCI device %s on this host (not under /sys/bus/pci/devices)' % address)
    if dev.physfn:
        raise ValueError('pf: %s is itself a VF of %s; give the PF' % (address, dev.physfn))
    if dev.sriov_totalvfs is None:
        raise ValueError('pf: %s (%s, driver %s) is not SR-IOV capable: it has no sriov_totalvfs'
                         % (address, dev.class_label, dev.driver or 'none'))
    if not isinstance(num_vfs, int) or isinstance(num_vfs, bool) or num_vfs < 0:
        raise ValueError('num_vfs: %r is not a number of VFs (0 or more)' % (num_vfs,))
    if num_vfs > dev.sriov_totalvfs:
        raise ValueError('num_vfs: %d is more than the %d VFs %s supports (sriov_totalvfs)'
                         % (num_vfs, dev.sriov_totalvfs, address))
    current = dev.sriov_numvfs or 0
    writes = []
    if current != num_vfs:
        if dev.driver is None:
            errors.append('pf: %s has no driver bound; sriov_numvfs can only be changed through its driver '
                          '(bind it to its host driver first)' % address)
        if current and num_vfs:
            writes.append((sysfs.device(address) + '/sriov_numvfs', '0'))
        writes.append((sysfs.device(address) + '/sriov_numvfs', str(num_vfs)))
        for vf in dev.vfs:
            vf_dev = host.pci.get(vf)
            users = host.open_by(vf_dev.iommu_group if vf_dev else None)
            if users:
                errors.append('num_vfs: VF %s is in use (IOMMU group %s open by %s); changing the VF count would '
                              'remove it from a running guest' % (vf, vf_dev.iommu_group, describe_users(users)))
            elif vf_dev is not None and vf_dev.driver and _host_pci.is_vfio_driver(vf_dev.driver):
                warnings.append('VF %s is bound to %s (prepared for a guest); changing num_vfs from %d to %d '
                                'removes and recreates it' % (vf, vf_dev.driver, current, num_vfs))
    before = {'num_vfs': current, 'total_vfs': dev.sriov_totalvfs, 'vfs': list(dev.vfs)}
    after = {'num_vfs': num_vfs, 'total_vfs': dev.sriov_totalvfs}
    ifaces = pf_interfaces(sysfs.sysroot, address)
    return SriovPlan(address, ifaces[0] if ifaces else None, before, after, writes, errors, warnings)


def apply_sriov(sysfs, plan, timeout=10.0):
    """Write the VF count (through 0) and wait for the VFs to show up; PrepareError names the step."""
    done = []
    for relative, value in plan.writes:
        try:
            sysfs.write(relative, value)
        except PrepareError as exc:
            text = str(exc)
            if 'EBUSY' in text:
                text += ' (the PF refused the change while VFs exist)'
            if done:
                text += '; the VF count was already set to %s' % done[-1]
            raise PrepareError(text)
        done.append(value)
    if sysfs.dry_run or not plan.writes:
        return
    deadline = time.monotonic() + timeout
    wanted = plan.after['num_vfs']
    while True:
        vfs = [name for name in sysfs.sysroot.listdir(sysfs.device(plan.address))
               if name.startswith('virtfn') and name[6:].isdigit()]
        if len(vfs) == wanted or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if len(vfs) != wanted:
        raise PrepareError('pf: %s shows %d VFs (virtfnN links) after sriov_numvfs=%d' % (plan.address, len(vfs), wanted))


# -- mediated devices --------------------------------------------------------------------------------------

def normalize_uuid(value, field='uuid'):
    return _ids.parse_uuid(value, field)


def mdevctl_definitions(root):
    """{uuid: [{'parent', 'type', 'start', 'path'}]} from the mdevctl-style files below root."""
    result = {}
    base = under(root, MDEVCTL_DIR)
    try:
        parents = sorted(os.listdir(base))
    except OSError:
        return result
    for parent in parents:
        directory = os.path.join(base, parent)
        if parent == 'scripts.d' or not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            if not UUID_RE.match(name):
                continue
            path = '%s/%s/%s' % (MDEVCTL_DIR, parent, name)
            try:
                data = json.loads(read_text(root, path) or '{}')
            except ValueError:
                data = {}
            result.setdefault(name, []).append({'parent': parent, 'type': data.get('mdev_type'),
                                                'start': data.get('start'), 'path': path, 'data': data})
    return result


def render_mdevctl(mdev_type, start, previous=None):
    """mdevctl's JSON config (``/etc/mdevctl.d/PARENT/UUID``), keeping attributes already there."""
    data = {'mdev_type': mdev_type, 'start': start, 'attrs': []}
    if previous and isinstance(previous.get('attrs'), list):
        data['attrs'] = previous['attrs']
    return json.dumps(data, indent=2, sort_keys=False) + '\n'


def plan_mdevctl_files(root, uuid, state, parent, mdev_type, autostart, definitions):
    """FileChanges of the mdevctl-style definition of ``uuid`` (``/etc/mdevctl.d/PARENT/UUID``).

    present: the file for ``parent`` says ``mdev_type`` and ``start`` auto/manual (attributes already there
    are kept); absent: every definition of ``uuid`` (on ``parent`` only, when given) goes.
    """
    changes = []
    if state == 'present':
        path = '%s/%s/%s' % (MDEVCTL_DIR, parent, uuid)
        before = read_text(root, path)
        start = 'auto' if autostart else 'manual'
        previous = None
        if before is not None:
            try:
                previous = json.loads(before)
            except ValueError:
                previous = None
        if isinstance(previous, dict) and previous.get('mdev_type') == mdev_type and previous.get('start') == start:
            return changes
        changes.append(FileChange(path, before, render_mdevctl(mdev_type, start,
                                                               previous if isinstance(previous, dict) else None)))
        return changes
    for definition in definitions.get(uuid, []):
        if parent is None or definition['parent'] == parent:
            changes.append(FileChange(definition['path'], read_text(root, definition['path']), None))
    return changes


def remove_empty_parent(root, path):
    """After an mdevctl definition went, remove its parent's directory when it is empty."""
    _remove_empty_dirs(root, path, MDEVCTL_DIR)


def nodedev_name(address):
    return 'pci_' + address.replace(':', '_').replace('.', '_')


def render_nodedev_xml(parent, mdev_type, uuid):
    """libvirt node device XML defining a mediated device (``virNodeDeviceDefineXML``).

    libvirt names the device itself when defining it (the name given is ignored); the one written here is
    the name it will choose, so the XML also validates against libvirt's schema, where ``name`` is required.
    """
    device = _xml.new_element('device')
    _xml.child(device, 'name', create=True).text = 'mdev_%s_%s' % (uuid.replace('-', '_'), nodedev_name(parent)[4:])
    _xml.child(device, 'parent', create=True).text = nodedev_name(parent)
    capability = _xml.new_element('capability', {'type': 'mdev'})
    device.append(capability)
    capability.append(_xml.new_element('type', {'id': mdev_type}))
    _xml.child(capability, 'uuid', create=True).text = uuid
    return _xml.to_string(device)


class MdevPlan:
    def __init__(self):
        self.before = None
        self.after = None
        self.writes = []
        self.errors = []
        self.warnings = []


def plan_mdev(host, sysfs, uuid, state, parent=None, mdev_type=None, defined=None):
    """The sysfs writes that make mediated device ``uuid`` present (of ``mdev_type`` on ``parent``) or
    absent; ValueError for input that cannot be right (unknown parent or type), ``errors`` for the state
    of the host (no instance available, the UUID taken by another mdev)."""
    plan = MdevPlan()
    defined = defined or {}
    existing = host.mdevs.get(uuid)
    plan.before = existing.as_dict() if existing else None
    if state == 'absent':
        plan.after = None
        if existing is not None:
            if parent is not None and existing.parent != parent:
                plan.errors.append('uuid: %s is a mediated device on %s, not on parent %s; nothing was removed'
                                   % (uuid, existing.parent, parent))
            group = existing.iommu_group
            users = host.open_by(group)
            if users:
                plan.errors.append('uuid: mediated device %s is in use (IOMMU group %s open by %s); stop the guest '
                                   'first' % (uuid, group, describe_users(users)))
            plan.writes.append(('sys/bus/mdev/devices/%s/remove' % uuid, '1'))
        return plan
    dev = host.pci.get(parent)
    if dev is None:
        raise ValueError('parent: there is no PCI device %s on this host (not under /sys/bus/pci/devices)' % parent)
    types = {mdev_type_.type_id: mdev_type_ for mdev_type_ in dev.mdev_types}
    if not types:
        raise ValueError('parent: %s (%s, driver %s) offers no mediated device types (no mdev_supported_types); '
                         'its driver must support mdev (for example i915 with GVT-g, an NVIDIA vGPU driver)'
                         % (parent, dev.class_label, dev.driver or 'none'))
    if mdev_type not in types:
        raise ValueError('type: %r is not an mdev type of %s; it offers %s'
                         % (mdev_type, parent, ', '.join('%s (%s available)' % (t, types[t].available_instances)
                                                         for t in sorted(types))))
    plan.after = {'uuid': uuid, 'parent': parent, 'type': mdev_type}
    if existing is not None:
        if (existing.parent, existing.type_id) != (parent, mdev_type):
            plan.errors.append('uuid: %s is already used by a mediated device of type %s on %s; pick another UUID or '
                               'remove that one first (state: absent)' % (uuid, existing.type_id, existing.parent))
        return plan
    for definition in defined.get(uuid, []):
        if (definition['parent'], definition['type']) != (parent, mdev_type):
            plan.errors.append('uuid: %s is already defined for a mediated device of type %s on %s (%s); pick another '
                               'UUID or remove that definition first'
                               % (uuid, definition['type'], definition['parent'], definition['path']))
    available = types[mdev_type].available_instances
    if not available:
        plan.errors.append('type: %s on %s has no available instances (available_instances is %s); remove another '
                           'mediated device of that parent first' % (mdev_type, parent, available))
    plan.writes.append(('sys/bus/pci/devices/%s/mdev_supported_types/%s/create' % (parent, mdev_type), uuid))
    return plan


def apply_mdev(sysfs, plan, uuid, timeout=5.0):
    for relative, value in plan.writes:
        sysfs.write(relative, value)
    if sysfs.dry_run or not plan.writes:
        return
    deadline = time.monotonic() + timeout
    want = plan.after is not None
    while (sysfs.sysroot.resolve('sys/bus/mdev/devices/' + uuid) is not None) != want:
        if time.monotonic() >= deadline:
            raise PrepareError('mediated device %s %s after writing to %s' % (
                uuid, 'did not appear' if want else 'is still there', plan.writes[-1][0]))
        time.sleep(0.05)
