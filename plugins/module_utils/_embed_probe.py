# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Tell the user when libvirt's embedded QEMU driver probed QEMU during a task, and why it will again.

The embedded driver (``qemu:///embed?root=ROOT``) keeps the results of probing each QEMU binary in
``ROOT/cache/qemu/capabilities/*.xml`` and checks them before every use; a probe costs seconds per binary.
A task that (re)writes one of those files has probed. One known cause makes the driver probe on every
lookup, several times per task (docs/deploying.md, "The embedded driver re-probes QEMU on every task"):
the process is root, so the probe runs QEMU with permission to open ``/dev/kvm`` and records KVM, but the
user QEMU runs as (ROOT/etc/qemu.conf ``user``/``group``, else libvirt's build default such as
``libvirt-qemu``) cannot open ``/dev/kvm``, so the check that follows finds KVM unusable and discards the
result. Everything here is a few ``stat`` calls, run only when the cache changed during the task.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import time
from urllib.parse import parse_qs, urlsplit

KVM_DEVICE = '/dev/kvm'
KVM_FLAG = b"<flag name='kvm'/>"   # how a probed binary's cache file records that KVM worked
DOC = 'docs/deploying.md, "The embedded driver re-probes QEMU on every task"'


def embed_root(uri):
    """The root directory of a ``qemu:///embed?root=DIR`` URI, or None for any other URI."""
    parts = urlsplit(uri or '')
    if parts.scheme != 'qemu' or parts.path != '/embed':
        return None
    root = parse_qs(parts.query).get('root')
    return os.path.abspath(root[0]) if root and root[0] else None


def capabilities_dir(root):
    return os.path.join(root, 'cache', 'qemu', 'capabilities')


def snapshot(directory):
    """``{file name: (mtime_ns, size, inode)}`` of the cached capabilities in ``directory``."""
    files = {}
    try:
        names = os.listdir(directory)
    except OSError:
        return files
    for name in names:
        if not name.endswith('.xml'):
            continue
        try:
            info = os.stat(os.path.join(directory, name))
        except OSError:
            continue
        files[name] = (info.st_mtime_ns, info.st_size, info.st_ino)
    return files


def _user_name(uid):
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def accessible_as(path, uid, gid, timeout=10):
    """Whether ``uid`` (primary group ``gid`` and its supplementary groups) may read and write ``path``, as the
    kernel decides it (ACLs included); None when that cannot be found out."""
    name = _user_name(uid)
    try:
        groups = os.getgrouplist(name, gid) if name else [gid]
        proc = subprocess.run(['test', '-r', path, '-a', '-w', path], user=uid, group=gid, extra_groups=groups,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return proc.returncode == 0


def kvm_cache_conflict(root, written, accessible=accessible_as, euid=None):
    """The user QEMU runs as, as ``(uid, gid, name)``, when it cannot open /dev/kvm although the probe that
    wrote ``written`` (names in the capabilities directory) recorded KVM; else None.

    The driver makes ``ROOT/lib/qemu`` belong to the user and group it runs QEMU as, so its owner is that
    user whatever qemu.conf or the build default says."""
    euid = os.geteuid() if euid is None else euid
    if euid != 0 or not os.path.exists(KVM_DEVICE):
        return None   # not root: QEMU runs as this very user, and the probe had no more rights than it
    try:
        owner = os.stat(os.path.join(root, 'lib', 'qemu'))
    except OSError:
        return None
    if owner.st_uid == euid:
        return None
    directory = capabilities_dir(root)
    recorded_kvm = False
    for name in written:
        try:
            with open(os.path.join(directory, name), 'rb') as handle:
                recorded_kvm = KVM_FLAG in handle.read()
        except OSError:
            continue
        if recorded_kvm:
            break
    if not recorded_kvm or accessible(KVM_DEVICE, owner.st_uid, owner.st_gid) is not False:
        return None
    return owner.st_uid, owner.st_gid, _user_name(owner.st_uid) or str(owner.st_uid)


class ProbeWatch:
    """Started before a task's libvirt calls on an embed URI; ``warning()`` at its end says whether the task
    probed QEMU, how long the task took, and, for the known cause, what to change."""

    def __init__(self, root, clock=time.monotonic):
        self.root = root
        self.clock = clock
        self.directory = capabilities_dir(root)
        self.before = snapshot(self.directory)
        self.started = clock()

    def written(self):
        """Names of the capabilities files created or rewritten since the watch started."""
        after = snapshot(self.directory)
        return sorted(name for name, state in after.items() if self.before.get(name) != state)

    def warning(self, conflict=None):
        """The warning for the module's result, or None. ``conflict``: the cause check (tests replace it)."""
        written = self.written()
        if not written:
            return None
        seconds = self.clock() - self.started
        rewritten = [name for name in written if name in self.before]
        what = ('libvirt\'s embedded QEMU driver probed QEMU during this task (%d capabilities file%s written in %s; '
                'the task took %.1f s)' % (len(written), '' if len(written) == 1 else 's', self.directory, seconds))
        cause = (conflict or kvm_cache_conflict)(self.root, written)
        if cause:
            uid, gid, name = cause
            return ('%s, and will do so on every task, several times in a task that defines a guest: QEMU runs as '
                    '%s (uid %d, gid %d), which cannot open %s, while the probe (run as root) recorded KVM, so '
                    'libvirt discards its cache at every use. Fix one of: user = "root" and group = "root" in '
                    '%s/etc/qemu.conf; group = "kvm" there; or add %s to the kvm group. See %s.'
                    % (what, name, uid, gid, KVM_DEVICE, self.root, name, DOC))
        if rewritten:
            return ('%s: libvirt judged its cached capabilities stale (QEMU, libvirt, the kernel, the host CPU or '
                    'its microcode, or the usability of %s changed since they were cached). If this happens on '
                    'every task, see %s.' % (what, KVM_DEVICE, DOC))
        return None   # the first probe of this root: once, expected


def watch(module, uri):
    """On an embed URI, make the module's result warn when the task probed QEMU (see ``ProbeWatch``)."""
    root = embed_root(uri)
    if root is None or getattr(module, '_virtdev_probe_watch', None) is not None:
        return None
    probe_watch = ProbeWatch(root)
    module._virtdev_probe_watch = probe_watch
    exit_json, fail_json = module.exit_json, module.fail_json

    def warn_once():
        if getattr(probe_watch, 'reported', False):
            return
        probe_watch.reported = True
        try:
            message = probe_watch.warning()
        except Exception:  # pylint: disable=broad-except  # a diagnostic must never change the result
            message = None
        if message:
            module.warn(message)

    def exit_with_warning(**result):
        warn_once()
        return exit_json(**result)

    def fail_with_warning(msg, **result):
        warn_once()
        return fail_json(msg=msg, **result)

    module.exit_json = exit_with_warning
    module.fail_json = fail_with_warning
    return probe_watch
