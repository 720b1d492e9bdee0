# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark stdout callback: prints nothing, writes each task's outcome to $BENCH_RESULT_FILE as JSON.

Per task: name, changed, failed, msg, the size of its result as JSON (``result_bytes``), and per loop item (or
once for a plain task) ``changed``, ``failed`` and ``libvirt_calls`` when the module returned them.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = '''
name: bench_json
type: stdout
short_description: Record task outcomes for tests/benchmarks
description: Writes every task's changed/failed state and libvirt_calls to $BENCH_RESULT_FILE.
'''


def _payload(result):
    data = getattr(result, 'result', None)
    if not isinstance(data, dict):
        data = result._result  # pylint: disable=protected-access
    return data


def _summary(data):
    return {'changed': bool(data.get('changed')), 'failed': bool(data.get('failed')),
            'msg': str(data.get('msg', ''))[:500] if data.get('failed') else '',
            'libvirt_calls': data.get('libvirt_calls'),
            # the result as the controller holds it (registered, handed to callbacks), invocation included
            'result_bytes': len(json.dumps(data, default=str))}


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'bench_json'

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tasks = []

    def _record(self, result, failed=False):
        data = _payload(result)
        entry = _summary(data)
        if failed:
            entry['failed'] = True
            entry['msg'] = entry['msg'] or str(data.get('msg', 'failed'))[:500]
        entry['task'] = result.task_name if hasattr(result, 'task_name') else str(result._task)  # pylint: disable=protected-access
        if isinstance(data.get('results'), list) and data['results'] and 'ansible_loop_var' in data['results'][0]:
            entry['items'] = [_summary(item) for item in data['results']]
        self.tasks.append(entry)

    def v2_runner_on_ok(self, result):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, failed=True)

    def v2_runner_on_unreachable(self, result):
        self._record(result, failed=True)

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get('BENCH_RESULT_FILE')
        if path:
            with open(path, 'w', encoding='utf-8') as handle:
                json.dump({'tasks': self.tasks}, handle)
