# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""SR-IOV: the VF count of a PF (``sriov_numvfs`` refuses to go from one non-zero count to another: it goes
through 0), VF link settings through ``ip link`` and a udev rule that restores both at boot.
"""

from __future__ import annotations

import json
import os
import re
import time

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import model
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import persistence, sysfs_writer


IFNAME_RE = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,14}$')


SRIOV_RULES_DIR = '/etc/udev/rules.d'


def resolve_pf(sysroot, pf):
    """A PCI address from ``pf`` (an address or a network interface name); ValueError naming the value."""
    if not isinstance(pf, str) or not pf.strip():
        raise ValueError('pf: give the PF as a PCI address or a network interface name (got %r)' % (pf,))
    try:
        return _ids.pci_text(pf, None)
    except ValueError:
        pass
    if not IFNAME_RE.fullmatch(pf):
        raise ValueError('pf: %r is neither a PCI address (%s) nor a network interface name' % (pf, _ids.PCI_HINT))
    resolved = sysroot.resolve('sys/class/net/%s/device' % pf)
    if resolved is None or not _ids.PCI_NAME_RE.match(os.path.basename(resolved)):
        raise ValueError('pf: there is no network interface %r backed by a PCI device (sys/class/net/%s/device)'
                         % (pf, pf))
    return os.path.basename(resolved)


def pf_interfaces(sysroot, address):
    return sysroot.listdir('sys/bus/pci/devices/%s/net' % address)


def normalize_vf_settings(vfs, num_vfs):
    """Validate the ``vfs`` option; returns a list of dicts with ``index`` and the settings given."""
    result = []
    seen = set()
    for position, item in enumerate(vfs or []):
        where = 'vfs[%d]' % position
        index = item.get('index')
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError('%s.index: %r is not a VF number (0, 1, ...)' % (where, index))
        if index >= num_vfs:
            raise ValueError('%s.index: VF %d does not exist with num_vfs %d (VFs are numbered 0 to %d)'
                             % (where, index, num_vfs, num_vfs - 1) if num_vfs else
                             '%s.index: VF %d does not exist with num_vfs 0' % (where, index))
        if index in seen:
            raise ValueError('%s.index: VF %d is listed twice' % (where, index))
        seen.add(index)
        entry = {'index': index}
        mac = item.get('mac')
        if mac is not None:
            entry['mac'] = _ids.parse_mac(str(mac).strip().replace('-', ':'), '%s.mac' % where)
        vlan = item.get('vlan')
        if vlan is not None:
            if not isinstance(vlan, int) or isinstance(vlan, bool) or not 0 <= vlan <= 4095:
                raise ValueError('%s.vlan: %r is not a VLAN id from 0 (none) to 4095' % (where, vlan))
            entry['vlan'] = vlan
        for flag in ('trust', 'spoofchk'):
            value = item.get(flag)
            if value is not None:
                if not isinstance(value, bool):
                    raise ValueError('%s.%s: %r is not true or false' % (where, flag, value))
                entry[flag] = value
        result.append(entry)
    return sorted(result, key=lambda entry: entry['index'])


def parse_ip_vfinfo(text):
    """{vf index: {'mac', 'vlan', 'trust', 'spoofchk'}} from ``ip -j -d link show dev PF`` output."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise sysfs_writer.PrepareError('cannot parse the output of ip -j link show: %s' % exc)
    result = {}
    for link in data if isinstance(data, list) else []:
        for info in link.get('vfinfo_list') or []:
            index = info.get('vf')
            if not isinstance(index, int):
                continue
            vlan = 0
            if info.get('vlan_list'):
                vlan = info['vlan_list'][0].get('vlan', 0)
            elif 'vlan' in info:
                vlan = info.get('vlan') or 0
            result[index] = {'mac': (info.get('address') or info.get('mac') or '').lower() or None,
                             'vlan': vlan, 'trust': info.get('trust'), 'spoofchk': info.get('spoofchk')}
    return result


def vf_commands(ifname, wanted, current):
    """``ip link set`` argument lists for the settings of ``wanted`` that differ from ``current`` (None:
    unknown, everything is set)."""
    commands = []
    for entry in wanted:
        have = (current or {}).get(entry['index']) if current is not None else None
        args = []
        if 'mac' in entry and (have is None or have.get('mac') != entry['mac']):
            args += ['mac', entry['mac']]
        if 'vlan' in entry and (have is None or have.get('vlan') != entry['vlan']):
            args += ['vlan', str(entry['vlan'])]
        for flag in ('trust', 'spoofchk'):
            if flag in entry and (have is None or have.get(flag) != entry[flag]):
                args += [flag, 'on' if entry[flag] else 'off']
        if args:
            commands.append(['link', 'set', 'dev', ifname, 'vf', str(entry['index'])] + args)
    return commands


def sriov_rules_path(address):
    return '%s/70-virtdev-sriov-%s.rules' % (SRIOV_RULES_DIR, address.replace(':', '_').replace('.', '_'))


