# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host preparation backends: each plans (pure, from the model) and then applies through one writer.

- ``sysfs_writer``: the one sysfs write primitive (``write_attribute``, which tests replace with a
  simulated kernel) and ``Sysfs`` (dry-run recording, reads back, waits for drivers).
- ``bind``: vfio-pci / pci-stub binding and unbinding with ``driver_override``, as a transaction that
  rolls each device back to its original driver.
- ``persistence``: udev rules / modprobe.d and initramfs files that keep a binding across reboots.
- ``kernel_modules``: which kernel modules exist and which one drives a device (modules.alias).
- ``sriov``: VF counts (through 0) and VF link settings.
- ``mdev``: mediated devices, mdevctl-style definitions and libvirt node-device XML for them.

Files are written through ``_files`` (FileChange, Transaction), the collection's one transactional file
writer. The kernel facts this relies on are in the module docs of each backend.
"""
