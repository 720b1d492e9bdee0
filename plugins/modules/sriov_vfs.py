#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: sriov_vfs
short_description: Set the number of SR-IOV virtual functions of a PF and their MAC, VLAN, trust and spoof checking
version_added: 0.1.0
description:
  - Sets C(sriov_numvfs) of an SR-IOV physical function (PF) to O(num_vfs). The kernel refuses to go from one
    non-zero count to another (EBUSY), so the module goes through 0. O(num_vfs) above the PF's
    C(sriov_totalvfs) is refused before anything is written.
  - Sets the MAC address, VLAN, trust and spoof checking of VFs through the PF's network interface
    (C(ip link set PF vf N ...)), only where they differ from what C(ip -j link show) reports.
  - With O(persistent=true) writes a udev rule that sets the same count and VF settings each time the PF's
    driver binds, so they survive reboots and driver reloads.
author:
  - virtdev.libvirt maintainers (@virtdev)
attributes:
  check_mode:
    support: full
    description: Computes the same sysfs writes, C(ip) commands and files, and writes and runs nothing.
  diff_mode:
    support: full
    description: Shows the VF count and the rules file before and after.
extends_documentation_fragment:
  - virtdev.libvirt.group_uri
options:
  pf:
    description: The PF, as a PCI address C(DDDD:BB:SS.F) or as its network interface name (C(ens2f0)).
    type: str
    required: true
  num_vfs:
    description:
      - The number of VFs wanted; V(0) disables SR-IOV. At most the PF's C(sriov_totalvfs).
      - Changing the count removes and recreates every VF; VFs held by a running guest (their
        C(/dev/vfio/GROUP) is open) make the module refuse.
    type: int
    required: true
  vfs:
    description: Settings of individual VFs, applied through the PF's network interface.
    type: list
    elements: dict
    default: []
    suboptions:
      index:
        description: The VF number, from 0 to O(num_vfs) - 1.
        type: int
        required: true
      mac:
        description: Its MAC address (unicast).
        type: str
      vlan:
        description: Its port VLAN, V(0) for none.
        type: int
      trust:
        description: Whether the VF is trusted (may change its MAC, enter promiscuous mode).
        type: bool
      spoofchk:
        description: Whether the PF drops frames from the VF with another source MAC.
        type: bool
  persistent:
    description:
      - Also write C(/etc/udev/rules.d/70-virtdev-sriov-DDDD_BB_SS_F.rules), which sets the count and runs
        the C(ip link set) commands whenever the PF's driver binds (at boot and after a driver reload).
        With O(num_vfs=0) the file is removed.
      - The VF settings in the rule name the PF's interface as it is now.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the VFs to appear after the count is written.
    type: float
    default: 10
  root:
    description:
      - Directory under which C(/sys), C(/proc) and C(/etc) are read and written (for images and tests).
      - C(ip) runs only when it is C(/); below another root the VF link settings are neither read nor
        applied, they are returned in RV(skipped_commands).
    type: path
    default: /
notes:
  - VFs given to guests are usually bound to vfio-pci with M(virtdev.libvirt.vfio_bind) afterwards, or used
    through C(<interface type='hostdev'>) with libvirt managing the binding.
seealso:
  - module: virtdev.libvirt.vfio_bind
  - module: virtdev.libvirt.host_devices_info
'''

EXAMPLES = r'''
- name: Eight VFs on the first port, the first two with fixed MACs and a VLAN, at every boot
  virtdev.libvirt.sriov_vfs:
    pf: ens2f0
    num_vfs: 8
    vfs:
      - {index: 0, mac: "52:54:00:00:10:00", vlan: 100, spoofchk: true}
      - {index: 1, mac: "52:54:00:00:10:01", vlan: 100, trust: true}
    persistent: true

- name: Disable SR-IOV on a PF
  virtdev.libvirt.sriov_vfs:
    pf: "0000:41:00.1"
    num_vfs: 0
    persistent: true
'''

RETURN = r'''
pf:
  description: The PF's PCI address.
  returned: success
  type: str
  sample: "0000:41:00.0"
interface:
  description: The PF's network interface, if it has one.
  returned: success
  type: str
  sample: ens2f0
before:
  description: C(num_vfs), C(total_vfs) and the VF addresses (C(vfs)) before.
  returned: success
  type: dict
  sample: {num_vfs: 4, total_vfs: 64, vfs: ["0000:41:02.0", "0000:41:02.1", "0000:41:02.2", "0000:41:02.3"]}
