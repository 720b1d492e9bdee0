# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""systemd-boot with kernel-install (Debian, Ubuntu, Arch): the entries in ``loader/entries`` of the
mounted ESP and of the XBOOTLDR partition (``/boot`` when the ESP is elsewhere) are read at boot and
edited in place; kernel-install writes each new kernel's entry
from ``/etc/kernel/cmdline``, which is kept in step (created, with the root device, when missing).
Nothing is regenerated. Unified kernel images embed their command line and are only warned about.
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import config_files as files
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot.cmdline import split_cmdline

NAME = 'systemd-boot'


def kernel_cmdline_sources(host, entries):
    """Where a new /etc/kernel/cmdline starts from: kernel-install's own fallbacks, then the entries."""
    root = host.root
    usr = files.read(root, '/usr/lib/kernel/cmdline')
    return ([('/usr/lib/kernel/cmdline', None if usr is None else split_cmdline(usr)),
             ('/proc/cmdline', host.proc_cmdline)] + files.entry_sources(root, entries))


def scopes(host, options):
    root = host.root
    entries = [entry for directory in host.loader_dirs
               for entry in files.bls_entries(root, directory + '/loader/entries')]
    result = [files.kernel_cmdline_scope(root, kernel_cmdline_sources(host, entries))]
    result.extend(files.file_scope(entry) for entry in entries)
    if host.esp and files.listing(root, host.esp + '/EFI/Linux', '*.efi'):
        result[0].warnings.append(
            'unified kernel images in %s/EFI/Linux embed their own command line; they change only when rebuilt '
            'from %s' % (host.esp, files.KERNEL_CMDLINE))
    return result


def regenerate(host, options):
    return []  # the entries are edited; kernel-install reads /etc/kernel/cmdline for the next kernel
