# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kernel_cmdline's run on the host runner (``host/runner.py``): ``plan`` and ``apply`` of ``boot.plan``
as an ``Operation``.

Every way the run can stop maps to the runner's ``Failed`` with the module's own message: bad input or
a configuration that cannot be edited (``CmdlineError``, no "nothing was changed" suffix), a failed
write (files restored, said in the message), a regeneration that failed after the files were kept
(``changed`` true) and, after a reboot, a running kernel that did not get what the files carry.
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils import _files
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import plan as boot
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot.cmdline import CmdlineError, parse_args, satisfied
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.runner import Failed, Operation

NO_GRUB_TOOL = ('update_bootloader: none of update-grub, grub2-mkconfig or grub-mkconfig was found; install GRUB, '
                'set update_command, or set update_bootloader=false (nothing was changed)')


# What stops planning: the request or the files' content (CmdlineError), a file that cannot be read (FileError)
PLAN_ERRORS = (CmdlineError, _files.FileError)


class KernelCmdline(Operation):
    """Kernel arguments present or absent in every place the host's boot path reads."""

    def plan(self):
        params = self.params
        self.state = params['state']
        self.options = dict(grub_file=params['grub_file'], grub_variable=params['grub_variable'],
                            update_command=params['update_command'])
        try:
            self.args = parse_args(params['args'], self.state)
            self.planned = self._replan()
        except PLAN_ERRORS as exc:
            raise Failed(str(exc))
        planned = self.planned
        self.run_commands, self.pending = boot.pending_regeneration(planned, params['update_bootloader'])
        if planned.bootloader == 'grub' and planned.changed and self.root == '/' and params['update_bootloader'] \
                and not self.run_commands:
            raise Failed(NO_GRUB_TOOL)
        self.warnings.extend(planned.warnings)
        # check mode (and a run with nothing to do): the plan is the prediction
        self.done = None
        self.changed_files = planned.files()
        self.diffs = [change.diff(self.root) for _config, change in planned.changes]

    def _replan(self):
        return boot.plan(self.root, self.params['bootloader'], self.args, self.state, self.options, self.probe())

    def probe(self):
        """The live host's read-only tools (proxmox-boot-tool status); None for an image below root."""
        if self.root != '/':
            return None
        return boot.Runner(run=self.module.run_command, find=self.module.get_bin_path)

    @property
    def changed(self):
        # a regeneration still pending from an earlier run (grub.cfg behind the defaults) runs, and changes it
        return self.planned.changed or bool(self.run_commands)

    def grubby(self):
        """grubby's path, or None where it must not run (the module gives its own lookup)."""
        raise NotImplementedError

    def file_backup(self):
        return _files.backup_copy if self.params['backup'] else None  # named for FAT too (the ESP's entries)

    def predict(self):
        self._check_boot()
        return self.planned

    def apply(self, files):
        if not self.changed:
            return
        module = self.module
        runner = boot.Runner(run=module.run_command, find=module.get_bin_path, grubby=self.grubby())
        try:
            self.done = boot.apply(self.planned, self._replan, self.args, self.state, runner,
                                   self.params['update_bootloader'], transaction=files)
        except boot.Regenerate as exc:
            raise Failed(str(exc), changed=True, files=exc.done.files, commands=exc.done.commands,
                         regenerate=self.planned.regenerate)
        except boot.RolledBack as exc:  # the message says what was put back and what could not be
            raise Failed(str(exc), changed=bool(exc.left_changed))
        except CmdlineError as exc:
            raise Failed(str(exc))
        self.changed_files, self.diffs = self.done.files, self.done.diffs

    def read_back(self):
        self._check_boot()
        return self.done.final if self.done else self.planned  # boot.apply planned again after writing

    def _check_boot(self):
        try:
            mismatch = boot.boot_mismatch(self.planned, self.args, self.state, self.options)
        except PLAN_ERRORS as exc:
            raise Failed(str(exc))
        if mismatch:
            raise Failed(mismatch, changed=False, reboot_required=False,
                         booted_from=boot.booted_entry(self.planned.host)[0])

    def result(self, after):
        planned = self.planned
        proc = planned.host.proc_cmdline
        afters = [scope.tokens(original=after is not planned) for scope in after.scopes]
        befores = [scope.tokens(original=True) for scope in planned.scopes]
        result = dict(
            bootloader=planned.bootloader,
            before=befores[0],
            after=afters[0],
            locations=[dict(name=scope.name, before=before, after=scope_after, changed=before != scope_after)
                       for scope, before, scope_after in zip(planned.scopes, befores, afters)],
            files=self.changed_files,
            commands=self.done.commands if self.done else self.run_commands,
            regenerate=self.pending,
            next_boot=boot.next_boot(planned, self.options),
            reboot_required=planned.changed if proc is None else not satisfied(proc, self.args, self.state),
            **planned.report()
        )
        if self.params['backup'] and planned.changed:
            result['backup_files'] = self.done.backups if self.done else []
        return result

    def diff(self, after):
        return self.diffs
