# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_embed_probe: the warning a task on qemu:///embed gets when libvirt probed QEMU during it."""

from __future__ import annotations

import os

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _embed_probe

KVM_CAPS = "<qemuCaps>\n  <flag name='kvm'/>\n</qemuCaps>\n"
TCG_CAPS = "<qemuCaps>\n  <flag name='tcg'/>\n</qemuCaps>\n"


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _root(tmp_path):
    root = tmp_path / 'root'
    (root / 'cache' / 'qemu' / 'capabilities').mkdir(parents=True)
    (root / 'lib' / 'qemu').mkdir(parents=True)
    return str(root)


def _write(root, name, text, mtime=None):
    path = os.path.join(_embed_probe.capabilities_dir(root), name)
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


@pytest.mark.parametrize('uri, root', [
    ('qemu:///embed?root=/var/tmp/r', '/var/tmp/r'),
    ('qemu:///embed?root=/var/tmp/a%20b', '/var/tmp/a b'),
    ('qemu:///system', None),
    ('qemu+ssh://h/embed?root=/x', None),
    ('qemu:///embed', None),
    ('', None),
    (None, None),
])
def test_embed_root(uri, root):
    assert _embed_probe.embed_root(uri) == root


def test_no_warning_when_the_cache_is_used(tmp_path):
    root = _root(tmp_path)
    _write(root, 'a.xml', KVM_CAPS, mtime=1000)
    watch = _embed_probe.ProbeWatch(root)
    assert watch.warning(conflict=lambda *_: pytest.fail('no probe, no check')) is None


def test_no_warning_for_the_first_probe_of_a_root(tmp_path):
    root = _root(tmp_path)
    watch = _embed_probe.ProbeWatch(root)
    _write(root, 'a.xml', TCG_CAPS)
    assert watch.written() == ['a.xml']
    assert watch.warning(conflict=lambda *_: None) is None


def test_a_rewritten_cache_is_reported_as_stale_with_the_time_taken(tmp_path):
    root = _root(tmp_path)
    _write(root, 'a.xml', TCG_CAPS, mtime=1000)
    clock = Clock()
    watch = _embed_probe.ProbeWatch(root, clock=clock)
    _write(root, 'a.xml', TCG_CAPS)
    clock.now += 42.25
    message = watch.warning(conflict=lambda *_: None)
    assert 'probed QEMU during this task (1 capabilities file written in %s; the task took 42.2 s)' % (
        _embed_probe.capabilities_dir(root)) in message
    assert 'judged its cached capabilities stale' in message
    assert _embed_probe.DOC in message


def test_the_kvm_conflict_names_the_user_and_the_fixes(tmp_path):
    root = _root(tmp_path)
    watch = _embed_probe.ProbeWatch(root)
    _write(root, 'a.xml', KVM_CAPS)
    message = watch.warning(conflict=lambda _root, written: (999, 995, 'libvirt-qemu'))
    assert 'will do so on every task' in message
    assert 'QEMU runs as libvirt-qemu (uid 999, gid 995), which cannot open /dev/kvm' in message
    assert 'user = "root" and group = "root" in %s/etc/qemu.conf' % root in message
    assert 'group = "kvm"' in message and 'add libvirt-qemu to the kvm group' in message


def _conflict(root, written, accessible, euid=0):
    return _embed_probe.kvm_cache_conflict(root, written, accessible=accessible, euid=euid)


@pytest.fixture
def with_kvm(monkeypatch):
    real_exists = os.path.exists
    monkeypatch.setattr(_embed_probe.os.path, 'exists',
                        lambda path: True if path == _embed_probe.KVM_DEVICE else real_exists(path))


def _owned_by(monkeypatch, root, uid, gid=995):
    """Make ROOT/lib/qemu look owned by ``uid``:``gid`` (the user the driver runs QEMU as)."""
    real_stat = os.stat
    lib = os.path.join(root, 'lib', 'qemu')

    def fake(path, *args, **kwargs):
        info = real_stat(path, *args, **kwargs)
        if path == lib:
            return os.stat_result((info.st_mode, info.st_ino, info.st_dev, info.st_nlink, uid, gid,
                                   info.st_size, info.st_atime, info.st_mtime, info.st_ctime))
        return info

    monkeypatch.setattr(_embed_probe.os, 'stat', fake)


