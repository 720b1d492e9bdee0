# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Concurrent runs over the same guests lose no update (docs/concurrency.md, docs/reliability.md).

Two and four domain_devices processes (as Ansible runs modules: one process per task) start together
over the same 50 guests of the session's private libvirtd, each adding a device of its own (merged);
half of them walk the manifest backwards, so runs meet on guests from both ends. Afterwards every guest
must have every run's device (a lost update is one missing), every run must have succeeded or said why
(naming the guest), and every run's per-guest result must say it wrote the guest.

``VIRTDEV_RACE_ROUNDS`` (default 20) sets how many times each race runs: every round writes each guest once
per run, and libvirt's schema validation of a define costs ~20-50 ms of daemon CPU, so the 20 rounds of each
race (6,000 validated defines) take about 2.5 minutes on two idle cores.
"""

from __future__ import annotations

import os
import tempfile

import pytest

from reliability import Figures, Guests, ModuleProcess, by_domain  # pylint: disable=import-error

GUESTS = 50


def _race_image():
    """A file that is there: domain_devices refuses a disk whose file is not (guard source_exists)."""
    handle, path = tempfile.mkstemp(prefix='virtdev-race-', suffix='.img')
    os.close(handle)
    return path


ROUNDS = int(os.environ.get('VIRTDEV_RACE_ROUNDS', '20'))
# one device per racing run; ``marker`` is how the device shows in the definition libvirt keeps
RUN_DEVICES = (
    ({'kind': 'watchdog', 'model': 'i6300esb', 'action': 'reset'}, "<watchdog model='i6300esb'"),
    ({'kind': 'sound', 'model': 'ich9'}, "<sound model='ich9'"),
    ({'kind': 'rng', 'backend': '/dev/urandom'}, "<rng model='virtio'"),
    ({'kind': 'disk', 'target': 'vdb', 'source': {'file': _race_image()}}, "<target dev='vdb'"),
)


@pytest.fixture(scope='module')
def figures():
    data = Figures('races', guests=GUESTS, rounds=ROUNDS, races=[])
    yield data
    data.save()


@pytest.fixture(scope='module')
def guests(libvirtd_uri):
    guests = Guests(libvirtd_uri, 'race', GUESTS).connect()
    yield guests
    guests.remove()


@pytest.mark.parametrize('parallel', [2, 4])
def test_parallel_runs_lose_no_update(parallel, guests, tmp_path, collection_pythonpath, figures):
    tally = {'parallel': parallel, 'rounds': ROUNDS, 'runs': 0, 'failed_runs': 0, 'failed_without_reason': 0,
             'updates': 0, 'lost_updates': 0}
    problems = []
    for round_number in range(ROUNDS):
        guests.reset()
        runs = []
        for index in range(parallel):
            spec = RUN_DEVICES[index][0]
            order = guests.names if index % 2 == 0 else guests.names[::-1]
            args = {'uri': guests.uri, 'domains': [{'domain': name, 'config': [spec]} for name in order]}
            runs.append(ModuleProcess(tmp_path, collection_pythonpath, 'domain_devices', args,
                                      '%d-%d-%d' % (parallel, round_number, index)))
        results = [run.result() for run in runs]
        definitions = guests.definitions()
        for index, result in enumerate(results):
            tally['runs'] += 1
            if result['rc'] != 0:
                tally['failed_runs'] += 1
                named = any(('domain %s' % name) in result.get('msg', '') for name in guests.names)
                if not named:
                    tally['failed_without_reason'] += 1
                problems.append('round %d run %d failed: %s' % (round_number, index, result.get('msg')))
                continue
            entries = by_domain(result)
            not_written = [name for name in guests.names if entries[name]['outcome'] != 'written']
            if not_written:
                problems.append('round %d run %d: not written %s' % (round_number, index, not_written))
        for name, xml in definitions.items():
            for index in range(parallel):
                tally['updates'] += 1
                if RUN_DEVICES[index][1] not in xml:
                    tally['lost_updates'] += 1
                    problems.append('round %d: %s lost the device of run %d' % (round_number, name, index))
    figures.append('races', tally)
    figures.add('runs_raced', tally['runs'])
    figures.add('guests_checked', GUESTS * ROUNDS)
    figures.add('updates_checked', tally['updates'])
    figures.add('updates_lost', tally['lost_updates'])
    figures.add('failed_runs_without_reason', tally['failed_without_reason'])
    assert tally['lost_updates'] == 0 and tally['failed_without_reason'] == 0, problems[:20]
    assert problems == []
