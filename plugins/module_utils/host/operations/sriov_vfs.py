# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What an sriov_vfs run does, step by step for ``runner.run``: set a PF's VF count (through 0), the VFs'
link settings through ``ip link``, and with ``persistent`` a udev rule that restores both at boot."""

from __future__ import annotations

import os

from ansible_collections.virtdev.libvirt.plugins.module_utils import _files
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import runner, sysfs_source
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import sriov, sysfs_writer

IP_PATHS = ('/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip')


def _settings_text(vfs):
    lines = []
    for entry in vfs:
        settings = ['%s %s' % (key, entry[key]) for key in ('mac', 'vlan', 'trust', 'spoofchk') if key in entry]
        lines.append('vf %d: %s' % (entry['index'], ', '.join(settings)))
    return '\n'.join(lines) + ('\n' if lines else '')


class SriovVfs(runner.Operation):

    def _ip_path_under_root(self):
        for path in IP_PATHS:
            if os.path.exists(_files.resolved(self.root, path)):
                return path
        return IP_PATHS[0]

    def _vf_settings(self):
        """The VF settings the PF's interface has now (``ip -j link show``)."""
        command = [self.ip, '-j', 'link', 'show', 'dev', self.sriov_plan.ifname]
        rc, out, err = self.module.run_command(command)
        if rc != 0:
            raise runner.Failed('%s -j link show dev %s failed (rc=%d): %s'
                                % (self.ip, self.sriov_plan.ifname, rc, (err or out).strip()),
                                **self.done)
        try:
            return sriov.parse_ip_vfinfo(out)
        except sysfs_writer.PrepareError as exc:
            raise runner.Failed(str(exc), **self.done)

    def plan(self):
        params = self.params
        self.done = {}  # what a failure reports once the count changed (nothing before it)
        self.files_failure = False  # set once only the rules file is left to write
        self.host = sysfs_source.read_host(self.root)
        self.sysfs = sysfs_writer.Sysfs(self.root)
        self.address = sriov.resolve_pf(self.sysfs.sysroot, params['pf'])
        self.sriov_plan = sriov.plan_sriov(self.host, self.sysfs, self.address, params['num_vfs'])
        self.vfs = sriov.normalize_vf_settings(params['vfs'], params['num_vfs'])
        if self.vfs and not self.sriov_plan.ifname:
            raise ValueError('vfs: %s has no network interface (nothing under sys/bus/pci/devices/%s/net), so VF '
                             'settings cannot be applied through it' % (self.address, self.address))
        if params['timeout'] < 0:
            raise ValueError('timeout: %r must not be negative' % params['timeout'])
        if self.sriov_plan.errors:
            raise runner.Refused(self.sriov_plan.errors)
        self.ip = self.module.get_bin_path('ip', required=bool(self.vfs)) if self.root == '/' else None
        if params['persistent']:
            path = sriov.sriov_rules_path(self.address)
            dev = self.host.pci[self.address]
            try:
                before = _files.read_text(self.root, path)
            except _files.FileError as exc:
                raise runner.Failed(str(exc))
            after = sriov.render_sriov_rules(self.address, dev.vendor, dev.device, params['num_vfs'],
                                             self.sriov_plan.ifname, self.vfs, self.ip or self._ip_path_under_root())
            change = _files.FileChange(path, before, after)
            self.file_changes = [change] if change.changed else []
        self.count_changes = bool(self.sriov_plan.writes)
        self.commands, self.skipped = [], []
        if self.root != '/':
            self.skipped = [[self._ip_path_under_root()] + command
                            for command in sriov.vf_commands(self.sriov_plan.ifname, self.vfs, None)] if self.vfs else []
            if self.skipped:
                self.warnings.append('root is %s: the VF link settings are not read or applied there (see '
                                     'skipped_commands)' % self.root)
        elif self.vfs and (self.module.check_mode or not self.count_changes):
            # with a count change the VFs are recreated: their settings are read after the change
            current = None if self.count_changes else self._vf_settings()
            self.commands = [[self.ip] + command for command in sriov.vf_commands(self.sriov_plan.ifname, self.vfs, current)]
        self.warnings.extend(self.sriov_plan.warnings)

    @property
    def changed(self):
        return bool(self.sriov_plan.writes or self.commands or self.file_changes)

    def predict(self):
        dry = sysfs_writer.Sysfs(self.root, dry_run=True)
        sriov.apply_sriov(dry, self.sriov_plan)
        self.writes = dry.writes
        return dict(self.sriov_plan.after)

    def apply(self, files):
        sriov.apply_sriov(self.sysfs, self.sriov_plan, self.params['timeout'])
        self.writes = self.sysfs.writes
        if self.vfs and self.root == '/':
            self.done = dict(writes=self.writes, commands=self.commands, changed=True)
            if self.count_changes:
                self.commands[:] = [[self.ip] + command for command in
                                    sriov.vf_commands(self.sriov_plan.ifname, self.vfs, self._vf_settings())]
            for command in self.commands:
                rc, out, err = self.module.run_command(command)
                if rc != 0:
                    raise runner.Failed('%s failed (rc=%d): %s' % (' '.join(command), rc, (err or out).strip()),
                                        **self.done)
            left = sriov.vf_commands(self.sriov_plan.ifname, self.vfs, self._vf_settings()) if self.commands else []
            if left:
                raise runner.Failed('the VF settings did not take: %s still differ after ip link set'
                                    % ', '.join(' '.join(command[4:]) for command in left), **self.done)
        self.files_failure = True  # from here on, a failure is the rules file's
        for change in self.file_changes:
            files.apply(change)

    def roll_back(self, error, file_problems):
        if self.files_failure:
            message = 'writing %s failed: %s' % (_files.resolved(self.root, self.file_changes[0].path), error)
            if file_problems:
                message += '; ' + '; '.join(file_problems)
            return runner.Failed(message, writes=self.writes, commands=self.commands,
                                 changed=bool(self.writes or self.commands or file_problems))
        message = str(error)
        before = self.sriov_plan.before['num_vfs']
        if before and any(write['value'] == '0' for write in self.sysfs.writes):
            try:
                sysfs_writer.Sysfs(self.root).write(self.sysfs.device(self.address) + '/sriov_numvfs', str(before))
                message += '; restored the previous count of %d VFs' % before
            except sysfs_writer.PrepareError as again:
                message += '; restoring the previous count failed too: %s' % again
        return runner.Failed(message, writes=self.sysfs.writes, changed=bool(self.sysfs.writes))

    def read_back(self):
        dev = sysfs_source.read_host(self.root).pci.get(self.address)
        return {'num_vfs': dev.sriov_numvfs, 'total_vfs': dev.sriov_totalvfs, 'vfs': list(dev.vfs)}

    def result(self, after):
        return dict(
            pf=self.address,
            interface=self.sriov_plan.ifname,
            before=self.sriov_plan.before,
            after=after,
            writes=self.writes,
            commands=self.commands,
            skipped_commands=self.skipped,
            files=self.files(),
        )

    def diff(self, after):
        diff = []
        if self.sriov_plan.writes:
            header = 'pci %s sriov_numvfs' % self.address
            diff.append({'before_header': header, 'after_header': header,
                         'before': '%d\n' % self.sriov_plan.before['num_vfs'], 'after': '%d\n' % self.params['num_vfs']})
        if self.commands:
            header = 'VF settings of %s' % self.sriov_plan.ifname
            diff.append({'before_header': header, 'after_header': header, 'before': '',
                         'after': _settings_text(self.vfs)})
        return diff
