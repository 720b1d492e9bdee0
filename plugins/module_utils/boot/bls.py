# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""GRUB with Boot Loader Specification entries (RHEL 9, Fedora): GRUB's blscfg reads the ``options`` of
``/boot/loader/entries/*.conf`` at boot, so the entries are edited and nothing is regenerated.

New kernels get their entry from kernel-install, which copies ``/etc/kernel/cmdline`` (else
``/proc/cmdline``); grub2-mkconfig uses ``GRUB_CMDLINE_LINUX``. As ``grubby --update-kernel=ALL`` does,
both are kept in step, and ``/etc/kernel/cmdline`` is created when missing, so a kernel installed
before the reboot carries the arguments too. On a live host with grubby installed the entries are
changed through grubby, then checked and completed directly.
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import config_files as files
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import detect, grub
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot.cmdline import CmdlineError, satisfied

NAME = 'bls'


def scopes(host, options):
    root = host.root
    entries = files.bls_entries(root, detect.BLS_DIR)
    if not entries:
        raise CmdlineError('no boot loader entries found in %s' % files.shown(root, detect.BLS_DIR))
    result = [files.file_scope(entry) for entry in entries]
    result.append(files.kernel_cmdline_scope(root, files.kernel_install_sources(root, host.proc_cmdline, entries)))
    if host.grub_defaults:
        result.append(grub.grub_scope(root, options['grub_file'], options['grub_variable']))
    return result


def regenerate(host, options):
    return []  # blscfg reads the entries at boot


def grubby_args(plan, args, state):
    """The arguments grubby has to be given: those some entry does not hold exactly yet."""
    entries = [scope for scope in plan.scopes if scope.files and isinstance(scope.files[0], files.BlsEntry)]
    return [arg.text for arg in args
            if any(not satisfied(scope.tokens(original=True), [arg], state, exact=True) for scope in entries)]


def grubby_command(grubby, root, needed, state):
    return [grubby, '--update-kernel=ALL', '--bls-directory=%s' % files.shown(root, detect.BLS_DIR),
            ('--args=%s' if state == 'present' else '--remove-args=%s') % ' '.join(needed)]
