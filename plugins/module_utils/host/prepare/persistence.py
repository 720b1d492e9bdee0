# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Keeping vfio-pci bindings across reboots: udev rules or modprobe.d options (one comment line per managed
device), plus the initramfs-tools hook or dracut configuration that puts vfio-pci early enough. Every file
is a ``_files.FileChange`` planned before anything is written.
"""

from __future__ import annotations

import os
import re

from ansible_collections.virtdev.libvirt.plugins.module_utils import _files, _ids
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import bind, kernel_modules


MANAGED_BY = 'Managed by virtdev.libvirt'


# persistence files (paths below root)
UDEV_VFIO_RULES = '/etc/udev/rules.d/40-virtdev-vfio-pci.rules'


MODPROBE_VFIO_CONF = '/etc/modprobe.d/virtdev-vfio.conf'


INITRAMFS_TOOLS_HOOK = '/etc/initramfs-tools/hooks/virtdev-vfio'


DRACUT_CONF = '/etc/dracut.conf.d/virtdev-vfio.conf'


def remove_empty_dirs(root, path, stop):
    """After removing ``path``, remove its now-empty parent directories up to (not including) ``stop``."""
    directory = os.path.dirname(_files.resolved(root, path))
    stop = _files.resolved(root, stop)
    while directory.startswith(stop + os.sep):
        try:
            os.rmdir(directory)
        except OSError:
            return
        directory = os.path.dirname(directory)


_UDEV_ENTRY_RE = re.compile(r'^# virtdev-vfio (?P<address>\S+) (?P<vendor>0x[0-9a-f]{4}):(?P<device>0x[0-9a-f]{4}) '
                            r'(?P<driver>\S+)$')


_MODPROBE_ENTRY_RE = re.compile(r'^# virtdev-vfio (?P<address>\S+) (?P<vendor>0x[0-9a-f]{4}):(?P<device>0x[0-9a-f]{4}) '
                                r'(?P<driver>\S+) host=(?P<host>\S+)$')


def parse_entries(text, regex):
    """{address: {...}} from the comment lines of one of our files."""
    entries = {}
    for line in (text or '').splitlines():
        match = regex.match(line.strip())
        if match and _ids.PCI_NAME_RE.match(match.group('address')):
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
        by_driver.setdefault(bind.module_of_driver(entry['driver']), set()).add(
            '%s:%s' % (_short_id(entry['vendor']), _short_id(entry['device'])))
    for module in sorted(by_driver):
        lines.append('options %s ids=%s' % (module, ','.join(sorted(by_driver[module]))))
    softdeps = {}
    for entry in entries.values():
        if entry['host'] and entry['host'] != '-':
            softdeps.setdefault(entry['host'], set()).add(bind.module_of_driver(entry['driver']))
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
    udev_before = _files.read_text(root, UDEV_VFIO_RULES)
    modprobe_before = _files.read_text(root, MODPROBE_VFIO_CONF)
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
                found = kernel_modules.host_module_of(sysroot, action.address, action.before['driver'])
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
    changes.append(_files.FileChange(UDEV_VFIO_RULES, udev_before, udev_after))
    changes.append(_files.FileChange(MODPROBE_VFIO_CONF, modprobe_before, modprobe_after))
    drivers = sorted({entry['driver'] for entry in list(udev_entries.values()) + list(modprobe_entries.values())})
    modules = []
    for name in drivers or [driver]:
        for module in kernel_modules.initramfs_modules(sysroot, name):
            if module not in modules:
                modules.append(module)
    anything = bool(udev_entries or modprobe_entries)
    systems = initramfs_systems(sysroot)
    if 'initramfs-tools' in systems or _files.read_text(root, INITRAMFS_TOOLS_HOOK) is not None:
        after = render_initramfs_tools_hook(modules, UDEV_VFIO_RULES if udev_entries else None) if anything else None
        changes.append(_files.FileChange(INITRAMFS_TOOLS_HOOK, _files.read_text(root, INITRAMFS_TOOLS_HOOK), after, 0o755))
    if 'dracut' in systems or _files.read_text(root, DRACUT_CONF) is not None:
        items = ([UDEV_VFIO_RULES] if udev_entries else []) + ([MODPROBE_VFIO_CONF] if modprobe_entries else [])
        after = render_dracut_conf(modules, items) if anything else None
        changes.append(_files.FileChange(DRACUT_CONF, _files.read_text(root, DRACUT_CONF), after))
    return [change for change in changes if change.changed], systems


def initramfs_command(systems, which):
    """The command regenerating the initramfs: ``update-initramfs -u`` or ``dracut -f``; ``which(name)``
    finds a program (None when missing)."""
    if 'initramfs-tools' in systems and which('update-initramfs'):
        return [which('update-initramfs'), '-u']
    if 'dracut' in systems and which('dracut'):
        return [which('dracut'), '-f']
    return None
