# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pop!_OS: kernelstub writes the systemd-boot entries (``Pop_OS-current.conf``, ``Pop_OS-oldkern.conf``)
as ``root=UUID=<root> ro`` followed by ``user.kernel_options`` of ``/etc/kernelstub/configuration``,
at every kernel update. Both are edited: the configuration so the arguments survive the next update
(an edit of the entries alone would be undone, and a removed argument would come back), the entries so
the next boot has them. On a live host ``kernelstub`` then runs without options, which rewrites the
entries from the configuration as a kernel update does (kernelstub's README: its configuration file and
hook); under ``root`` it is named in ``regenerate``.
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import config_files as files
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import detect

NAME = 'kernelstub'
# The entries kernelstub writes; the recovery partition's entry (Recovery-*.conf) is left alone, so the
# fallback boots without the new arguments
ENTRIES = 'Pop_OS-*.conf'


def scopes(host, options):
    root = host.root
    text = files.read(root, detect.KERNELSTUB_CONFIG)
    config = files.KernelstubConfig(detect.KERNELSTUB_CONFIG, text, files.shown(root, detect.KERNELSTUB_CONFIG))
    result = [files.file_scope(config)]
    if host.esp:
        result.extend(files.file_scope(entry)
                      for entry in files.bls_entries(root, host.esp + '/loader/entries', ENTRIES))
    return result


def regenerate(host, options):
    program = detect.find_program(host.root, 'kernelstub') if host.live else None
    return [[program or 'kernelstub']]