after:
  description: The same after, read back from sysfs (in check mode C(vfs) is not predicted and is omitted).
  returned: success
  type: dict
writes:
  description: sysfs writes made (or that would be made), in order, as C(path) and C(value).
  returned: success
  type: list
  elements: dict
  sample: [{path: /sys/bus/pci/devices/0000:41:00.0/sriov_numvfs, value: "0"},
           {path: /sys/bus/pci/devices/0000:41:00.0/sriov_numvfs, value: "8"}]
commands:
  description: C(ip) commands run (or that would run in check mode).
  returned: success
  type: list
  elements: list
  sample: [[ip, link, set, dev, ens2f0, vf, "0", mac, "52:54:00:00:10:00"]]
skipped_commands:
  description: With O(root) other than C(/), the C(ip) commands the VF settings need, not run.
  returned: success
  type: list
  elements: list
files:
  description: Files changed (or that would be), as paths below O(root).
  returned: success
  type: list
  elements: str
diff:
  description: Before and after text of the VF count, the VF settings and the rules file.
  returned: when diff mode is on and something changed
  type: list
  elements: dict
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _files
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import sysfs_source
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import sriov, sysfs_writer

IP_PATHS = ('/usr/sbin/ip', '/sbin/ip', '/usr/bin/ip', '/bin/ip')


def _ip_path_under(root):
    for path in IP_PATHS:
        if os.path.exists(_files.resolved(root, path)):
            return path
    return IP_PATHS[0]


def _read_vf_settings(module, ip, ifname):
    rc, out, err = module.run_command([ip, '-j', 'link', 'show', 'dev', ifname])
    if rc != 0:
        module.fail_json(msg='%s -j link show dev %s failed (rc=%d): %s' % (ip, ifname, rc, (err or out).strip()))
    try:
        return sriov.parse_ip_vfinfo(out)
    except (sysfs_writer.PrepareError, _files.FileError) as exc:
        module.fail_json(msg=str(exc))


