# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-guest locks that every process of this collection on one machine honours (docs/concurrency.md).

A lock is an ``flock(2)`` on ``<lock dir>/<domain UUID>.lock``. The kernel drops it when its holder exits,
however it exits, so a dead run never leaves a guest locked. The holder unlinks the file before it lets
go; a waiter that got the lock on a file that was unlinked meanwhile notices (the path no longer names
its inode) and tries again, so two processes never both believe they hold one guest.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
import time

from ansible_collections.virtdev.libvirt.plugins.module_utils._embed_probe import embed_root

POLL_FIRST, POLL_MAX = 0.001, 0.01  # seconds between attempts, growing while a lock stays busy


class LockError(Exception):
    """A guest lock could not be taken; ``str()`` says which guest, where, and who holds it."""


def lock_dir(uri):
    """Where the locks of guests reached through ``uri`` live, on the machine this module runs on.

    The embedded driver keeps everything below its root, so its locks go there too. Everything else
    (local or remote URIs) uses one directory per user on this machine: the lock key is the domain's
    UUID, which names one guest whatever URI spelling reaches it.
    """
    root = embed_root(uri)
    if root is not None:
        return os.path.join(root, 'virtdev-locks')
    if os.geteuid() == 0:
        for base in ('/run/lock', '/run'):
            if os.path.isdir(base):
                return os.path.join(base, 'virtdev.libvirt')
    runtime = os.environ.get('XDG_RUNTIME_DIR')
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, 'virtdev.libvirt')
    return os.path.join(tempfile.gettempdir(), 'virtdev.libvirt-%d' % os.geteuid())


def _private_dir(directory):
    """Create ``directory`` (0700) or accept it only if it is ours and nobody else can write to it: the
    lock files are opened by root in world-writable parents such as /run/lock."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.lstat(directory)
    except OSError as exc:
        raise LockError('cannot create the lock directory %s: %s' % (directory, exc.strerror))
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise LockError('refusing the lock directory %s: it must be a directory owned by uid %d that only its owner '
                        'can write to' % (directory, os.geteuid()))


def lock_path(directory, uuid):
    return os.path.join(directory, '%s.lock' % uuid.lower())


class GuestLock:
    """``with GuestLock(directory, uuid, name, timeout):`` holds the guest's lock for the block."""

    def __init__(self, directory, uuid, name, timeout):
        self.directory = directory
        self.path = lock_path(directory, uuid)
        self.name = name
        self.timeout = timeout
        self.fd = None

    def __enter__(self):
        _private_dir(self.directory)
        deadline = time.monotonic() + self.timeout
        pause = POLL_FIRST
        while True:
            fd = self._try_once()
            if fd is not None:
                self.fd = fd
                return self
            if time.monotonic() >= deadline:
                raise LockError('domain %s: another run (%s) has held its lock %s for more than %g s; nothing of this '
                                'domain was written' % (self.name, self._holder(), self.path, self.timeout))
            time.sleep(pause)
            pause = min(pause * 2, POLL_MAX)

    def _try_once(self):
        """An fd holding the lock, or None when another process holds it."""
        for _attempt in range(100):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            except OSError as exc:
                raise LockError('domain %s: cannot open its lock file %s: %s' % (self.name, self.path, exc.strerror))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return None
                raise LockError('domain %s: cannot lock %s: %s' % (self.name, self.path, exc.strerror))
            try:
                same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)  # the previous holder removed this file while we waited for it: take the new one
        return None

    def _holder(self):
        """The holder's pid from the kernel's table of locks (/proc/locks, proc(5)): the lock file stays empty (a
        file with data costs its filesystem more to remove, with every guest written)."""
        try:
            info = os.stat(self.path, follow_symlinks=False)
            with open('/proc/locks', encoding='ascii', errors='replace') as handle:
                # "1: FLOCK  ADVISORY  WRITE 4321 fd:00:1234 0 EOF" (waiters: "1: -> FLOCK ..."); the device of a file on
                # a stacked filesystem (overlayfs) may read differently there than in stat(): the inode decides then
                holders = [(fields[5].rsplit(':', 2), fields[4]) for fields in (line.split() for line in handle)
                           if len(fields) > 5 and fields[1] == 'FLOCK' and fields[5].endswith(':%d' % info.st_ino)]
        except OSError:
            return 'pid unknown'
        device = ['%02x' % os.major(info.st_dev), '%02x' % os.minor(info.st_dev)]
        exact = [pid for file_id, pid in holders if file_id[:2] == device]
        found = exact or [pid for _file_id, pid in holders]
        return 'pid %s' % found[0] if len(set(found)) == 1 else 'pid unknown'

    def __exit__(self, *_exc):
        try:
            os.unlink(self.path)  # while still holding it: see the module docstring
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
        return False
