# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running the host preparation modules (vfio_bind, sriov_vfs, mdev) on fixture trees with a FakeKernel."""

from __future__ import annotations

import json
import os

import pytest

from ansible.module_utils.ansible_release import __version__ as ANSIBLE_CORE_VERSION
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args  # public since ansible-core 2.19

try:  # private, version-guarded: ansible-core 2.19+ routes module warnings by it (see run_module)
    from ansible.module_utils import _internal as _ansible_internal
except ImportError:  # pragma: no cover - an ansible-core without it has no such routing
    _ansible_internal = None

from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import sysfs_writer
from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import build_with_kernel


def _reset_warnings():
    """Warnings are collected process-wide by ansible-core; each in-process module run starts afresh."""
    for name in ('_global_warnings', '_global_deprecations'):
        collected = getattr(ansible_warnings, name, None)
        if isinstance(collected, (dict, list)):
            collected.clear()


# ansible-core 2.21 returns ``invocation`` (the echo of the module's arguments) only with INJECT_INVOCATION on,
# which is off by default; 2.19 always returns it
INJECTS_INVOCATION_ON_REQUEST = tuple(int(part) for part in ANSIBLE_CORE_VERSION.split('.')[:2]) >= (2, 21)


def run_module(capsys, module, check=False, diff=False, **params):
    """Run ``module.main()`` as Ansible would; the JSON result with ``rc`` (0 or 1) added."""
    _reset_warnings()
    params['_ansible_check_mode'] = check
    params['_ansible_diff'] = diff
    if INJECTS_INVOCATION_ON_REQUEST:  # the echo as a user who turns INJECT_INVOCATION on sees it
        params['_ansible_inject_invocation'] = True
    # once any controller code is imported in this process (a filter plugin's test imports ansible.errors),
    # module warnings would go to the controller's display instead of the result: run as on a target
    routing = _ansible_internal is not None and hasattr(_ansible_internal, 'is_controller')
    if routing:
        controller, _ansible_internal.is_controller = _ansible_internal.is_controller, False
    try:
        with patch_module_args(params):
            with pytest.raises(SystemExit) as exc:
                module.main()
    finally:
        if routing:
            _ansible_internal.is_controller = controller
    result = json.loads(capsys.readouterr().out)
    result['rc'] = exc.value.code
    return result


def expect_refused(capsys, module, root, kernel, **params):
    """Run ``module``, expect a failure, and check that nothing was written: no sysfs write, no file changed."""
    start = snapshot(root)
    result = run_module(capsys, module, root=root, **params)
    assert result['rc'] == 1, result
    assert kernel.writes == [] and snapshot(root) == start
    return result


def snapshot(root):
    """Every file, link and directory below ``root`` with its content or target."""
    state = {}
    for directory, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(directory, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                state[rel] = ('link', os.readlink(path))
            elif os.path.isdir(path):
                state[rel] = ('dir',)
            else:
                with open(path, 'rb') as handle:
                    state[rel] = ('file', handle.read(), os.stat(path).st_mode & 0o777)
    return state


def machine(tmp_path, monkeypatch, name, mutate=None):
    """Write fixture ``name`` and put a FakeKernel behind every sysfs write: ``(root, kernel)``."""
    root, kernel = build_with_kernel(name, tmp_path, mutate)
    monkeypatch.setattr(sysfs_writer, 'write_attribute', kernel.write)
    return root, kernel


def cycle(capsys, module, root, kernel, **params):
    """check -> apply -> apply -> check: the first two change, the last two do not, check writes nothing.
    Returns (checked, applied)."""
    start = snapshot(root)
    writes_before = len(kernel.writes)
    checked = run_module(capsys, module, check=True, diff=True, root=root, **params)
    assert checked['rc'] == 0, checked
    assert checked['changed'] is True and checked['diff']
    assert snapshot(root) == start, 'check mode wrote something'
    assert len(kernel.writes) == writes_before, 'check mode wrote to sysfs'

    applied = run_module(capsys, module, root=root, **params)
    assert applied['rc'] == 0, applied
    assert applied['changed'] is True and 'diff' not in applied
    assert snapshot(root) != start
    assert [(w['path'], w['value']) for w in applied['writes']] == \
        [(w['path'], w['value']) for w in checked['writes']], 'check mode predicted other writes'
    assert applied.get('files') == checked.get('files')
    after_apply = snapshot(root)

    again = run_module(capsys, module, root=root, **params)
    assert again['rc'] == 0 and again['changed'] is False, again
    assert again['writes'] == [] and again.get('files', []) == []
    assert snapshot(root) == after_apply

    rechecked = run_module(capsys, module, check=True, diff=True, root=root, **params)
    assert rechecked['rc'] == 0 and rechecked['changed'] is False and 'diff' not in rechecked
    return checked, applied


def warnings(result):
    """The warning texts of a result (ansible-core 2.19 returns them as structured events)."""
    texts = []
    for warning in result.get('warnings', []):
        if isinstance(warning, dict):
            warning = (warning.get('event') or {}).get('msg') or warning.get('msg') or str(warning)
        texts.append(warning)
    return texts


def read(root, path):
    try:
        with open(os.path.join(root, path.lstrip('/')), encoding='utf-8') as handle:
            return handle.read()
    except FileNotFoundError:
        return None
