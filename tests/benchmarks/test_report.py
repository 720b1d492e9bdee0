# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The report's verdicts on hand-made results: what the page says must follow from the rows (no libvirt needed)."""

from __future__ import annotations

import shlex

from . import report
from .cli import recorded_command

ENV = {'host': 'x86_64', 'python': '3.11', 'libvirt': '9.0.0', 'qemu': 'QEMU 7.2', 'virt-xml': '4.1.0', 'commit': 'abc'}


def _row(tool, scenario, wall, cpu, n=50, **extra):
    row = {'tool': tool, 'scenario': scenario, 'wall': wall, 'cpu': cpu, 'backend': 'libvirtd', 'n': n, 'm': 10,
           'load': 0.5, 'writes': 0, 'rewritten': 0, 'correct': n, 'checked': n, 'calls': {}, 'changed': False}
    row.update(extra)
    return row


def _results(rows, sizes=(50,), fleet=()):
    return {'env': ENV, 'rows': list(rows), 'startup': 1.0, 'devices': 10, 'sizes': list(sizes), 'repeat': 1,
            'mix': {}, 'fleet': list(fleet), 'profile': '', 'runtime': 10.0, 'command': 'x'}


def _verdicts(results):
    return {target: verdict for target, _measured, verdict in report.targets(results)}


def test_own_work_below_zero_is_not_measurable_and_never_met():
    rows = [_row('floor', 'nochange', 0.1, 0.1), _row('manifest', 'nochange', 1.0, 1.0),
            _row('noop', None, 1.3, 1.2), _row('module', 'nochange', 0.2, 0.2)]
    verdict = _verdicts(_results(rows))['no-change re-apply: own work ≤ 1.5 x floor + 0.5 s (libvirtd, N=50)']
    assert verdict.startswith('not measurable') and 'CPU: not measurable' in verdict and 'met' not in verdict


def test_faster_than_a_peer_that_failed_is_not_comparable():
    rows = [_row('manifest', 'nochange', 1.0, 1.0, n=200),
            _row('virsh_guarded', 'nochange', 50.0, 40.0, n=200, correct=0)]
    verdicts = _verdicts(_results(rows, sizes=(200,)))
    found = [verdict for target, verdict in verdicts.items() if target.startswith('≥ 10x faster than (5g)')]
    assert found and all(verdict.startswith('not comparable (the peer left 0 of 200') for verdict in found)


def test_a_fleet_only_run_has_verdicts_and_a_page():
    fleet = [{'k': 1, 'n': 20, 'm': 10, 'scenario': 'nochange', 'wall': 1.0, 'walls': [1.0, 1.1, 0.9], 'cpu': 1.0,
              'load': 0.5, 'slowest_alone': 0.9, 'alone': [0.9], 'ratio': 1.0 / 0.9, 'changed': False, 'writes': 0,
              'rewritten': 0, 'correct': 20, 'checked': 20, 'result_bytes': 100, 'error': None}]
    results = _results([], sizes=(), fleet=fleet)
    assert _verdicts(results) == {'fleet nochange, K=1: wall ≤ 1.3 x slowest host alone': 'met'}
    page = report.markdown(results)
    assert '## Fleet' in page and '1.00 1.10 0.90' in page and '## Wall time' not in page


def test_the_recorded_command_can_be_pasted_again():
    argv = ['--command-line', 'tests/benchmarks/run.sh', '--m-growth', '', '--sizes', '50,200', '--sample', 'a:b=1']
    command = recorded_command('tests/benchmarks/run.sh', argv)
    assert shlex.split(command) == ['tests/benchmarks/run.sh', '--m-growth', '', '--sizes', '50,200', '--sample', 'a:b=1']
