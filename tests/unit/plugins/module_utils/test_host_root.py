# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""host.root: paths below a root resolve inside it, for reads and for writes."""

from __future__ import annotations

import os

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import config_files
from ansible_collections.virtdev.libvirt.plugins.module_utils import _files
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import root as host_root


def test_links_resolve_like_a_chroot(tmp_path):
    root = str(tmp_path / 'root')
    os.makedirs(os.path.join(root, 'etc/real'))
    os.symlink('/etc/real', os.path.join(root, 'etc/absolute'))
    os.symlink('../../../../../../../etc/real', os.path.join(root, 'etc/climbing'))
    for name in ('absolute', 'climbing'):
        assert host_root.real_path(root, '/etc/%s/x.conf' % name) == os.path.join(root, 'etc/real/x.conf')
        assert host_root.resolve(root, 'etc/%s' % name) == 'etc/real'
    # a missing directory is kept as written, to be created inside the root
    assert host_root.real_path(root, '/etc/absolute/new/x') == os.path.join(root, 'etc/real/new/x')
    assert host_root.resolve(root, 'etc/absolute/new') is None
    assert host_root.real_path('/', '/etc/x') == '/etc/x'


def test_link_loops_are_refused_naming_the_path(tmp_path):
    root = str(tmp_path)
    os.symlink('b', os.path.join(root, 'a'))
    os.symlink('a', os.path.join(root, 'b'))
    with pytest.raises(host_root.OutsideRoot, match='/a/x.conf: too many levels'):
        host_root.real_path(root, '/a/x.conf')
    with pytest.raises(_files.FileError, match='/a/x.conf'):
        _files.resolved(root, '/a/x.conf')
    with pytest.raises(_files.FileError, match='/a: too many levels'):
        config_files.shown(root, '/a/x.conf')
    assert host_root.resolve(root, 'a') is None


def test_a_link_swapped_in_after_resolution_is_refused(tmp_path, monkeypatch):
    """The final check is the OS's own view: a path that resolves outside is refused."""
    root = str(tmp_path / 'root')
    outside = str(tmp_path / 'outside')
    os.makedirs(os.path.join(root, 'etc'))
    os.makedirs(outside)
    real_walk = host_root._walk

    def racing_walk(base, relative, missing_ok):
        result = real_walk(base, relative, missing_ok)
        os.rmdir(os.path.join(root, 'etc'))
        os.symlink(outside, os.path.join(root, 'etc'))  # swapped in between resolution and use
        return result
    monkeypatch.setattr(host_root, '_walk', racing_walk)
    with pytest.raises(host_root.OutsideRoot, match='outside'):
        host_root.real_path(root, '/etc/x.conf')
