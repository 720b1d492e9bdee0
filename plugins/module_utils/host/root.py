# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Paths below a ``root`` that never lead out of it: the one place reads and writes resolve paths.

A host module given ``root`` (an image, a chroot, a fixture tree) treats it the way a chroot does: an
absolute symlink target starts again at ``root`` and ``..`` stops at it. ``resolve`` gives the real path
relative to the root for reads (None when it does not exist); ``real_path`` gives the full path to write
(missing parts are kept as they are, to be created), and refuses, naming the path, anything that would
still end up outside the root. With ``root`` ``/`` paths are used as they are: the running system.
"""

from __future__ import annotations

import os


MAX_LINKS = 40


class OutsideRoot(Exception):
    """A path cannot be resolved inside the root (a symlink loop, or a change raced the resolution)."""


def _walk(root, relative, missing_ok):
    """(real path relative to root, or None when a part is missing and not ``missing_ok``)."""
    pending = [part for part in relative.split('/') if part]
    done = []
    hops = 0
    missing = False
    while pending:
        part = pending.pop(0)
        if part == '.':
            continue
        if part == '..':
            if done:
                done.pop()
            continue
        full = os.path.join(root, *(done + [part]))
        if not missing and os.path.islink(full):
            hops += 1
            if hops > MAX_LINKS:
                raise OutsideRoot('/%s: too many levels of symbolic links below %s' % (relative.lstrip('/'), root))
            target = os.readlink(full)
            if target.startswith('/'):
                done = []
            pending = [piece for piece in target.split('/') if piece] + pending
            continue
        if not missing and not os.path.lexists(full):
            if not missing_ok:
                return None
            missing = True  # nothing below a missing directory can be a link: the rest is taken as written
        done.append(part)
    return '/'.join(done)


def resolve(root, relative):
    """The real path of ``relative`` relative to ``root`` (no leading slash), or None when it does not
    exist, is a dangling link or loops."""
    try:
        return _walk(os.path.abspath(root), relative, missing_ok=False)
    except (OutsideRoot, OSError):
        return None


def real_path(root, path):
    """The full path to read or write for ``path`` (absolute as on the target system) below ``root``.

    Every symlink on the way is resolved inside ``root`` (parts that do not exist yet are kept, to be
    created). Raises ``OutsideRoot`` naming the path when that cannot be done or the result would lie
    outside the root.
    """
    root = os.path.abspath(root)
    if root == '/':
        return '/' + path.lstrip('/')
    try:
        relative = _walk(root, path, missing_ok=True)
    except OSError as exc:
        raise OutsideRoot('%s: cannot be resolved below %s: %s' % (path, root, exc))
    full = os.path.join(root, relative) if relative else root
    real = os.path.realpath(full)
    if real != root and not real.startswith(root + os.sep):
        raise OutsideRoot('%s resolves to %s, outside %s; refusing to write there' % (path, real, root))
    return full


def shown(root, path):
    """How messages name ``path`` below ``root`` (the path as given, not resolved)."""
    root = os.path.abspath(root)
    return '/' + path.lstrip('/') if root == '/' else os.path.join(root, path.lstrip('/'))
