# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writing sysfs attributes below a root: the one write primitive (``write_attribute``, what a test replaces
with a simulated kernel), and ``Sysfs``: writes recorded (or only recorded, in check mode), reads back
through ``below_root``, waiting for a device's driver to settle.
"""

from __future__ import annotations

import errno
import os
import time

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import below_root
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import root as host_root


class PrepareError(Exception):
    """A step failed; ``str()`` is the message for the user."""


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
        self.sysroot = below_root.SysRoot(root)
        self.root = self.sysroot.root
        self.dry_run = dry_run
        self.writes = []

    def full(self, relative):
        """The full path of ``relative`` with every link resolved inside root (the last part need not
        exist); PrepareError naming the path when it cannot stay inside root."""
        try:
            return host_root.real_path(self.root, '/' + relative.lstrip('/'))
        except host_root.OutsideRoot as exc:
            raise PrepareError(str(exc))

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
