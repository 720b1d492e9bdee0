# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""systemd-boot with kernel-install (Debian, Ubuntu, Arch): the entries in ``loader/entries`` of the
mounted ESP and of the XBOOTLDR partition (``/boot`` when the ESP is elsewhere) are read at boot and
edited in place; kernel-install writes each new kernel's entry
from ``/etc/kernel/cmdline``, which is kept in step (created, with the root device, when missing).
Nothing is regenerated, unless the next boot starts a unified kernel image: its embedded command line
changes only when it is rebuilt from ``/etc/kernel/cmdline`` (UKI_BUILDERS), which is then named, or
refused when unknown. Images that are not booted are only warned about.
"""

from __future__ import annotations

import re

from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import config_files as files
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import detect

NAME = 'systemd-boot'


def _mkinitcpio_uki(root):
    presets = [files.read(root, path) or '' for path in files.listing(root, '/etc/mkinitcpio.d', '*.preset')]
    return any(re.search(r'^\s*[A-Za-z0-9]*_uki=', text, re.MULTILINE) for text in presets)


# Unified kernel images (EFI/Linux/*.efi) embed their command line; what rebuilds them from
# /etc/kernel/cmdline on this system, first found wins: (what shows it, found(root), command)
UKI_BUILDERS = (
    ('an mkinitcpio preset with *_uki= in /etc/mkinitcpio.d', _mkinitcpio_uki, ['mkinitcpio', '-P']),
)


def loader_entries(host):
    """The type #1 entries systemd-boot reads, from the ESP and XBOOTLDR, newest first in each."""
    return [entry for directory in host.loader_dirs
            for entry in files.bls_entries(host.root, directory + '/loader/entries')]


def unified_images(host):
    """The unified kernel images systemd-boot would start (EFI/Linux/*.efi of the ESP and XBOOTLDR)."""
    return [path for directory in host.loader_dirs
            for path in files.listing(host.root, directory + '/EFI/Linux', '*.efi')]


def boots_unified_image(host, entries):
    """Whether the next boot starts a unified kernel image: the booted entry (LoaderEntrySelected) is one,
    or there are images and no type #1 entry."""
    if host.loader_entry:
        return host.loader_entry.lower().endswith('.efi')
    return not entries and bool(unified_images(host))


def uki_builder(host):
    """The command that rebuilds the unified kernel images on this system, or None when unknown."""
    return next((command for _what, found, command in UKI_BUILDERS if found(host.root)), None)


def scopes(host, options):
    root = host.root
    entries = loader_entries(host)
    result = [files.kernel_cmdline_scope(root, files.kernel_install_sources(root, host.proc_cmdline, entries))]
    result.extend(files.file_scope(entry) for entry in entries)
    if boots_unified_image(host, entries):
        if uki_builder(host) is None and not result[0].files[0].refusal:
            # raised only when /etc/kernel/cmdline has to change: nothing would carry it to the next boot
            result[0].files[0].refusal = (
                'the next boot starts a unified kernel image (%s), whose embedded command line changes only when '
                'it is rebuilt from %s, and no known rebuild was found (%s); rebuild it yourself'
                % (host.loader_entry or ', '.join(unified_images(host)), files.KERNEL_CMDLINE,
                   ', '.join(what for what, _found, _command in UKI_BUILDERS)))
    elif unified_images(host):
        result[0].warnings.append(
            'unified kernel images (%s) embed their own command line; they change only when rebuilt from %s'
            % (', '.join(unified_images(host)), files.KERNEL_CMDLINE))
    return result


def regenerate(host, options):
    """Type #1 entries are edited in place (kernel-install reads /etc/kernel/cmdline for the next kernel);
    a booted unified kernel image has to be rebuilt."""
    builder = uki_builder(host) if boots_unified_image(host, loader_entries(host)) else None
    if builder is None:
        return []
    program = detect.find_program(host.root, builder[0]) if host.live else None
    return [[program or builder[0]] + builder[1:]]
