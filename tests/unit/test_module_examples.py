# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every task of every module's EXAMPLES parses, and the host-side ones run: so the docs cannot rot.

The host modules' examples run for real (not in check mode) on fixture machines whose devices match
the examples (tests/unit/fixtures/sysfs, a FakeKernel behind every sysfs write) and on fixture
bootloader trees; ``root`` is the fixture's. The libvirt modules' examples run against the embedded
QEMU driver in tests/functional/test_module_examples.py.
"""

from __future__ import annotations

import ast
import glob
import os

import pytest
import yaml

from ansible_collections.virtdev.libvirt.plugins.modules import (
    host_devices_info, kernel_cmdline, mdev, sriov_vfs, vfio_bind)
from ansible_collections.virtdev.libvirt.tests.unit.fixtures.bootloaders import trees
from ansible_collections.virtdev.libvirt.tests.unit.prepare_helpers import machine, run_module

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = 'virtdev.libvirt.'


def module_examples(path):
    """The EXAMPLES of a module file, parsed: a list of tasks."""
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', None) == 'EXAMPLES':
            return yaml.safe_load(node.value.value)
    raise AssertionError('%s has no EXAMPLES' % path)


def example_tasks(module_name):
    """(task name, module, args) of each task of ``module_name``'s EXAMPLES that runs a module of ours."""
    tasks = module_examples(os.path.join(CHECKOUT, 'plugins', 'modules', module_name + '.py'))
    found = []
    for task in tasks:
        for key, args in task.items():
            if key.startswith(PREFIX):
                found.append((task['name'], key[len(PREFIX):], args or {}))
    return found


MODULE_FILES = sorted(glob.glob(os.path.join(CHECKOUT, 'plugins', 'modules', '*.py')))


@pytest.mark.parametrize('path', MODULE_FILES, ids=os.path.basename)
def test_examples_are_named_tasks_that_use_the_module(path):
    tasks = module_examples(path)
    name = os.path.basename(path)[:-3]
    assert isinstance(tasks, list) and tasks, 'EXAMPLES must be a list of tasks'
    for task in tasks:
        assert isinstance(task, dict) and task.get('name'), 'every example task has a name: %r' % task
    assert any(PREFIX + name in task for task in tasks), 'no example uses %s%s' % (PREFIX, name)


# Host modules: the fixture machine (or bootloader tree) each module's examples run on, and what an
# example may refer to that a fixture path replaces.
HOST_MODULES = {
    'vfio_bind': (vfio_bind, 'desktop'),
    'sriov_vfs': (sriov_vfs, 'sriov'),
    'mdev': (mdev, 'mdev'),
    'host_devices_info': (host_devices_info, 'desktop'),
}


def _igb_nic(spec):
    """The example's NIC 0000:03:00.0 (an I210 on vfio-pci) has igb as its host driver."""
    for entry in spec['pci']:
        if entry['address'] == '0000:03:00.0':
            entry['host_driver'] = 'igb'


# the world an example assumes that its module's fixture machine does not show by default
MUTATIONS = {'Hand a NIC back to its host driver': _igb_nic}
HOST_CASES = [(module, task, args) for module in HOST_MODULES for task, _m, args in example_tasks(module)
              if _m == module]


@pytest.mark.parametrize('module_name, task, args', HOST_CASES, ids=[c[1][:60] for c in HOST_CASES])
def test_host_module_example_runs_on_a_fixture_machine(module_name, task, args, capsys, tmp_path, monkeypatch):
    module, fixture = HOST_MODULES[module_name]
    root, _kernel = machine(tmp_path, monkeypatch, fixture, MUTATIONS.get(task))
    params = dict(args, root=root)
    if module_name == 'host_devices_info':
        params['libvirt'] = False   # no libvirtd in a fixture
    if module_name == 'mdev':
        params['persist_with'] = 'mdevctl'
    result = run_module(capsys, module, **params)
    assert result['rc'] == 0 and not result.get('failed'), '%s: %s' % (task, result.get('msg', result))


CMDLINE_CASES = example_tasks('kernel_cmdline')


@pytest.mark.parametrize('task, module_name, args', CMDLINE_CASES, ids=[c[0][:60] for c in CMDLINE_CASES])
def test_kernel_cmdline_example_runs_on_a_debian_grub_tree(task, module_name, args, capsys, tmp_path):
    root = str(tmp_path / 'root')
    trees.debian_grub(root, linux='iommu=pt')
    result = run_module(capsys, kernel_cmdline, root=root, **args)
    assert result['rc'] == 0 and not result.get('failed'), '%s: %s' % (task, result.get('msg', result))
    assert module_name == 'kernel_cmdline'
