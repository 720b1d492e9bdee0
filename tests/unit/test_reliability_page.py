# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""docs/reliability.md is written by scripts/render_reliability.py (run by scripts/test.sh): the committed
page must have the structure the script writes today, and the script must render every section."""

from __future__ import annotations

import importlib.util
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def renderer():
    spec = importlib.util.spec_from_file_location('render_reliability',
                                                  os.path.join(REPO, 'scripts', 'render_reliability.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SAMPLE = {
    'faults.json': {'faults_injected': 9, 'guests_checked': 320, 'duration_s': 50.0, 'scenarios': [
        {'name': 'libvirtd killed (SIGKILL) mid-manifest', 'guests': 100, 'killed_after_defines': 50,
         'outcomes': {'written': 49, 'unknown': 1, 'not_written': 50}, 'torn': 0, 'rerun_wrote': 50},
        {'name': 'guest renamed between read and write', 'guests': 3}]},
    'races.json': {'guests': 50, 'runs_raced': 60, 'updates_lost': 0, 'guests_checked': 1000, 'duration_s': 99.0,
                   'races': [{'parallel': 2, 'rounds': 10, 'runs': 20, 'failed_runs': 0, 'failed_without_reason': 0,
                              'updates': 1000, 'lost_updates': 0}]},
    'hostile_inputs.json': {'cases': 85, 'modules': {'domain_devices': 40, 'domain': 10}, 'refused_before_write': 85},
}


def test_committed_page_has_the_structure_the_script_writes():
    with open(os.path.join(REPO, 'docs', 'reliability.md'), encoding='utf-8') as handle:
        committed = handle.read()
    script = renderer()
    assert script.structure(committed) == script.structure(script.render({})), \
        'docs/reliability.md is stale: run scripts/test.sh --only functional (or render_reliability.py DIR)'


def test_every_section_renders_its_figures():
    script = renderer()
    page = script.render(SAMPLE)
    assert 'Not measured' not in page
    assert '| faults injected | 9 |' in page and '| runs raced | 60 |' in page and '| inputs tried | 85 |' in page
    assert '| guests checked | 1320 |' in page and '| updates lost | 0 |' in page
    assert 'killed after 50 definitions were written; results: 49 written, 1 unknown, 50 not written' in page
    assert '| domain_devices | 40 |' in page and 'refused before anything was written: **85**' in page


def test_a_missing_file_is_said_not_measured():
    script = renderer()
    page = script.render({'races.json': SAMPLE['races.json']})
    assert '| faults injected | not measured |' in page and '| updates lost | 0 |' in page
    assert page.count('Not measured in the run that wrote this page') == 2
