# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one runner of the host modules: plan -> check -> (check mode stops) -> apply -> roll back on
failure -> read back -> result and diff.

A module is its argument spec, its documentation and one ``Operation`` subclass (the backend's side of a
run); ``run(module, operation_class)`` does the rest the same way for every host module:

1. common input checks (control characters in any option, ``root`` is a directory);
2. ``plan()``: read the host and decide everything, writing nothing. ``ValueError`` is bad input
   ("... (nothing was changed)"); ``Refused`` is a guard that said no ("refused, nothing was changed:");
3. check mode: ``predict()`` returns the state the run would leave, from a dry run that writes nowhere;
4. ``apply(files)``: the writes, sysfs through the backend, files through ``files`` (one
   ``_files.Transaction``, with ``file_backup()`` as its backup hook). When it raises, the files
   written so far are put back and ``roll_back`` undoes the backend's own writes and says what is
   really left: the failure result tells what happened (``changed`` is true only when something could
   not be undone), never the plan;
5. ``read_back()``: the state after the run, read again from the host rather than assumed;
6. ``result(after)`` plus ``changed`` and, with --diff, ``diff(after)`` and the file diffs.

A step that must fail with a result of its own (a command failing after the writes were kept) raises
``Failed`` (``predict`` and ``read_back`` may raise it too). Nothing here knows a particular backend.
"""

from __future__ import annotations

import os

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _files
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare.sysfs_writer import PrepareError

NOTHING_CHANGED = ' (nothing was changed)'


class Refused(Exception):
    """A guard or the host's state refuses the run before anything is written; ``data`` goes into the result."""

    def __init__(self, errors, notes=(), **data):
        super(Refused, self).__init__('; '.join(list(errors) + list(notes)))  # notes: context after the errors
        self.errors = list(errors)
        self.data = data


class Failed(Exception):
    """The run stops with this message and result data; ``changed`` says whether anything stayed changed
    (None: left out of the result, for failures before anything was attempted)."""

    def __init__(self, msg, changed=None, **data):
        super(Failed, self).__init__(msg)
        self.msg = msg
        self.changed = changed
        self.data = data


# what an apply step raises when the host or a file refused a write: the runner rolls back then
APPLY_ERRORS = (PrepareError, _files.FileError, OSError)


class Operation(object):
    """One run of a host module. Subclasses fill in the steps; the runner calls them in order.

    ``module`` is the AnsibleModule (only its params, warn, run_command, get_bin_path, atomic_move and
    check_mode are used), ``root`` the absolute root every path is below.
    """

    def __init__(self, module, root):
        self.module = module
        self.params = module.params
        self.root = root
        self.warnings = []
        self.file_changes = []  # _files.FileChange values, planned; applied by apply() through ``files``

    def plan(self):
        """Read the host, check the input and the guards; write nothing."""
        raise NotImplementedError

    @property
    def changed(self):
        raise NotImplementedError

    def predict(self):
        """Check mode: the state the run would leave (a dry run; nothing is written)."""
        raise NotImplementedError

    def apply(self, files):
        """Make the changes; raise one of ``APPLY_ERRORS`` (rolled back) or ``Failed`` (kept as is)."""
        raise NotImplementedError

    def roll_back(self, error, file_problems):
        """After ``apply`` raised ``error`` and the files were put back (``file_problems``: what could not
        be): undo the backend's own writes and return the ``Failed`` that tells what is left."""
        return Failed('%s%s' % (error, '; ' + '; '.join(file_problems) if file_problems else ''),
                      changed=bool(file_problems))

    def read_back(self):
        """After ``apply``: the state, read again."""
        raise NotImplementedError

    def result(self, after):
        """The module result (without ``changed`` and ``diff``)."""
        raise NotImplementedError

    def diff(self, after):
        """--diff entries of the backend's own changes (the file diffs are added by the runner)."""
        return []

    def file_backup(self):
        """The Transaction's ``backup(path)`` hook (``module.backup_local`` when the module's backup option
        asks for it), called before every existing file is replaced; None: no backups."""
        return None

    def close(self):
        """Release what ``plan`` opened (a connection), whatever happened."""

    def files(self):
        """Where the planned files are (resolved below root), for the result."""
        return [_files.resolved(self.root, change.path) for change in self.file_changes]


def root_of(module):
    """The module's ``root`` as an absolute path; fails naming the option when it is not a directory."""
    root = os.path.abspath(module.params['root'])
    if not os.path.isdir(root):
        module.fail_json(msg='root: %r is not a directory' % module.params['root'])
    return root


def _fail(module, operation, failure):
    operation.close()
    if failure.changed is not None:
        failure.data['changed'] = failure.changed
    module.fail_json(msg=failure.msg, **failure.data)


def run(module, operation_class):
    """Drive one ``operation_class`` run of ``module`` from plan to result; exits the module."""
    _common.check_strings(module)  # NUL, control characters, lone surrogates: refused naming the option
    operation = operation_class(module, root_of(module))
    try:
        operation.plan()
    except ValueError as exc:
        _fail(module, operation, Failed('%s%s' % (exc, NOTHING_CHANGED)))
    except Refused as exc:
        refusal = Failed('refused, nothing was changed: %s' % exc, changed=False, errors=exc.errors, **exc.data)
        _fail(module, operation, refusal)
    except Failed as exc:
        _fail(module, operation, exc)
    for warning in operation.warnings:
        module.warn(warning)
    if module.check_mode:
        try:
            after = operation.predict()
        except Failed as exc:  # the host's state fails the run even without a change (nothing was written)
            _fail(module, operation, exc)
    else:
        files = _files.Transaction(operation.root,
                                   atomic_move=lambda src, dest: module.atomic_move(src, dest, unsafe_writes=False),
                                   backup=operation.file_backup())
        try:
            operation.apply(files)
        except Failed as exc:
            _fail(module, operation, exc)
        except APPLY_ERRORS as exc:
            _fail(module, operation, operation.roll_back(exc, files.rollback()))
        try:
            after = operation.read_back()
        except Failed as exc:  # the changes stay; the result says what failed after them
            _fail(module, operation, exc)
    operation.close()
    changed = operation.changed
    result = dict(operation.result(after), changed=changed)
    if module._diff and changed:
        result['diff'] = operation.diff(after) + [change.diff(operation.root) for change in operation.file_changes]
    module.exit_json(**result)
