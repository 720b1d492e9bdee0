# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Smoke test of the benchmark harness: N=3 guests x M=4 devices, every scenario, once, on the embedded driver.

It asserts what the full benchmark relies on: each of our tools and the floor leaves exactly the declared
devices, check mode and a no-change run rewrite no definition and make no write call, the harness notices
a peer that is not idempotent (the unguarded virsh loop duplicates NICs), and the report renders.
"""

from __future__ import annotations

import os
import shutil

import pytest

from . import report, runner
from . import tools as tl

pytestmark = pytest.mark.skipif(shutil.which('virsh') is None or shutil.which('qemu-system-x86_64') is None,
                                reason='needs libvirt clients and QEMU (scripts/bootstrap.sh)')

CORRECT_TOOLS = ('floor', 'manifest', 'module', 'loop', 'virsh_guarded')
N, M = 3, 4


@pytest.fixture(scope='module')
def results(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp('bench'))
    caps = os.environ.get('VIRTDEV_QEMU_CAPS_CACHE') or os.path.join(tl.REPO, '.state', 'qemu-caps')
    plan = runner.Plan([N], M, ['embed'], list(CORRECT_TOOLS) + ['virsh', 'virt', 'virtxml'])
    return runner.run_plan(plan, workdir, tl.python_default(), None, caps, log=lambda *_: None)


def _rows(results, tool):
    return {row['scenario']: row for row in results['rows'] if row['tool'] == tool and 'scenario' in row}


@pytest.mark.parametrize('tool', CORRECT_TOOLS)
def test_every_scenario_is_correct(results, tool):
    rows = _rows(results, tool)
    expected = {'check', 'first', 'nochange', 'change'} if tl.TOOLS_BY_KEY[tool].check_mode else {'first', 'nochange', 'change'}
    assert {s for s, r in rows.items() if 'skipped' not in r} == expected
    for scenario in expected:
        row = rows[scenario]
        assert row['error'] == '', (scenario, row['error'])
        assert row['correct'] == row['checked'] == N, (scenario, row['problem'])
        assert row['wall'] > 0 and row['rss_kb'] > 0


@pytest.mark.parametrize('tool', CORRECT_TOOLS)
def test_writes_only_when_something_changes(results, tool):
    rows = _rows(results, tool)
    for scenario in ('first', 'change'):
        assert rows[scenario]['changed'] is True
        assert rows[scenario]['rewritten'] == N
    assert rows['nochange']['changed'] is False
    assert rows['nochange']['rewritten'] == 0
    assert rows['nochange']['writes'] == 0
    if 'check' in rows and 'skipped' not in rows['check']:
        assert rows['check']['changed'] is True
        assert rows['check']['rewritten'] == 0
        assert rows['check']['writes'] == 0


def test_the_result_grows_with_what_changed_and_the_baseline_is_measured(results):
    """A no-change manifest returns a few hundred bytes per guest at most (no manifest echo); a first apply returns
    each changed guest's commands, one per device (its whole device lists only with --diff). The do-nothing module
    with the same manifest is the baseline of the targets."""
    for tool in ('manifest', 'module'):
        rows = _rows(results, tool)
        assert 0 < rows['nochange']['result_bytes'] < 1500 + 200 * N, tool
        assert rows['first']['result_bytes'] > rows['nochange']['result_bytes'] + 50 * N * M, tool
    noop = _rows(results, 'noop')['nochange']
    assert noop['wall'] > 0 and noop['result_bytes'] > 0
    assert any(target.startswith('result of a no-change run < 50 KB') for target, _m, _v in report.targets(results))


@pytest.mark.parametrize('tool', ('floor', 'manifest', 'module', 'loop'))
def test_calls_are_counted(results, tool):
    rows = _rows(results, tool)
    assert rows['first']['calls']['define'] == N
    assert 'define' not in rows['nochange']['calls'] or rows['nochange']['calls']['define'] == 0
    assert rows['nochange']['calls']['xml'] >= N


def test_a_peer_that_is_not_idempotent_is_caught(results):
    rows = _rows(results, 'virsh')
    assert rows['first']['correct'] == N
    # attach-device --config accepts the same NIC twice: a re-run duplicates it
    assert rows['nochange']['changed'] is True
    assert rows['nochange']['rewritten'] == N
    assert rows['nochange']['correct'] == 0
    assert 'extra interface' in rows['nochange']['problem']


def test_peers_without_embed_support_are_reported(results):
    skipped = {row['tool']: row['skipped'] for row in results['rows'] if 'skipped' in row and 'scenario' not in row}
    assert set(skipped) == {'virt', 'virtxml'}
    assert 'embed' in skipped['virtxml']


def test_report_renders(results):
    text = report.markdown(results, png='performance.png')
    assert '| (2m) domain_devices manifest, module process only | first |' in text
    assert '| peak RSS MB | result KB |' in text
    verdicts = {target: verdict for target, _measured, verdict in report.targets(results)}
    assert verdicts['no write call on a no-change run'] == 'met'
    assert any(t.startswith('module peak RSS') for t in verdicts)
