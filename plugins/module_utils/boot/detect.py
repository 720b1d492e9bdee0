# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which boot path the host really boots with, from what the firmware and the loader left behind.

The signals, read below ``root`` (on a live host, ``/sys`` and ``/proc`` are the kernel's):

* ``/sys/firmware/efi``: booted through UEFI; a ``/sys/firmware`` without it: BIOS; no ``/sys/firmware``
  at all (an image): unknown;
* the ``LoaderInfo`` EFI variable, which systemd-boot sets when it starts a kernel (systemd's Boot Loader
  Interface), and ``LoaderEntrySelected``, the entry it started;
* ``/etc/kernel/proxmox-boot-uuids``: ESPs that ``proxmox-boot-tool`` keeps in sync (not mounted); on a
  live host ``proxmox-boot-tool status`` says what each of them is set up with (``uefi``: systemd-boot
  entries written from ``/etc/kernel/cmdline``; ``grub``: GRUB and its grub.cfg) and how the system booted;
* ``/etc/kernelstub/configuration``: kernelstub (Pop!_OS) writes the systemd-boot entries;
* a mounted ESP with ``loader/loader.conf`` (systemd-boot), BLS entries in ``/boot/loader/entries``
  next to GRUB (RHEL, Fedora), ``/etc/default/grub`` and a generated ``grub.cfg``.

A path that the signals do not single out is refused with what was found, never guessed.
"""

from __future__ import annotations

import os
import re

from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import config_files as files
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot.cmdline import CmdlineError, split_cmdline

LOADER_VENDOR = '4a67b082-0a4c-41cf-b6c7-440b29bb8c4f'  # systemd's Boot Loader Interface EFI variables
EFIVARS = '/sys/firmware/efi/efivars'
ESP_CANDIDATES = ('/boot/efi', '/efi', '/boot')
BLS_DIR = '/boot/loader/entries'
GRUB_MAIN = '/etc/default/grub'
GRUB_CONFIGS = ('/boot/grub/grub.cfg', '/boot/grub2/grub.cfg')
PROXMOX_UUIDS = '/etc/kernel/proxmox-boot-uuids'
KERNELSTUB_CONFIG = '/etc/kernelstub/configuration'


def efi_variable(root, name):
    """The string value of one of systemd's Boot Loader Interface EFI variables, or None.

    efivarfs files start with 4 bytes of attributes; the value is NUL-terminated UTF-16LE."""
    path = files.shown(root, '%s/%s-%s' % (EFIVARS, name, LOADER_VENDOR))
    try:
        with open(path, 'rb') as handle:
            data = handle.read()
    except OSError:
        return None
    return data[4:].decode('utf-16-le', 'replace').split('\x00', 1)[0] or None


# ``proxmox-boot-tool status`` (Proxmox VE administration guide, "Host Bootloader"): one line per ESP,
# "<UUID> is configured with: uefi (versions: ...), grub (versions: ...)", and "System currently booted
# with uefi" or "... legacy bios"; an ESP that no longer exists is only warned about and skipped.
_PVE_ESP_RE = re.compile(r'^\s*(?P<uuid>\S+) is configured with: (?P<modes>.*)$')
_PVE_MODE_RE = re.compile(r'\b(uefi|grub) \(versions')
_PVE_BOOTED_RE = re.compile(r'booted with (uefi|legacy bios)')


def proxmox_status(probe):
    """(``proxmox-boot-tool status`` as {ESP UUID: [modes]}, booted with 'uefi'/'bios' or None), or
    CmdlineError naming the failure. ``probe``: a Runner (``run``, ``find``) on the live host."""
    program = probe.find('proxmox-boot-tool')
    if not program:
        raise CmdlineError('%s lists ESPs but proxmox-boot-tool is not installed' % PROXMOX_UUIDS)
    command = [program, 'status']
    rc, out, err = probe.run(command)
    if rc != 0:
        raise CmdlineError('%s failed (rc=%d): %s' % (' '.join(command), rc, (err or out).strip()))
    esps, booted = {}, None
    for line in out.splitlines():
        match = _PVE_ESP_RE.match(line)
        if match:
            esps[match.group('uuid')] = _PVE_MODE_RE.findall(match.group('modes'))
        match = _PVE_BOOTED_RE.search(line)
        if match:
            booted = 'uefi' if match.group(1) == 'uefi' else 'bios'
    return esps, booted


class Host(object):
    """The facts about one host (or image) below ``root`` that decide its boot path.

    ``probe``: how to run the host's own tools (``proxmox-boot-tool status``); given only for a live host,
    since those tools describe the running system, not an image below root."""

    def __init__(self, root, probe=None):
        self.root = root
        self.live = root == '/'
        if files.exists(root, '/sys/firmware/efi'):
            self.firmware = 'uefi'
        elif files.exists(root, '/sys/firmware'):
            self.firmware = 'bios'
        else:
            self.firmware = None  # an image: nothing tells
        self.loader_info = efi_variable(root, 'LoaderInfo')  # set by systemd-boot when it booted us
        self.loader_entry = efi_variable(root, 'LoaderEntrySelected')
        self.proxmox_uuids = [line.split()[0] for line in (files.read(root, PROXMOX_UUIDS) or '').splitlines()
                              if line.strip() and not line.startswith('#')]
        self.proxmox_esps = self.proxmox_booted = self.proxmox_error = None
        if self.proxmox_uuids and probe is not None:
            try:
                self.proxmox_esps, self.proxmox_booted = proxmox_status(probe)
            except CmdlineError as exc:
                self.proxmox_error = str(exc)
        self.kernelstub = files.exists(root, KERNELSTUB_CONFIG)
        self.esp = next((esp for esp in ESP_CANDIDATES if files.exists(root, esp + '/loader/loader.conf')), None)
        # systemd-boot also reads entries and unified kernel images from the XBOOTLDR partition, mounted at
        # /boot when the ESP is elsewhere (/efi, /boot/efi): Boot Loader Specification, "Locating boot entries"
        self.xbootldr = '/boot' if self.esp and self.esp != '/boot' and any(
            files.exists(root, '/boot' + sub) for sub in ('/loader/entries', '/EFI/Linux')) else None
        self.bls_entries = files.listing(root, BLS_DIR, '*.conf')
        self.grub_defaults = files.exists(root, GRUB_MAIN)
        self.grub_configs = [path for path in GRUB_CONFIGS if files.exists(root, path)]
        proc = files.read(root, '/proc/cmdline')
        self.proc_cmdline = None if proc is None else split_cmdline(proc)

    @property
    def loader_dirs(self):
        """The partitions systemd-boot reads ``loader/entries`` and ``EFI/Linux`` from: the ESP, then XBOOTLDR."""
        return [directory for directory in (self.esp, self.xbootldr) if directory]

    @property
    def systemd_boot_booted(self):
        """True: systemd-boot started this kernel; False: something else did; None: cannot tell."""
        if self.loader_info:
            return True
        return False if self.firmware is not None else None

    def found(self):
        """What was found, for refusals."""
        facts = ['firmware: %s' % {'uefi': 'UEFI (/sys/firmware/efi)', 'bios': 'BIOS (no /sys/firmware/efi)',
                                   None: 'unknown (no /sys/firmware below root)'}[self.firmware]]
        if self.loader_info:
            facts.append('booted by %s (LoaderInfo EFI variable)' % self.loader_info)
        if self.proxmox_uuids:
            facts.append('%s lists %d ESP(s)' % (PROXMOX_UUIDS, len(self.proxmox_uuids)))
        if self.proxmox_esps is not None:
            facts.append('proxmox-boot-tool status: %s' % (', '.join(
                '%s configured with %s' % (uuid, ' and '.join(modes) or 'nothing')
                for uuid, modes in sorted(self.proxmox_esps.items())) or 'no ESP configured'))
        if self.kernelstub:
            facts.append(KERNELSTUB_CONFIG)
        if self.esp:
            facts.append('%s/loader/loader.conf' % self.esp)
        if self.xbootldr:
            facts.append('%s (XBOOTLDR) with loader/entries or EFI/Linux' % self.xbootldr)
        if self.bls_entries:
            facts.append('%d entries in %s' % (len(self.bls_entries), BLS_DIR))
        if self.grub_defaults:
            facts.append(GRUB_MAIN)
        facts.extend(self.grub_configs)
        return '; '.join(facts)


class Undecided(CmdlineError):
    """The signals do not single out one boot path; ``candidates``: the paths they leave open (an explicit
    ``bootloader`` among them is accepted), empty when none matches."""

    def __init__(self, host, why, candidates):
        CmdlineError.__init__(self, 'cannot tell which boot path %s boots with: %s (found: %s); set bootloader '
                                    'explicitly' % (host.root, why, host.found()))
        self.why = why
        self.candidates = tuple(candidates)


def _refuse(host, why, candidates=()):
    raise Undecided(host, why, candidates)


def proxmox_path(host):
    """The boot path ``proxmox-boot-tool status`` gives (each listed ESP set up with systemd-boot ("uefi")
    or GRUB, and how the system booted), None when it was not consulted; CmdlineError when it failed or
    the ESPs disagree."""
    if host.proxmox_error:
        _refuse(host, host.proxmox_error)
    if host.proxmox_esps is None:
        return None
    booted = host.proxmox_booted or host.firmware
    paths = {}
    for uuid in host.proxmox_uuids:
        modes = host.proxmox_esps.get(uuid)
        if not modes:
            continue  # gone or not set up: proxmox-boot-tool skips it too
        if booted == 'uefi' and 'uefi' in modes:
            paths[uuid] = 'proxmox-boot-tool'
        elif 'grub' in modes:
            paths[uuid] = 'grub'
    if len(set(paths.values())) != 1:
        _refuse(host, 'the ESPs proxmox-boot-tool keeps are %s' % (
            ', '.join('%s: %s' % item for item in sorted(paths.items())) if paths else
            'none set up for a %s boot' % (booted or 'UEFI or BIOS')), set(paths.values()))
    return set(paths.values()).pop()


def boot_path(host):
    """The backend name for ``host``; CmdlineError naming the signals when ambiguous or unknown.

    One rule per layout, in order: the first whose signals are present decides."""
    booted_by_sdboot = host.systemd_boot_booted
    from_status = proxmox_path(host) if host.proxmox_uuids else None
    if from_status:
        return from_status
    if host.proxmox_uuids:
        if booted_by_sdboot:
            return 'proxmox-boot-tool'
        if booted_by_sdboot is False:
            return 'grub'  # proxmox-boot-tool keeps GRUB on the ESPs; refreshed by proxmox-boot-tool too
        _refuse(host, '%s lists ESPs, which proxmox-boot-tool sets up with systemd-boot or with GRUB, and no '
                      'EFI variable below root says which one booted' % PROXMOX_UUIDS, ('proxmox-boot-tool', 'grub'))
    if host.kernelstub and booted_by_sdboot is not False:
        return 'kernelstub'
    if host.esp and booted_by_sdboot is not False:
        if booted_by_sdboot is None and host.grub_configs:
            _refuse(host, 'both systemd-boot (%s/loader/loader.conf) and GRUB (%s) are installed'
                    % (host.esp, ', '.join(host.grub_configs)), ('systemd-boot', 'bls' if host.bls_entries else 'grub'))
        return 'systemd-boot'
    if host.bls_entries and (host.grub_defaults or host.grub_configs):
        return 'bls'
    if host.grub_defaults:
        return 'grub'
    if booted_by_sdboot and files.exists(host.root, files.KERNEL_CMDLINE):
        return 'systemd-boot'
    if booted_by_sdboot is None and files.exists(host.root, files.KERNEL_CMDLINE) and not host.bls_entries:
        return 'systemd-boot'
    _refuse(host, 'no boot path matches')
    return None


def check_choice(host, bootloader):
    """Refuse an explicit ``bootloader`` unless it is what detection decides, or one of the paths the signals
    leave open: any other would edit files the next boot does not read. The refusal names both."""
    try:
        detected = boot_path(host)
    except Undecided as exc:
        if bootloader in exc.candidates:
            return
        raise CmdlineError('bootloader: %s is not what %s boots with: %s%s (found: %s)' % (
            bootloader, host.root, exc.why,
            '; it can only be %s' % ' or '.join(sorted(exc.candidates)) if exc.candidates else '', host.found()))
    if detected != bootloader:
        raise CmdlineError('bootloader: %s is not what %s boots with (found: %s); use bootloader: %s (or auto)'
                           % (bootloader, host.root, host.found(), detected))


def os_release(root):
    """``/etc/os-release`` (or ``/usr/lib/os-release``) as a dict."""
    text = files.read_followed(root, '/etc/os-release')
    if text is None:
        text = files.read_followed(root, '/usr/lib/os-release') or ''
    result = {}
    for line in text.splitlines():
        key, sep, value = line.partition('=')
        if sep and key.strip() and not key.startswith('#'):
            result[key.strip()] = value.strip().strip('"\'')
    return result


SBIN = ('/usr/sbin', '/sbin', '/usr/bin', '/bin', '/usr/local/sbin')


def find_program(root, name):
    """The path (as on the target) of an installed program below root, or None."""
    for directory in SBIN:
        path = '%s/%s' % (directory, name)
        full = files.resolved(root, path)  # a link (grub-mkconfig -> grub2-mkconfig) is followed inside root
        if os.path.isfile(full) and os.access(full, os.X_OK):
            return path
    return None