def _settings_text(vfs):
    lines = []
    for entry in vfs:
        settings = ['%s %s' % (key, entry[key]) for key in ('mac', 'vlan', 'trust', 'spoofchk') if key in entry]
        lines.append('vf %d: %s' % (entry['index'], ', '.join(settings)))
    return '\n'.join(lines) + ('\n' if lines else '')


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            pf=dict(type='str', required=True),
            num_vfs=dict(type='int', required=True),
            vfs=dict(type='list', elements='dict', default=[], options=dict(
                index=dict(type='int', required=True),
                mac=dict(type='str'),
                vlan=dict(type='int'),
                trust=dict(type='bool'),
                spoofchk=dict(type='bool'),
            )),
            persistent=dict(type='bool', default=False),
            timeout=dict(type='float', default=10.0),
            root=dict(type='path', default='/'),
            uri=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    _common.check_strings(module)  # NUL, control characters, lone surrogates: refused naming the option
    params = module.params
    root = os.path.abspath(params['root'])
    if not os.path.isdir(root):
        module.fail_json(msg='root: %r is not a directory' % params['root'])
    host = sysfs_source.read_host(root)
    sysfs = sysfs_writer.Sysfs(root)
    try:
        address = sriov.resolve_pf(sysfs.sysroot, host, params['pf'])
        plan = sriov.plan_sriov(host, sysfs, address, params['num_vfs'])
        vfs = sriov.normalize_vf_settings(params['vfs'], params['num_vfs'])
        if vfs and not plan.ifname:
            raise ValueError('vfs: %s has no network interface (nothing under sys/bus/pci/devices/%s/net), so VF '
                             'settings cannot be applied through it' % (address, address))
        if params['timeout'] < 0:
            raise ValueError('timeout: %r must not be negative' % params['timeout'])
    except ValueError as exc:
        module.fail_json(msg='%s (nothing was changed)' % exc)
    if plan.errors:
        module.fail_json(msg='refused, nothing was changed: %s' % '; '.join(plan.errors), errors=plan.errors)

    ip = module.get_bin_path('ip', required=bool(vfs)) if root == '/' else None
    changes = []
    if params['persistent']:
        path = sriov.sriov_rules_path(address)
        dev = host.pci[address]
        try:
            before_text = _files.read_text(root, path)
        except _files.FileError as exc:
            module.fail_json(msg=str(exc))
        after_text = sriov.render_sriov_rules(address, dev.vendor, dev.device, params['num_vfs'], plan.ifname, vfs,
                                             ip if ip else _ip_path_under(root))
        change = _files.FileChange(path, before_text, after_text)
        if change.changed:
            changes.append(change)

    count_changes = bool(plan.writes)
    commands, skipped = [], []
    if root != '/':
        skipped = [[_ip_path_under(root)] + command for command in sriov.vf_commands(plan.ifname, vfs, None)] \
            if vfs else []
        if skipped:
            module.warn('root is %s: the VF link settings are not read or applied there (see skipped_commands)' % root)
    elif vfs and (module.check_mode or not count_changes):
        # with a count change the VFs are recreated: their settings are read after the change
        current = None if count_changes else _read_vf_settings(module, ip, plan.ifname)
        commands = [[ip] + command for command in sriov.vf_commands(plan.ifname, vfs, current)]

    for warning in plan.warnings:
        module.warn(warning)

    writes_done = []
    if module.check_mode:
        dry = sysfs_writer.Sysfs(root, dry_run=True)
        sriov.apply_sriov(dry, plan)
        writes_done = dry.writes
    else:
        writer = _files.Transaction(root, atomic_move=lambda src, dest: module.atomic_move(src, dest, unsafe_writes=False))
        try:
            sriov.apply_sriov(sysfs, plan, params['timeout'])
        except sysfs_writer.PrepareError as exc:
            message = str(exc)
            if plan.before['num_vfs'] and any(w['value'] == '0' for w in sysfs.writes):
                try:
                    restore = sysfs_writer.Sysfs(root)
                    restore.write(sysfs.device(address) + '/sriov_numvfs', str(plan.before['num_vfs']))
                    message += '; restored the previous count of %d VFs' % plan.before['num_vfs']
                except sysfs_writer.PrepareError as again:
                    message += '; restoring the previous count failed too: %s' % again
            module.fail_json(msg=message, writes=sysfs.writes, changed=bool(sysfs.writes))
        writes_done = sysfs.writes
        if vfs and root == '/':
            if count_changes:
                commands = [[ip] + command for command in
                            sriov.vf_commands(plan.ifname, vfs, _read_vf_settings(module, ip, plan.ifname))]
            for command in commands:
                rc, out, err = module.run_command(command)
                if rc != 0:
                    module.fail_json(msg='%s failed (rc=%d): %s' % (' '.join(command), rc, (err or out).strip()),
                                     writes=writes_done, commands=commands, changed=True)
            left = sriov.vf_commands(plan.ifname, vfs, _read_vf_settings(module, ip, plan.ifname)) if commands else []
            if left:
                module.fail_json(msg='the VF settings did not take: %s still differ after ip link set'
                                 % ', '.join(' '.join(command[4:]) for command in left),
                                 writes=writes_done, commands=commands, changed=True)
        try:
            for change in changes:
                writer.apply(change)
        except OSError as exc:
            writer.rollback()
            module.fail_json(msg='writing %s failed: %s' % (_files.resolved(root, changes[0].path), exc),
                             writes=writes_done, commands=commands, changed=bool(writes_done or commands))

    after = dict(plan.after)
    if not module.check_mode:
        dev_after = sysfs_source.read_host(root).pci.get(address)
        after = {'num_vfs': dev_after.sriov_numvfs, 'total_vfs': dev_after.sriov_totalvfs, 'vfs': list(dev_after.vfs)}
    changed = bool(plan.writes or commands or changes)
    result = dict(
        changed=changed,
        pf=address,
        interface=plan.ifname,
        before=plan.before,
        after=after,
        writes=writes_done,
        commands=commands,
        skipped_commands=skipped,
        files=[_files.resolved(root, change.path) for change in changes],
    )
    if module._diff and changed:
        diff = []
        if plan.writes:
            diff.append({'before_header': 'pci %s sriov_numvfs' % address, 'after_header': 'pci %s sriov_numvfs' % address,
                         'before': '%d\n' % plan.before['num_vfs'], 'after': '%d\n' % params['num_vfs']})
        if commands:
            diff.append({'before_header': 'VF settings of %s' % plan.ifname, 'after_header': 'VF settings of %s' % plan.ifname,
                         'before': '', 'after': _settings_text(vfs)})
        result['diff'] = diff + [change.diff(root) for change in changes]
    module.exit_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
