# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The domain settings docs are generated from the settings table; they must not be stale."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from ansible_collections.virtdev.libvirt.plugins.doc_fragments.domain_settings import ModuleDocFragment
from ansible_collections.virtdev.libvirt.plugins.module_utils._domain_settings import argument_spec

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_fragment_is_generated_from_the_current_table():
    script = os.path.join(CHECKOUT, 'scripts', 'gen_domain_docs.py')
    result = subprocess.run([sys.executable, script, '--check'], check=False)
    assert result.returncode == 0, 'run: .venv/bin/python scripts/gen_domain_docs.py'


def test_every_setting_is_documented_with_its_suboptions():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)['options']

    def same(doc, spec, where):
        assert set(doc) == set(spec), where
        for name, entry in spec.items():
            assert doc[name]['type'] == entry['type'], where + name
            assert doc[name].get('choices') == entry.get('choices'), where + name
            if 'options' in entry:
                same(doc[name]['suboptions'], entry['options'], where + name + '.')

    same(documented, argument_spec(), '')
