# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Read-only access to the files of a host below a root (``/``, an image, a fixture tree), and the small
text parsers the sysfs readers share. Symbolic links are resolved inside the root (``host.root``), so a
read never leaves it; a missing or unreadable file reads as None, never an exception.
"""

from __future__ import annotations

import os

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import root as root_


class SysRoot:
    """Read-only access to files below ``root``; symlinks are resolved without leaving it."""

    def __init__(self, root='/'):
        self.root = os.path.abspath(root)

    def path(self, relative):
        return os.path.join(self.root, relative.lstrip('/'))

    def _real(self, relative):
        """The full path to open: below another root, links are resolved inside it first."""
        if self.root == '/':
            return self.path(relative)
        resolved = self.resolve(relative)
        return None if resolved is None else os.path.join(self.root, resolved)

    def read(self, relative):
        """The stripped text of a file, or None when it is missing or unreadable."""
        full = self._real(relative)
        if full is None:
            return None
        try:
            with open(full, 'rb') as handle:
                return handle.read(65536).decode('utf-8', 'replace').strip()
        except (OSError, ValueError):
            return None

    def lines(self, relative):
        text = self.read(relative)
        return text.splitlines() if text else []

    def exists(self, relative):
        return os.path.lexists(self.path(relative))

    def isdir(self, relative):
        full = self._real(relative)
        return full is not None and os.path.isdir(full)

    def listdir(self, relative):
        full = self._real(relative)
        if full is None:
            return []
        try:
            return sorted(os.listdir(full))
        except OSError:
            return []

    def readlink(self, relative):
        try:
            return os.readlink(self.path(relative))
        except OSError:
            return None

    def islink(self, relative):
        return os.path.islink(self.path(relative))

    def resolve(self, relative):
        """The real path (relative to root, no leading slash) of ``relative``; None when dangling.

        Absolute link targets are taken relative to the root and ``..`` stops at the root, so a fixture
        tree (or a chroot) is never left (``host.root``, the same rule as for writes).
        """
        return root_.resolve(self.root, relative)


def int_or_none(text, base=10):
    try:
        return int(text, base)
    except (TypeError, ValueError):
        return None


def nearest(path, pattern):
    """The last component of ``path`` matching ``pattern`` (the nearest ancestor of that kind)."""
    for part in reversed(path.split('/')):
        if pattern.match(part):
            return part
    return None


def parse_cmdline(text):
    params = {}
    for token in (text or '').split():
        if token == '--':
            break
        key, sep, value = token.partition('=')
        params[key] = value if sep else True
    return params
