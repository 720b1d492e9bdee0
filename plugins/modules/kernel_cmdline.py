#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: kernel_cmdline
short_description: Ensure kernel command line arguments are present or absent where the bootloader reads them
version_added: 0.1.0
description:
  - Makes kernel arguments such as C(intel_iommu=on), C(iommu=pt) or C(vfio-pci.ids=10de:1b80) present or
    absent in the configuration the bootloader really uses, idempotently, and reports whether a reboot is
    needed for the running kernel to see them. It never reboots.
  - For O(bootloader=grub) it edits C(GRUB_CMDLINE_LINUX) (or O(grub_variable)) in C(/etc/default/grub) or
    in a C(/etc/default/grub.d/*.cfg) drop-in (O(grub_file)), taking the drop-ins that C(grub-mkconfig)
    sources after the main file into account, then runs the distribution's grub config update
    (C(update-grub), C(grub2-mkconfig -o /boot/grub2/grub.cfg) or C(grub-mkconfig -o /boot/grub/grub.cfg)).
  - For O(bootloader=bls) (GRUB with Boot Loader Specification entries, as on RHEL and Fedora) it edits the
    C(options) lines of every C(/boot/loader/entries/*.conf) entry, and also C(/etc/kernel/cmdline) and
    C(GRUB_CMDLINE_LINUX) when they exist, since kernel-install and grub2-mkconfig regenerate entries from
    them. When C(grubby) is installed and O(root=/), the change is made with
    C(grubby --update-kernel=ALL) and then checked, and completed directly where grubby left something out.
  - For O(bootloader=systemd-boot) it edits C(/etc/kernel/cmdline) (created from what kernel-install would
    otherwise use, C(/usr/lib/kernel/cmdline) or C(/proc/cmdline), when missing) and the entries in the ESP's
    C(loader/entries).
  - Present C(key=value) replaces another value of the same key in place (for example C(intel_iommu=off)
    becomes C(intel_iommu=on)) and removes duplicates; each replacement is reported in RV(replaced).
    Keys compare as the kernel does, with C(-) and C(_) equal.
  - Files are written through a temporary file that is parsed back and checked (and, for GRUB shell
    fragments, syntax-checked with C(sh -n)) before it atomically replaces the original. If a later write
    fails, the files already written are restored.
author:
  - virtdev.libvirt maintainers (@virtdev)
attributes:
  check_mode:
    support: full
    description: Computes the same plan, RV(diff) and RV(reboot_required) and writes nothing.
  diff_mode:
    support: full
    description: Shows every changed file before and after.
extends_documentation_fragment:
  - virtdev.libvirt.group_uri
options:
  args:
    description:
      - Kernel arguments, one per item, each C(key) or C(key=value). Keys are letters, digits, C(_), C(-) and C(.).
      - Values with whitespace or quotes, and shell characters (C($), backquote, backslash) are refused.
      - With O(state=absent), a bare C(key) removes the key with any value; C(key=value) removes only that value.
    type: list
    elements: str
    required: true
  state:
    description: Whether the arguments must be present or absent.
    type: str
    choices: [present, absent]
    default: present
  bootloader:
    description:
      - Which configuration layout to edit. V(auto) picks V(systemd-boot) when an ESP C(loader/loader.conf)
        exists, else V(bls) when C(/boot/loader/entries/*.conf) exist, else V(grub) when C(/etc/default/grub)
        exists, else V(systemd-boot) when C(/etc/kernel/cmdline) exists.
    type: str
    choices: [auto, grub, bls, systemd-boot]
    default: auto
  grub_file:
    description:
      - The GRUB defaults file to add arguments to, C(/etc/default/grub) or a C(/etc/default/grub.d/NAME.cfg)
        drop-in (created when missing, as C(GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX ...")).
      - The module fails when a file sourced later sets the variable without including its previous value,
        since that would silently drop the arguments.
    type: path
    default: /etc/default/grub
  grub_variable:
    description:
      - The GRUB variable to add arguments to. C(GRUB_CMDLINE_LINUX) applies to all entries including
        recovery ones, C(GRUB_CMDLINE_LINUX_DEFAULT) to normal entries only. Replacements and removals
        look at both.
    type: str
    choices: [GRUB_CMDLINE_LINUX, GRUB_CMDLINE_LINUX_DEFAULT]
    default: GRUB_CMDLINE_LINUX
  root:
    description:
      - Directory all paths are read and written under (for images and tests). The bootloader update command
        and grubby run only when this is C(/).
    type: path
    default: /
  update_bootloader:
    description:
      - Run the grub config update after C(/etc/default/grub) changed (O(bootloader=grub) only). Never in
        check mode, never when nothing changed, never when O(root) is not C(/).
    type: bool
    default: true
  update_command:
    description:
      - The command to regenerate the grub configuration instead of the detected one.
    type: list
    elements: str
  backup:
    description: Keep a timestamped copy of each file that is changed (only files that are changed).
    type: bool
    default: false
notes:
  - A new argument takes effect at the next boot; RV(reboot_required) tells whether the running kernel
    (C(/proc/cmdline) under O(root)) already has the wanted state.
  - Debian's kernel enables the Intel IOMMU by default, so C(/proc/cmdline) without C(intel_iommu=on) does not
    prove that the IOMMU is off.
  - Unified kernel images embed their command line and are not changed.
seealso:
  - name: Boot Loader Specification
    description: The format of C(loader/entries/*.conf).
    link: https://uapi-group.org/specifications/specs/boot_loader_specification/
'''

EXAMPLES = r'''
- name: Enable the IOMMU in passthrough mode for VFIO
  virtdev.libvirt.kernel_cmdline:
    args:
      - intel_iommu=on
      - iommu=pt
  register: iommu

- name: Tell the operator
  ansible.builtin.debug:
    msg: "Reboot needed for {{ iommu.after | join(' ') }}"
  when: iommu.reboot_required

- name: Bind a GPU to vfio-pci at boot, through a drop-in of our own
  virtdev.libvirt.kernel_cmdline:
    args: ["vfio-pci.ids=10de:1b80,10de:10f0", rd.driver.pre=vfio-pci]
    bootloader: grub
    grub_file: /etc/default/grub.d/90-vfio.cfg
    backup: true

- name: Remove any iommu= setting, whatever its value
  virtdev.libvirt.kernel_cmdline:
    args: [iommu]
    state: absent
'''

RETURN = r'''
bootloader:
  description: The layout that was edited (detected with O(bootloader=auto)).
  returned: success
  type: str
  sample: grub
before:
  description: Arguments of the primary command line before the change (the GRUB variables' effective value,
    the newest BLS entry, or C(/etc/kernel/cmdline)).
  returned: success
  type: list
  elements: str
  sample: [quiet, intel_iommu=off]
after:
  description:
    - The same command line after the change (predicted in check mode).
    - After a run through grubby it is read back from the files; grubby appends the arguments it
      replaces, so the order can differ from the check mode prediction.
  returned: success
  type: list
  elements: str
  sample: [quiet, intel_iommu=on, iommu=pt]
locations:
  description: Every command line considered, with its arguments before and after.
  returned: success
  type: list
  elements: dict
  sample: [{name: /boot/loader/entries/abc-6.1.conf, before: [ro], after: [ro, iommu=pt], changed: true}]
added:
  description: Arguments appended, with where.
  returned: success
  type: list
  elements: dict
  sample: [{arg: iommu=pt, location: "/etc/default/grub:6 GRUB_CMDLINE_LINUX"}]
removed:
  description: Arguments removed (O(state=absent)), with where.
  returned: success
  type: list
  elements: dict
replaced:
  description: Contradicting values replaced or dropped, with where.
  returned: success
  type: list
  elements: dict
  sample: [{before: intel_iommu=off, after: intel_iommu=on, location: "/etc/default/grub:6 GRUB_CMDLINE_LINUX"}]
duplicates:
  description: Repeated occurrences of a wanted argument that were dropped.
  returned: success
  type: list
  elements: dict
files:
  description: Files changed (or that would be changed in check mode), as paths on the controller's view of O(root).
  returned: success
  type: list
  elements: str
  sample: [/etc/default/grub]
backup_files:
  description: Backup copies made with O(backup=true).
  returned: when O(backup=true) and something changed
  type: list
  elements: str
commands:
  description: Commands run (or that would run in check mode) after the files changed, such as C(update-grub).
  returned: success
  type: list
  elements: list
  sample: [[update-grub]]
reboot_required:
  description: Whether the running kernel's C(/proc/cmdline) differs from the wanted state, so a reboot is
    needed for it to take effect. True also when a change was made and C(/proc/cmdline) cannot be read.
  returned: success
  type: bool
diff:
  description: Before and after text of each changed file.
  returned: when diff mode is on and something changed
  type: list
  elements: dict
'''

import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common
from ansible_collections.virtdev.libvirt.plugins.module_utils import _kernel_cmdline as core


class _Writer(object):
    """Temp file + validate + atomic move, with backups and a rollback on failure."""

    def __init__(self, module, root, backup):
        self.module = module
        self.root = root
        self.backup = backup
        self.written = []  # (real path, previous text or None)
        self.backups = []

    def write(self, config, before, after):
        module = self.module
        real = core.under(self.root, config.path)
        directory = os.path.dirname(real)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        core.validate(config, after)
        fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(real), dir=directory)
        try:
            with os.fdopen(fd, 'wb') as handle:
                handle.write(after.encode('utf-8'))
            if before is not None:
                shutil.copymode(real, tmp)
            else:
                os.chmod(tmp, 0o644)
            if isinstance(config, core.GrubDefaultsFile):
                sh = module.get_bin_path('sh')
                if sh:
                    rc, _out, err = module.run_command([sh, '-n', tmp])
                    if rc != 0:
                        raise core.CmdlineError('validation of the new %s failed: sh -n: %s' % (config.path, err.strip()))
            if before is not None and self.backup:
                self.backups.append(module.backup_local(real))
            module.atomic_move(tmp, real, unsafe_writes=False)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.written.append((real, before))

    def rollback(self):
        for real, before in reversed(self.written):
            try:
                if before is None:
                    os.unlink(real)
                else:
                    with open(real, 'wb') as handle:
                        handle.write(before.encode('utf-8'))
            except OSError as exc:
                self.module.warn('could not restore %s: %s' % (real, exc))


def _update_command(module, root):
    if module.params['update_command']:
        return list(module.params['update_command'])
    update_grub = module.get_bin_path('update-grub')
    if update_grub:
        return [update_grub]
    grub2 = module.get_bin_path('grub2-mkconfig')
    if grub2:
        return [grub2, '-o', '/boot/grub2/grub.cfg']
    grub = module.get_bin_path('grub-mkconfig')
    if grub:
        return [grub, '-o', '/boot/grub/grub.cfg']
    return None


def find_grubby(module, root):
    """grubby edits the running system's files, so only when root is /."""
    if root != '/':
        return None
    return module.get_bin_path('grubby')


def _grubby_args(plan, args, state):
    entries = [scope for scope in plan.scopes if scope.files and isinstance(scope.files[0], core.BlsEntry)]
    needed = [arg.text for arg in args
              if any(not core.satisfied(scope.tokens(original=True), [arg], state, exact=True) for scope in entries)]
    return needed


def _snapshot(plan, root):
    texts = _reread(root, [core.under(root, path) for path in (core.GRUB_MAIN, core.KERNEL_CMDLINE)])
    for scope in plan.scopes:
        for config in scope.files:
            real = core.under(root, config.path)
            texts[real] = config.text
    return texts


def _reread(root, paths):
    result = {}
    for real in paths:
        if os.path.isfile(real):
            with open(real, 'rb') as handle:
                result[real] = handle.read().decode('utf-8', 'replace')
        else:
            result[real] = None
    return result


def run_module():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type='str'),  # accepted for the action group's module_defaults; unused
            args=dict(type='list', elements='str', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            bootloader=dict(type='str', choices=['auto', 'grub', 'bls', 'systemd-boot'], default='auto'),
            grub_file=dict(type='path', default=core.GRUB_MAIN),
            grub_variable=dict(type='str', choices=list(core.GRUB_VARIABLES), default='GRUB_CMDLINE_LINUX'),
            root=dict(type='path', default='/'),
            update_bootloader=dict(type='bool', default=True),
            update_command=dict(type='list', elements='str'),
            backup=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    _common.check_strings(module)  # NUL, control characters, lone surrogates: refused naming the option
    params = module.params
    root = os.path.abspath(params['root'])
    state = params['state']
    if not os.path.isdir(root):
        module.fail_json(msg='root: %r is not a directory' % params['root'])

    def make_plan():
        return core.plan(root, params['bootloader'], args, state,
                         grub_file=params['grub_file'], grub_variable=params['grub_variable'])

    try:
        args = core.parse_args(params['args'], state)
        plan = make_plan()
    except core.CmdlineError as exc:
        module.fail_json(msg=str(exc))

    commands = []
    update = None
    grub_changed = any(isinstance(config, core.GrubDefaultsFile) for config, _b, _a in plan.changes)
    if plan.bootloader == 'grub' and grub_changed and params['update_bootloader'] and root == '/':
        update = _update_command(module, root)
        if update is None:
            module.fail_json(msg='update_bootloader: none of update-grub, grub2-mkconfig or grub-mkconfig was found; '
                                 'install GRUB, set update_command, or set update_bootloader=false (nothing was changed)')
        commands.append(update)

    files = [core.under(root, config.path) for config, _b, _a in plan.changes]
    diffs = [dict(before=before or '', after=after, before_header=core.under(root, config.path),
                  after_header=core.under(root, config.path)) for config, before, after in plan.changes]
    report = plan.report()
    final = plan
    writer = _Writer(module, root, params['backup'])

    if plan.changed and not module.check_mode:
        grubby = find_grubby(module, root) if plan.bootloader == 'bls' else None
        try:
            if grubby:
                before_texts = _snapshot(plan, root)
                if params['backup']:
                    for config, before, _after in plan.changes:
                        if before is not None:
                            writer.backups.append(module.backup_local(core.under(root, config.path)))
                    writer.backup = False
                needed = _grubby_args(plan, args, state)
                if needed:
                    cmd = [grubby, '--update-kernel=ALL', '--bls-directory=%s' % core.under(root, core.BLS_DIR)]
                    cmd.append(('--args=%s' if state == 'present' else '--remove-args=%s') % ' '.join(needed))
                    commands.insert(0, cmd)
                    rc, out, err = module.run_command(cmd)
                    if rc != 0:
                        raise core.CmdlineError('%s failed (rc=%d): %s' % (' '.join(cmd), rc, (err or out).strip()))
                    writer.written.extend(before_texts.items())
                residual = make_plan()
                for config, before, after in residual.changes:
                    writer.write(config, before, after)
                final = make_plan()
                if final.changed:
                    raise core.CmdlineError('after grubby and a direct edit, %s still differ from the wanted state'
                                            % ', '.join(core.under(root, c.path) for c, _b, _a in final.changes))
                after_texts = _reread(root, before_texts)
                order = files + [path for path in before_texts if path not in files]
                files = [path for path in order if after_texts[path] != before_texts[path]]
                diffs = [dict(before=before_texts[path] or '', after=after_texts[path] or '',
                              before_header=path, after_header=path) for path in files]
            else:
                for config, before, after in plan.changes:
                    writer.write(config, before, after)
        except (core.CmdlineError, OSError) as exc:
            writer.rollback()
            module.fail_json(msg='%s; files restored to their previous content' % exc, commands=commands)
        if update is not None:
            rc, out, err = module.run_command(update)
            if rc != 0:
                module.fail_json(msg='%s failed (rc=%d) after the files were changed: %s'
                                 % (' '.join(update), rc, (err or out).strip()),
                                 files=files, commands=commands, changed=True)

    for warning in plan.warnings:
        module.warn(warning)

    proc = core.read_proc_cmdline(root)
    if proc is None:
        reboot = plan.changed
    else:
        reboot = core.reboot_required(proc, args, state)

    # After a real run through grubby the files are read back; otherwise the plan is what was written.
    afters = [scope.tokens(original=final is not plan) for scope in final.scopes]
    if len(afters) != len(plan.scopes):  # grubby created a file the plan did not know about
        afters = [scope.tokens() for scope in plan.scopes]
    result = dict(
        changed=plan.changed,
        bootloader=plan.bootloader,
        before=plan.scopes[0].tokens(original=True),
        after=afters[0],
        locations=[dict(name=scope.name, before=scope.tokens(original=True), after=after,
                        changed=scope.tokens(original=True) != after) for scope, after in zip(plan.scopes, afters)],
        added=report['added'],
        removed=report['removed'],
        replaced=report['replaced'],
        duplicates=report['duplicates'],
        files=files,
        commands=commands,
        reboot_required=reboot,
    )
    if params['backup'] and plan.changed:
        result['backup_files'] = [path for path in writer.backups if path]
    if module._diff and plan.changed:
        result['diff'] = diffs
    module.exit_json(**result)


def main():
    run_module()


if __name__ == '__main__':
    main()
