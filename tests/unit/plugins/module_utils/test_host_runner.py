# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host runner's paths with a scripted operation and real files below a temporary root: bad input and
refusals change nothing, check mode predicts without writing, apply reads back, and a failed apply puts
the files back and reports what is really left."""

from __future__ import annotations

import os

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _files
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import runner
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare.sysfs_writer import PrepareError

CONF = '/etc/example.conf'


class Exit(Exception):
    def __init__(self, failed, result):
        super(Exit, self).__init__(result)
        self.failed = failed
        self.result = result


class FakeModule:
    """What the runner uses of an AnsibleModule; exits raise ``Exit`` with the result."""

    argument_spec = {'root': {'type': 'path'}, 'fail': {'type': 'str'}}

    def __init__(self, root, check_mode=False, diff=False, **params):
        self.params = dict(root=root, **params)
        self.check_mode = check_mode
        self._diff = diff
        self.warnings = []

    def warn(self, text):
        self.warnings.append(text)

    def atomic_move(self, src, dest, unsafe_writes=False):
        os.replace(src, dest)

    def fail_json(self, **result):
        raise Exit(True, result)

    def exit_json(self, **result):
        raise Exit(False, result)


class Scripted(runner.Operation):
    """Writes CONF and 'counts' to a simulated device; ``params['fail']`` names the step that fails."""

    def plan(self):
        self.steps = ['plan']
        self.device = {'count': 0}
        fail = self.params.get('fail')
        if fail == 'input':
            raise ValueError('count: -1 must not be negative')
        if fail == 'guard':
            raise runner.Refused(['the device is host-critical [guard host_critical]'], notes=['IOMMU group 1: x'])
        self.warnings.append('planned with a warning')
        before = _files.read_text(self.root, CONF)
        self.file_changes = [_files.FileChange(CONF, before, 'count=2\n')]

    @property
    def changed(self):
        return any(change.changed for change in self.file_changes) or self.device['count'] != 2

    def predict(self):
        self.steps.append('predict')
        return {'count': 2}

    def apply(self, files):
        self.steps.append('apply')
        for change in self.file_changes:
            files.apply(change)
        self.device['count'] = 2
        if self.params.get('fail') == 'apply':
            raise PrepareError('writing 2 to sriov_numvfs failed: EBUSY')
        if self.params.get('fail') == 'stuck':
            raise PrepareError('the device did not settle')

    def roll_back(self, error, file_problems):
        self.steps.append('roll_back')
        if self.params.get('fail') == 'stuck':
            return runner.Failed('%s; rolling back failed too' % error, changed=True, steps=self.steps)
        self.device['count'] = 0
        return runner.Failed('%s; rolled back' % error, changed=bool(file_problems), steps=self.steps)

    def read_back(self):
        self.steps.append('read_back')
        if self.params.get('fail') == 'after':
            raise runner.Failed('update-initramfs failed (rc=1) after the file was written', changed=True)
        return dict(self.device)

    def result(self, after):
        return {'after': after, 'steps': self.steps, 'files': self.files()}

    def diff(self, after):
        return [{'before_header': 'device', 'after_header': 'device', 'before': '0\n', 'after': '%d\n' % after['count']}]


def run(tmp_path, **kwargs):
    module = FakeModule(str(tmp_path), **kwargs)
    with pytest.raises(Exit) as exc:
        runner.run(module, Scripted)
    return exc.value, module


def conf(tmp_path):
    path = tmp_path / CONF.lstrip('/')
    return path.read_text() if path.exists() else None


@pytest.fixture
def root(tmp_path):
    (tmp_path / 'etc').mkdir()
    (tmp_path / 'etc' / 'example.conf').write_text('count=0\n')
    return tmp_path


def test_bad_input_changes_nothing(root):
    end, _module = run(root, fail='input')
    assert end.failed and end.result == {'msg': 'count: -1 must not be negative (nothing was changed)'}
    assert conf(root) == 'count=0\n'


def test_a_refusal_changes_nothing_and_names_the_guard(root):
    end, module = run(root, fail='guard')
    assert end.failed and end.result['changed'] is False
    assert end.result['msg'] == ('refused, nothing was changed: the device is host-critical [guard host_critical]; '
                                 'IOMMU group 1: x')
    assert end.result['errors'] == ['the device is host-critical [guard host_critical]']
    assert conf(root) == 'count=0\n' and module.warnings == []


def test_root_must_be_a_directory(tmp_path):
    end, _module = run(tmp_path / 'missing')
    assert end.failed and end.result['msg'].startswith('root: ') and 'is not a directory' in end.result['msg']


def test_check_mode_predicts_and_writes_nothing(root):
    end, module = run(root, check_mode=True, diff=True)
    assert not end.failed and end.result['changed'] is True
    assert end.result['steps'] == ['plan', 'predict'] and end.result['after'] == {'count': 2}
    assert conf(root) == 'count=0\n'
    assert [entry['before_header'] for entry in end.result['diff']] == ['device', str(root / 'etc/example.conf')]
    assert end.result['diff'][1]['after'] == 'count=2\n'
    assert module.warnings == ['planned with a warning']


def test_apply_reads_back(root):
    end, _module = run(root)
    assert not end.failed and end.result['changed'] is True and 'diff' not in end.result
    assert end.result['steps'] == ['plan', 'apply', 'read_back'] and end.result['after'] == {'count': 2}
    assert end.result['files'] == [str(root / 'etc/example.conf')]
    assert conf(root) == 'count=2\n'


def test_a_failed_apply_rolls_back_files_and_device_and_says_so(root):
    end, _module = run(root, fail='apply')
    assert end.failed and end.result['changed'] is False  # everything was undone: nothing is left changed
    assert end.result['msg'] == 'writing 2 to sriov_numvfs failed: EBUSY; rolled back'
    assert end.result['steps'] == ['plan', 'apply', 'roll_back']
    assert conf(root) == 'count=0\n'


def test_a_rollback_that_cannot_undo_reports_changed(root):
    end, _module = run(root, fail='stuck')
    assert end.failed and end.result['changed'] is True
    assert end.result['msg'] == 'the device did not settle; rolling back failed too'
    assert conf(root) == 'count=0\n'  # the file was still put back


def test_a_file_that_cannot_be_restored_is_reported(root, monkeypatch):
    def broken_rollback(self):
        return ['could not restore %s: read-only file system' % CONF]
    monkeypatch.setattr(_files.Transaction, 'rollback', broken_rollback)
    end, _module = run(root, fail='apply')
    assert end.failed and end.result['changed'] is True


def test_a_failure_after_the_changes_keeps_them_and_says_changed(root):
    end, _module = run(root, fail='after')
    assert end.failed and end.result['changed'] is True
    assert end.result['msg'] == 'update-initramfs failed (rc=1) after the file was written'
    assert conf(root) == 'count=2\n'


def test_second_run_changes_nothing(root):
    first, _module = run(root)
    assert first.result['changed'] is True

    class Converged(Scripted):
        def plan(self):
            Scripted.plan(self)
            self.device['count'] = 2
    module = FakeModule(str(root), diff=True)
    with pytest.raises(Exit) as exc:
        runner.run(module, Converged)
    assert exc.value.result['changed'] is False and 'diff' not in exc.value.result


def test_control_characters_are_refused_before_anything_is_read(root):
    end, _module = run(root, fail='in\x00put')
    assert end.failed and 'fail' in end.result['msg'] and 'changed' not in end.result
    assert conf(root) == 'count=0\n'


class BackedUp(Scripted):
    """Asks the runner's Transaction for a backup of every file it replaces."""

    def file_backup(self):
        def backup(path):
            copy = path + '.bak'
            with open(path) as source, open(copy, 'w') as target:
                target.write(source.read())
            return copy
        return backup


def test_the_operations_backup_hook_runs_before_a_file_is_replaced(root):
    module = FakeModule(str(root))
    with pytest.raises(Exit) as exc:
        runner.run(module, BackedUp)
    assert not exc.value.failed and conf(root) == 'count=2\n'
    assert (root / 'etc' / 'example.conf.bak').read_text() == 'count=0\n'


class RefusedInCheckMode(Scripted):
    def predict(self):
        raise runner.Failed('the running kernel did not get the arguments', changed=False, booted_from='entry 1')


def test_a_prediction_that_fails_reports_its_own_result_and_writes_nothing(root):
    module = FakeModule(str(root), check_mode=True)
    with pytest.raises(Exit) as exc:
        runner.run(module, RefusedInCheckMode)
    assert exc.value.failed and exc.value.result == {
        'msg': 'the running kernel did not get the arguments', 'changed': False, 'booted_from': 'entry 1'}
    assert conf(root) == 'count=0\n'
