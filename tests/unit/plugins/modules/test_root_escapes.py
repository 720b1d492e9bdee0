# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Writes never leave ``root``: every host module that writes files or sysfs, with each directory (and the
file itself) on the way to what it writes replaced by a symbolic link that leads out of the tree, both as
an absolute target and as a relative ``../..`` climb.

A module either resolves the link inside the root (as a chroot would: an absolute target starts again at
the root, ``..`` stops there) and writes there, or refuses naming the path. The tree outside the root is
compared byte for byte before and after, and every sysfs write the simulated kernel sees is checked to
lie inside the root after the OS resolves it.
"""

from __future__ import annotations

import os
import shutil

import pytest

from ansible_collections.virtdev.libvirt.plugins.modules import kernel_cmdline, mdev, sriov_vfs, vfio_bind
from ansible_collections.virtdev.libvirt.tests.unit.fixtures.bootloaders import trees
from ansible_collections.virtdev.libvirt.tests.unit.prepare_helpers import machine, run_module, snapshot

GPU = '0000:01:00.0'
PF1 = '0000:41:00.1'
IGPU = '0000:00:02.0'
NEW_MDEV = '3b9f6a2e-1c4d-4e5f-8a7b-9c0d1e2f3a4b'


def _grub_host(tmp_path, monkeypatch):
    root = str(tmp_path / 'host')
    os.makedirs(root)
    trees.debian_grub(root, default='quiet')
    os.makedirs(os.path.join(root, 'etc/default/grub.d'))
    return root, None


def _fixture_host(name):
    def build(tmp_path, monkeypatch):
        return machine(tmp_path, monkeypatch, name)
    return build


# module, how to build its host, its parameters, the paths it writes (each level of each is tried)
SCENARIOS = {
    'kernel_cmdline': (kernel_cmdline, _grub_host, dict(args=['intel_iommu=on'], update_bootloader=False),
                       ['etc/default/grub', 'etc/default/grub.d']),
    'vfio_bind': (vfio_bind, _fixture_host('desktop'),
                  dict(addresses=[GPU], whole_group=True, persistent=True, update_initramfs=False, timeout=0),
                  ['etc/udev/rules.d/40-virtdev-vfio-pci.rules', 'sys/bus/pci/devices/%s' % GPU,
                   'sys/bus/pci/drivers_probe']),
    'sriov_vfs': (sriov_vfs, _fixture_host('sriov'), dict(pf=PF1, num_vfs=2, persistent=True, timeout=0),
                  ['etc/udev/rules.d/70-virtdev-sriov-0000_41_00_1.rules', 'sys/bus/pci/devices/%s' % PF1]),
    'mdev': (mdev, _fixture_host('mdev'),
             dict(uuid=NEW_MDEV, parent=IGPU, mdev_type='i915-GVTg_V5_8', persistent=True, persist_with='mdevctl',
                  timeout=0),
             ['etc/mdevctl.d/%s/%s' % (IGPU, NEW_MDEV), 'sys/bus/pci/devices/%s/mdev_supported_types' % IGPU]),
}


def _levels(paths):
    """Every prefix of every written path, shortest first, once."""
    levels = []
    for path in paths:
        parts = path.split('/')
        for end in range(1, len(parts) + 1):
            level = '/'.join(parts[:end])
            if level not in levels:
                levels.append(level)
    return levels


CASES = [(name, level, style) for name, scenario in SCENARIOS.items() for level in _levels(scenario[3])
         for style in ('absolute', 'relative')]


def _escape(root, outside, level, style, is_dir):
    """Move what is at ``level`` (or an empty stand-in: a directory or a file) out of the tree and leave a
    link to it there."""
    here = os.path.join(root, level)
    there = os.path.join(outside, level.replace('/', '_'))
    real = os.path.realpath(here)
    if os.path.isdir(real):
        shutil.copytree(real, there, symlinks=True)
    elif os.path.exists(real):
        shutil.copy2(real, there)
    elif is_dir:
        os.makedirs(there)
    else:
        os.makedirs(os.path.dirname(there), exist_ok=True)
        with open(there, 'w', encoding='utf-8') as handle:
            handle.write('# outside the tree\n')
    if os.path.islink(here) or os.path.isfile(here):
        os.unlink(here)
    elif os.path.isdir(here):
        shutil.rmtree(here)
    os.makedirs(os.path.dirname(here), exist_ok=True)
    target = there if style == 'absolute' else os.path.relpath(there, os.path.dirname(here))
    assert style == 'absolute' or target.startswith('..')
    os.symlink(target, here)


@pytest.mark.parametrize('name, level, style', CASES, ids=['%s-%s-%s' % case for case in CASES])
def test_writes_stay_inside_root(capsys, tmp_path, monkeypatch, name, level, style):
    module, build, params, paths = SCENARIOS[name]
    root, kernel = build(tmp_path, monkeypatch)
    outside = str(tmp_path / 'outside')
    os.makedirs(outside)
    _escape(root, outside, level, style, any(path.startswith(level + '/') for path in paths))
    before = snapshot(outside)
    if kernel is not None:
        seen = []
        original = kernel.write

        def checked_write(path, value):
            seen.append(path)
            real = os.path.realpath(path)
            assert real.startswith(kernel.root + os.sep), 'sysfs write outside the tree: %s -> %s' % (path, real)
            return original(path, value)
        monkeypatch.setattr('ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare.sysfs_writer.write_attribute',
                            checked_write)
    result = run_module(capsys, module, root=root, **params)
    assert snapshot(outside) == before, 'something was written outside the tree'
    if result['rc'] != 0:
        # refused: the message says why, naming a path; a refusal before any write writes nothing
        assert result['msg'], result
        if result.get('changed') is False and kernel is not None:
            assert kernel.writes == [] or 'rolled back' in result['msg'], result
    for path in result.get('files', []):
        assert os.path.realpath(path).startswith(os.path.realpath(root) + os.sep), path
