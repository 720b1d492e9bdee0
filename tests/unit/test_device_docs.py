# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The device option docs are generated from the kind table; they must not be stale."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from ansible_collections.virtdev.libvirt.plugins.doc_fragments.device_config import ModuleDocFragment
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import all_kinds, device_argument_spec

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_fragment_is_generated_from_the_current_table():
    script = os.path.join(CHECKOUT, 'scripts', 'gen_device_docs.py')
    result = subprocess.run([sys.executable, script, '--check'], check=False)
    assert result.returncode == 0, 'run: .venv/bin/python scripts/gen_device_docs.py'


def test_every_option_of_every_kind_is_documented_with_its_kind():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']['config']['suboptions']
    assert set(documented) == set(device_argument_spec())
    for kind in all_kinds():
        for option in kind.fields:
            text = ' '.join(documented[option]['description'])
            assert 'kind=%s)' % kind.name in text, (kind.label, option)
