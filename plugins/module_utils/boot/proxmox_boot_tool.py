# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Proxmox VE with systemd-boot on ESPs managed by proxmox-boot-tool (ZFS root on UEFI): the ESPs are not
mounted; ``proxmox-boot-tool refresh`` copies the kernels and writes every ESP's entries with
``/etc/kernel/cmdline`` as their options. So that file is edited, then refreshed (Proxmox VE
administration guide, "Host Bootloader": editing the kernel command line).
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import config_files as files
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import detect

NAME = 'proxmox-boot-tool'


def scopes(host, options):
    # proxmox-boot-tool refresh falls back to /proc/cmdline only (not /usr/lib/kernel/cmdline), so a new
    # /etc/kernel/cmdline starts from the same
    return [files.kernel_cmdline_scope(host.root, [('/proc/cmdline', host.proc_cmdline)])]


def regenerate(host, options):
    program = detect.find_program(host.root, 'proxmox-boot-tool') if host.live else None
    return [[program or 'proxmox-boot-tool', 'refresh']]