def test_conflict_when_root_probed_kvm_for_a_user_without_kvm(tmp_path, with_kvm, monkeypatch):
    root = _root(tmp_path)
    _write(root, 'a.xml', KVM_CAPS)
    _owned_by(monkeypatch, root, 999)
    asked = []

    def accessible(path, uid, gid):
        asked.append((path, uid, gid))
        return False

    assert _conflict(root, ['a.xml'], accessible)[:2] == (999, 995)
    assert asked == [(_embed_probe.KVM_DEVICE, 999, 995)]
    assert _conflict(root, ['a.xml'], accessible, euid=1000) is None   # not root: QEMU runs as this user


def test_no_conflict_when_the_user_can_open_kvm_or_kvm_was_not_recorded_or_qemu_runs_as_root(
        tmp_path, with_kvm, monkeypatch):
    root = _root(tmp_path)
    _write(root, 'kvm.xml', KVM_CAPS)
    _write(root, 'tcg.xml', TCG_CAPS)
    _owned_by(monkeypatch, root, 999)
    assert _conflict(root, ['tcg.xml', 'kvm.xml'], lambda *_: False)[:2] == (999, 995)
    assert _conflict(root, ['kvm.xml'], lambda *_: True) is None        # the user can open /dev/kvm
    assert _conflict(root, ['kvm.xml'], lambda *_: None) is None        # could not tell
    assert _conflict(root, ['tcg.xml'], lambda *_: False) is None       # the probe found no KVM
    _owned_by(monkeypatch, root, 0)
    assert _conflict(root, ['kvm.xml'], lambda *_: False) is None       # QEMU runs as root, like the probe


def test_no_conflict_without_dev_kvm(tmp_path, monkeypatch):
    root = _root(tmp_path)
    _write(root, 'kvm.xml', KVM_CAPS)
    monkeypatch.setattr(_embed_probe.os.path, 'exists', lambda path: False)
    assert _conflict(root, ['kvm.xml'], lambda *_: False) is None


class FakeModule:
    def __init__(self):
        self.warnings = []
        self.exited = None

    def warn(self, message):
        self.warnings.append(message)

    def exit_json(self, **result):
        self.exited = ('exit', result)

    def fail_json(self, msg, **result):
        self.exited = ('fail', dict(result, msg=msg))


def test_watch_warns_once_at_exit_and_only_on_embed_uris(tmp_path, monkeypatch):
    module = FakeModule()
    assert _embed_probe.watch(module, 'qemu:///system') is None
    root = _root(tmp_path)
    _write(root, 'a.xml', TCG_CAPS, mtime=1000)
    monkeypatch.setattr(_embed_probe, 'kvm_cache_conflict', lambda *_: None)
    assert _embed_probe.watch(module, 'qemu:///embed?root=%s' % root) is not None
    assert _embed_probe.watch(module, 'qemu:///embed?root=%s' % root) is None   # one watch per module
    _write(root, 'a.xml', TCG_CAPS)
    module.fail_json(msg='boom', changed=False)
    assert module.exited == ('fail', {'msg': 'boom', 'changed': False})
    module.exit_json(changed=False)
    assert module.exited == ('exit', {'changed': False})
    assert len(module.warnings) == 1 and 'judged its cached capabilities stale' in module.warnings[0]


def test_a_failing_diagnostic_never_changes_the_result(tmp_path, monkeypatch):
    module = FakeModule()
    root = _root(tmp_path)
    _embed_probe.watch(module, 'qemu:///embed?root=%s' % root)

    def broken(_self, conflict=None):
        raise RuntimeError('boom')

    monkeypatch.setattr(_embed_probe.ProbeWatch, 'warning', broken)
    module.exit_json(changed=True)
    assert module.exited == ('exit', {'changed': True}) and module.warnings == []


def test_accessible_as_asks_the_kernel(tmp_path):
    path = tmp_path / 'f'
    path.write_text('x', encoding='utf-8')
    if os.geteuid() != 0:
        assert _embed_probe.accessible_as(str(path), os.geteuid(), os.getegid()) in (True, None)
        return
    os.chmod(str(path), 0o600)
    assert _embed_probe.accessible_as(str(path), 0, 0) is True
    assert _embed_probe.accessible_as(str(path), 65534, 65534) is False   # nobody
