# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one transactional writer for the files modules manage below a ``root`` (host preparation, boot
configuration).

A change is a value: ``FileChange(path, before, after)`` with ``None`` for "missing" / "to be removed".
``Transaction.apply`` writes it the safe way — a temporary file in the target directory, an optional
check of that temporary file (``sh -n`` for a shell-sourced file), then an atomic move — and remembers
what was there before, so ``rollback`` can put every file of a failed run back. Paths are resolved the
way a chroot would (``host.root``): a managed file that is itself a symbolic link is replaced, never
followed, and nothing leads out of the root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import root as _host_root

NEW_FILE_MODE = 0o644


class FileError(Exception):
    """A managed file cannot be located, read, checked or written; the message names the file."""


class FileChange(object):
    """One file's wanted content. ``mode`` None keeps an existing file's mode (0o644 for a new file)."""

    def __init__(self, path, before, after, mode=None):
        self.path = path  # absolute, as seen on the target (below root)
        self.before = before  # None: missing
        self.after = after  # None: to be removed
        self.mode = mode

    @property
    def changed(self):
        return self.before != self.after

    def diff(self, root):
        shown = location(root, self.path)
        return {'before': self.before or '', 'after': self.after or '', 'before_header': shown, 'after_header': shown}


def resolved(root, path):
    """The real path of ``path`` below ``root``, every link on the way resolved inside it."""
    try:
        return _host_root.real_path(root, path)
    except _host_root.OutsideRoot as exc:
        raise FileError(str(exc))


def location(root, path):
    """Where a managed file lives: its directory resolved inside root, its own name as it is (a link
    there is replaced or removed, never followed)."""
    return os.path.join(resolved(root, os.path.dirname(path)), os.path.basename(path))


def read_text(root, path):
    """The text of a managed file below root (None when missing); a file that is itself a symbolic link
    is refused (the directories on the way may be links: they are resolved inside root)."""
    last = location(root, path)
    if os.path.islink(last):
        raise FileError('%s is a symbolic link; refusing to manage it' % last)
    try:
        with open(last, 'rb') as handle:
            return handle.read().decode('utf-8')
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileError('cannot read %s: %s' % (last, exc))


def backup_copy(path):
    """A copy of ``path`` next to it, ``FILE.PID.YYYYMMDDTHHMMSS~``, returned. Unlike AnsibleModule.backup_local's
    ``FILE.PID.YYYY-MM-DD@HH:MM:SS~`` the name has no ``:``, which FAT (an ESP's loader entries) refuses."""
    backup = '%s.%d.%s~' % (path, os.getpid(), time.strftime('%Y%m%dT%H%M%S'))
    shutil.copy2(path, backup)
    return backup


class Transaction(object):
    """Applies ``FileChange`` objects below ``root`` and can undo all of them.

    ``atomic_move(src, dest)`` defaults to ``os.replace`` (modules pass AnsibleModule.atomic_move, which
    keeps SELinux contexts); ``backup(path)`` (AnsibleModule.backup_local) is called for every existing
    file before it is replaced, and its results are kept in ``backups``.
    """

    def __init__(self, root, atomic_move=None, backup=None):
        self.root = root
        self.atomic_move = atomic_move or os.replace
        self.backup = backup
        self.backups = []
        self._undo = []  # (full path, previous text or None), in the order written
        self._made = []  # directories created for new files, removed again by rollback when left empty

    def remember(self, path, before):
        """Record a file some other tool is about to change (e.g. grubby), so ``rollback`` restores it."""
        self._undo.append((location(self.root, path), before))

    def apply(self, change, check=None):
        """Write one change. ``check(temp_path)`` may refuse the new content (raise FileError) before
        it replaces anything."""
        if not change.changed:
            return
        full = location(self.root, change.path)
        if change.after is None:
            self._undo.append((full, change.before))
            if os.path.lexists(full):
                os.unlink(full)
            return
        directory = os.path.dirname(full)
        made, parent = [], directory
        while not os.path.isdir(parent):
            made.append(parent)
            parent = os.path.dirname(parent)
        if made:
            os.makedirs(directory, 0o755)
            self._made.extend(made)
        mode = change.mode
        if mode is None:
            mode = os.stat(full).st_mode & 0o7777 if os.path.isfile(full) and not os.path.islink(full) else NEW_FILE_MODE
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(full), dir=directory)
        try:
            with os.fdopen(fd, 'wb') as handle:
                handle.write(change.after.encode('utf-8'))
            os.chmod(tmp, mode)
            if check is not None:
                check(tmp)
            if self.backup is not None and change.before is not None and os.path.isfile(full):
                self.backups.append(self.backup(full))
            try:
                self.atomic_move(tmp, full)
            except Exception as exc:  # AnsibleModule.atomic_move raises plain Exception; the file is unchanged
                cause = exc.__cause__ or exc
                raise FileError('cannot write %s: %s' % (full, cause))
            self._undo.append((full, change.before))
            os.chmod(full, mode)  # atomic_move may carry the replaced file's mode over
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def written(self):
        """The files changed so far (full paths, in the order written), what ``rollback`` would restore."""
        return [full for full, _before in self._undo]

    def rollback(self):
        """Put back what was there before every change applied so far, newest first, and remove the
        directories made for new files; the problems met (one line each, naming the file left changed)
        are returned, never raised: a rollback does as much as it can."""
        problems = []
        for full, before in reversed(self._undo):
            try:
                if before is None:
                    if os.path.lexists(full):
                        os.unlink(full)
                else:
                    with open(full, 'wb') as handle:
                        handle.write(before.encode('utf-8'))
            except OSError as exc:
                problems.append('could not restore %s: %s' % (full, exc))
        for directory in sorted(self._made, key=len, reverse=True):  # the deepest first
            try:
                os.rmdir(directory)
            except OSError:
                pass  # not empty (something else was put there): left as it is
        self._undo = []
        self._made = []
        return problems
