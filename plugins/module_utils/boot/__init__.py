# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The kernel command line where the next boot reads it (no Ansible, no libvirt).

* ``cmdline``: arguments — parsing, the table of parameters that repeat or hold comma lists, and the
  reconcile that makes arguments present or absent in a run of tokens;
* ``config_files``: the file formats that hold a command line (GRUB defaults, BLS entries,
  ``/etc/kernel/cmdline``, kernelstub's configuration) and the seed for a new ``/etc/kernel/cmdline``;
* one backend per boot path, each naming the files it edits and the command that regenerates the boot
  configuration: ``grub``, ``bls`` (GRUB + BLS entries, grubby), ``systemd_boot`` (kernel-install),
  ``proxmox_boot_tool``, ``kernelstub``;
* ``detect``: which boot path this host really boots with, or a refusal naming what was found;
* ``plan``: plan -> check -> apply (through ``_files.Transaction``) -> roll back -> read back, and
  which boot entry the running kernel came from.
"""
