# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""_files: the one transactional writer — write, check, back up, roll back, never leave the root."""

from __future__ import annotations

import os

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _files


def _write(root, relative, text, mode=0o644):
    full = os.path.join(root, relative)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, 'w', encoding='utf-8') as handle:
        handle.write(text)
    os.chmod(full, mode)
    return full


def _read(full):
    with open(full, encoding='utf-8') as handle:
        return handle.read()


def test_apply_and_roll_back_every_kind_of_change(tmp_path):
    root = str(tmp_path)
    changed = _write(root, 'etc/a.conf', 'old\n', 0o600)
    removed = _write(root, 'etc/gone.conf', 'gone\n')
    transaction = _files.Transaction(root)
    transaction.apply(_files.FileChange('/etc/a.conf', 'old\n', 'new\n'))
    transaction.apply(_files.FileChange('/etc/new/b.conf', None, 'b\n', 0o755))
    transaction.apply(_files.FileChange('/etc/gone.conf', 'gone\n', None))
    transaction.apply(_files.FileChange('/etc/same.conf', None, None))  # unchanged: nothing happens
    assert _read(changed) == 'new\n'
    assert os.stat(changed).st_mode & 0o777 == 0o600  # mode None keeps the existing file's mode
    assert os.stat(os.path.join(root, 'etc/new/b.conf')).st_mode & 0o777 == 0o755
    assert not os.path.exists(removed)
    assert not os.path.exists(os.path.join(root, 'etc/same.conf'))

    assert transaction.rollback() == []
    assert _read(changed) == 'old\n'
    assert _read(removed) == 'gone\n'
    assert not os.path.exists(os.path.join(root, 'etc/new/b.conf'))
    assert transaction.rollback() == []  # a second rollback has nothing left to undo


def test_a_refused_check_replaces_nothing_and_leaves_no_temporary_file(tmp_path):
    root = str(tmp_path)
    full = _write(root, 'etc/default/grub', 'GRUB_CMDLINE_LINUX=""\n')

    def refuse(temporary):
        assert _read(temporary) == 'GRUB_CMDLINE_LINUX="\n'
        raise _files.FileError('sh -n: unterminated quote')

    with pytest.raises(_files.FileError, match='unterminated quote'):
        _files.Transaction(root).apply(_files.FileChange('/etc/default/grub', 'GRUB_CMDLINE_LINUX=""\n',
                                                         'GRUB_CMDLINE_LINUX="\n'), check=refuse)
    assert _read(full) == 'GRUB_CMDLINE_LINUX=""\n'
    assert os.listdir(os.path.dirname(full)) == ['grub']


def test_backups_are_made_of_replaced_files_only(tmp_path):
    root = str(tmp_path)
    _write(root, 'etc/a.conf', 'old\n')
    made = []
    transaction = _files.Transaction(root, backup=lambda path: made.append(path) or path + '.bak')
    transaction.apply(_files.FileChange('/etc/a.conf', 'old\n', 'new\n'))
    transaction.apply(_files.FileChange('/etc/b.conf', None, 'b\n'))
    assert made == [os.path.join(root, 'etc/a.conf')]
    assert transaction.backups == [os.path.join(root, 'etc/a.conf.bak')]


def test_remembered_files_changed_by_another_tool_are_restored(tmp_path):
    root = str(tmp_path)
    entry = _write(root, 'boot/loader/entries/a.conf', 'options root=/dev/vda1\n')
    transaction = _files.Transaction(root)
    transaction.remember('/boot/loader/entries/a.conf', 'options root=/dev/vda1\n')
    _write(root, 'boot/loader/entries/a.conf', 'options root=/dev/vda1 intel_iommu=on\n')  # e.g. grubby
    assert transaction.rollback() == []
    assert _read(entry) == 'options root=/dev/vda1\n'


def test_links_are_replaced_never_followed_and_never_lead_out(tmp_path):
    root = str(tmp_path / 'root')
    outside = _write(str(tmp_path), 'outside.conf', 'host\n')
    os.makedirs(os.path.join(root, 'etc'))
    os.symlink(outside, os.path.join(root, 'etc/a.conf'))
    with pytest.raises(_files.FileError, match='is a symbolic link'):
        _files.read_text(root, '/etc/a.conf')
    _files.Transaction(root).apply(_files.FileChange('/etc/a.conf', 'host\n', 'new\n'))
    assert _read(outside) == 'host\n'
    assert not os.path.islink(os.path.join(root, 'etc/a.conf'))
    os.symlink('/../../..', os.path.join(root, 'up'))
    assert _files.location(root, '/up/x.conf') == os.path.join(root, 'x.conf')
    assert _files.read_text(root, '/etc/missing.conf') is None