def render_sriov_rules(address, vendor, device, num_vfs, ifname, vfs, ip_path):
    """udev rules giving PF ``address`` ``num_vfs`` VFs when its driver binds; None for 0 VFs."""
    if not num_vfs:
        return None
    lines = ['# %s (sriov_vfs, persistent: true). Do not edit: the module rewrites this file.' % persistence.MANAGED_BY,
             '# %s (%s:%s) gets %d VFs each time its driver binds.' % (address, vendor, device, num_vfs),
             'ACTION=="bind", SUBSYSTEM=="pci", KERNEL=="%s", ATTR{vendor}=="%s", ATTR{device}=="%s", '
             'ATTR{sriov_numvfs}="%d"' % (address, vendor, device, num_vfs)]
    runs = vf_commands(ifname, vfs, None) if ifname else []
    for command in runs:
        lines.append('ACTION=="bind", SUBSYSTEM=="pci", KERNEL=="%s", ATTR{vendor}=="%s", ATTR{device}=="%s", '
                     'RUN+="%s %s"' % (address, vendor, device, ip_path, ' '.join(command)))
    return '\n'.join(lines) + '\n'


class SriovPlan:
    def __init__(self, address, ifname, before, after, writes, errors, warnings):
        self.address = address
        self.ifname = ifname
        self.before = before
        self.after = after
        self.writes = writes  # [(relative path, value)]
        self.errors = errors
        self.warnings = warnings


def plan_sriov(host, sysfs, address, num_vfs):
    """The writes that take PF ``address`` to ``num_vfs`` VFs (through 0), and the guards."""
    errors, warnings = [], []
    dev = host.pci.get(address)
    if dev is None:
        raise ValueError('pf: there is no PCI device %s on this host (not under /sys/bus/pci/devices)' % address)
    if dev.physfn:
        raise ValueError('pf: %s is itself a VF of %s; give the PF' % (address, dev.physfn))
    if dev.sriov_totalvfs is None:
        raise ValueError('pf: %s (%s, driver %s) is not SR-IOV capable: it has no sriov_totalvfs'
                         % (address, dev.class_label, dev.driver or 'none'))
    if not isinstance(num_vfs, int) or isinstance(num_vfs, bool) or num_vfs < 0:
        raise ValueError('num_vfs: %r is not a number of VFs (0 or more)' % (num_vfs,))
    if num_vfs > dev.sriov_totalvfs:
        raise ValueError('num_vfs: %d is more than the %d VFs %s supports (sriov_totalvfs)'
                         % (num_vfs, dev.sriov_totalvfs, address))
    current = dev.sriov_numvfs or 0
    writes = []
    if current != num_vfs:
        if dev.driver is None:
            errors.append('pf: %s has no driver bound; sriov_numvfs can only be changed through its driver '
                          '(bind it to its host driver first)' % address)
        if current and num_vfs:
            writes.append((sysfs.device(address) + '/sriov_numvfs', '0'))
        writes.append((sysfs.device(address) + '/sriov_numvfs', str(num_vfs)))
        for vf in dev.vfs:
            vf_dev = host.pci.get(vf)
            users = host.open_by(vf_dev.iommu_group if vf_dev else None)
            if users:
                errors.append('num_vfs: VF %s is in use (IOMMU group %s open by %s); changing the VF count would '
                              'remove it from a running guest' % (vf, vf_dev.iommu_group, model.describe_users(users)))
            elif vf_dev is not None and vf_dev.driver and model.is_vfio_driver(vf_dev.driver):
                warnings.append('VF %s is bound to %s (prepared for a guest); changing num_vfs from %d to %d '
                                'removes and recreates it' % (vf, vf_dev.driver, current, num_vfs))
    before = {'num_vfs': current, 'total_vfs': dev.sriov_totalvfs, 'vfs': list(dev.vfs)}
    after = {'num_vfs': num_vfs, 'total_vfs': dev.sriov_totalvfs}
    ifaces = pf_interfaces(sysfs.sysroot, address)
    return SriovPlan(address, ifaces[0] if ifaces else None, before, after, writes, errors, warnings)


def apply_sriov(sysfs, plan, timeout=10.0):
    """Write the VF count (through 0) and wait for the VFs to show up; PrepareError names the step."""
    done = []
    for relative, value in plan.writes:
        try:
            sysfs.write(relative, value)
        except sysfs_writer.PrepareError as exc:
            text = str(exc)
            if 'EBUSY' in text:
                text += ' (the PF refused the change while VFs exist)'
            if done:
                text += '; the VF count was already set to %s' % done[-1]
            raise sysfs_writer.PrepareError(text)
        done.append(value)
    if sysfs.dry_run or not plan.writes:
        return
    deadline = time.monotonic() + timeout
    wanted = plan.after['num_vfs']
    while True:
        vfs = [name for name in sysfs.sysroot.listdir(sysfs.device(plan.address))
               if name.startswith('virtfn') and name[6:].isdigit()]
        if len(vfs) == wanted or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    if len(vfs) != wanted:
        raise sysfs_writer.PrepareError('pf: %s shows %d VFs (virtfnN links) after sriov_numvfs=%d' % (plan.address, len(vfs), wanted))
