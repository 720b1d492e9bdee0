# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every role has a README (Galaxy refuses a collection without), generated from its argument specs."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(CHECKOUT, 'scripts', 'gen_role_readmes.py')
ROLES = sorted(os.listdir(os.path.join(CHECKOUT, 'roles')))


def test_role_readmes_are_generated_from_the_current_argument_specs():
    result = subprocess.run([sys.executable, SCRIPT, '--check'], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + 'run: .venv/bin/python scripts/gen_role_readmes.py'


def test_every_role_readme_lists_every_variable_of_its_argument_specs():
    assert ROLES, 'no roles found'
    for role in ROLES:
        with open(os.path.join(CHECKOUT, 'roles', role, 'meta', 'argument_specs.yml')) as f:
            specs = yaml.safe_load(f)['argument_specs']
        with open(os.path.join(CHECKOUT, 'roles', role, 'README.md')) as f:
            readme = f.read()
        assert 'virtdev.libvirt.%s' % role in readme
        for entry in specs.values():
            for name in entry.get('options') or {}:
                assert '| `%s` |' % name in readme, '%s: %s missing from README.md' % (role, name)
