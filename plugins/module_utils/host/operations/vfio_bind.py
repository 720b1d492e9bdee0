# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a vfio_bind run does, step by step for ``runner.run``: bind PCI devices to vfio-pci (or unbind
them), optionally keep that across reboots (``prepare.persistence``) and regenerate the initramfs."""

from __future__ import annotations

import os

from ansible_collections.virtdev.libvirt.plugins.module_utils import _files
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import guards, model, runner, sysfs_source
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import bind, persistence, sysfs_writer


def _device_text(state):
    return 'driver: %s\ndriver_override: %s\n' % (state.get('driver') or '(none)', state.get('driver_override') or '(null)')


class VfioBind(runner.Operation):

    def plan(self):
        params = self.params
        self.state = params['state']
        self.addresses = bind.normalize_addresses(params['addresses'])
        self.driver = bind.check_driver_name(params['driver'])
        if params['host_driver'] is not None and not bind.DRIVER_NAME_RE.match(params['host_driver']):
            raise ValueError('host_driver: %r is not a kernel driver name' % params['host_driver'])
        if params['timeout'] < 0:
            raise ValueError('timeout: %r must not be negative' % params['timeout'])
        self.host = sysfs_source.read_host(self.root)
        self.sysfs = sysfs_writer.Sysfs(self.root)
        self.transaction = None  # the driver changes made so far, for the rollback
        if self.state == 'bound':
            self.bind_plan = bind.plan_bind(self.host, self.sysfs, self.addresses, self.driver, params['whole_group'],
                                            params['force'])
        else:
            self.bind_plan = bind.plan_unbind(self.host, self.addresses, self.driver, params['whole_group'],
                                              params['host_driver'])
        self.devices = [action.as_dict() for action in self.bind_plan.actions]
        if self.bind_plan.errors:
            groups = []
            for _label, address in self.addresses:
                text = guards.describe_group(self.host, address)
                if text and text not in groups:
                    groups.append(text)
            raise runner.Refused(self.bind_plan.errors, groups, guard_warnings=self.bind_plan.warnings,
                                 devices=self.devices)
        self.commands = []
        if self.state == 'bound' and self.bind_plan.need_driver_load:
            if self.root != '/':
                module_name = bind.module_of_driver(self.driver)
                raise runner.Failed('driver: %s is not loaded under %s (no sys/bus/pci/drivers/%s); load it there '
                                    '(modprobe %s) (nothing was changed)' % (self.driver, self.root, self.driver, module_name),
                                    devices=self.devices)
            modprobe = self.module.get_bin_path('modprobe', required=True)
            self.commands.append([modprobe, bind.module_of_driver(self.driver)])
        systems = []
        if params['persistent']:
            try:
                self.file_changes, systems = persistence.plan_vfio_persistence(
                    self.root, self.sysfs.sysroot, self.host, self.bind_plan.actions, self.state, self.driver,
                    params['persist_method'])
            except (ValueError, sysfs_writer.PrepareError, _files.FileError) as exc:
                raise runner.Failed(str(exc), devices=self.devices)
        self.initramfs = None
        if self.file_changes and params['update_initramfs'] and self.root == '/':
            self.initramfs = list(params['initramfs_command'] or []) or \
                persistence.initramfs_command(systems, self.module.get_bin_path)
            if self.initramfs is None:
                self.warnings.append('the boot configuration changed but neither update-initramfs nor dracut was '
                                     'found; the initramfs was not regenerated')
        elif self.file_changes and params['update_initramfs']:
            self.warnings.append('the boot configuration under %s changed: regenerate the initramfs of that system'
                                 % self.root)
        self.warnings.extend(self.bind_plan.warnings)

    @property
    def changed(self):
        return self.bind_plan.changed or bool(self.file_changes)

    def predict(self):
        dry = sysfs_writer.Sysfs(self.root, dry_run=True)
        bind.run_actions(bind.DriverTransaction(dry), self.bind_plan, self.state, self.driver, self.params['host_driver'])
        self.writes = dry.writes
        if self.initramfs:
            self.commands.append(self.initramfs)
        return {action.address: dict(action.after) for action in self.bind_plan.actions}

    def _modalias_loader(self):
        """With root /, load the host driver module of a device before probing it (what udev would do)."""
        modprobe = self.module.get_bin_path('modprobe')

        def load(address):
            modalias = self.sysfs.read(self.sysfs.device(address) + '/modalias')
            if modprobe and modalias:
                command = [modprobe, '-b', '-q', modalias]
                self.commands.append(command)
                self.module.run_command(command)
        return load

    def apply(self, files):
        if self.commands:
            rc, out, err = self.module.run_command(self.commands[0])
            if rc != 0 or not self.sysfs.driver_registered(self.driver):
                raise runner.Failed('driver: %s failed (rc=%d): %s (nothing was changed)'
                                    % (' '.join(self.commands[0]), rc, (err or out).strip() or 'the driver did not register'),
                                    commands=self.commands, devices=self.devices)
        loader = self._modalias_loader() if self.root == '/' and self.state == 'unbound' else None
        self.transaction = bind.DriverTransaction(self.sysfs, self.params['timeout'], loader)
        self.final = bind.run_actions(self.transaction, self.bind_plan, self.state, self.driver,
                                      self.params['host_driver'])
        for change in self.file_changes:
            files.apply(change)

    def roll_back(self, error, file_problems):
        message, restored, problems = bind.rollback_message(error, self.transaction)
        if file_problems:
            message += '; ' + '; '.join(file_problems)
        return runner.Failed(message, changed=bool(problems or file_problems), rolled_back=restored,
                             devices=self.devices, writes=self.sysfs.writes, commands=self.commands)

    def read_back(self):
        self.writes = self.sysfs.writes
        after = {}
        for action in self.bind_plan.actions:
            after[action.address] = {'driver': self.sysfs.driver(action.address),
                                     'driver_override': self.sysfs.override(action.address)}
            if self.state == 'unbound' and action.changed and self.final.get(action.address) is None:
                self.module.warn('%s: no host driver claimed the device after it left %s (is its driver module '
                                 'installed?)' % (action.label, self.driver))
        if self.initramfs:
            self.commands.append(self.initramfs)
            rc, out, err = self.module.run_command(self.initramfs)
            if rc != 0:
                raise runner.Failed('%s failed (rc=%d) after the devices were bound and the files written: %s'
                                    % (' '.join(self.initramfs), rc, (err or out).strip()), changed=True,
                                    files=self.files(), commands=self.commands)
        return after

    def result(self, after):
        for entry in self.devices:
            entry['after'] = after[entry['address']]
            entry['changed'] = entry['before'] != entry['after']
        groups = sorted({entry['iommu_group'] for entry in self.devices
                         if entry['iommu_group'] is not None and entry['after']['driver'] == self.driver
                         and model.is_vfio_driver(self.driver)})
        return dict(
            devices=self.devices,
            writes=self.writes,
            files=self.files(),
            commands=self.commands,
            iommu_groups=[{'group': group, 'node': '/dev/vfio/%d' % group,
                           'exists': os.path.exists(_files.resolved(self.root, '/dev/vfio/%d' % group))}
                          for group in groups],
        )

    def diff(self, after):
        return [{'before_header': 'pci %s' % entry['address'], 'after_header': 'pci %s' % entry['address'],
                 'before': _device_text(entry['before']), 'after': _device_text(entry['after'])}
                for entry in self.devices if entry['changed']]
