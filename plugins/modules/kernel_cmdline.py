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
  - With O(bootloader=auto) the boot path is decided from what the host really boots with, namely UEFI or
    BIOS (C(/sys/firmware/efi)), the C(LoaderInfo) EFI variable systemd-boot sets, ESPs managed by
    proxmox-boot-tool (listed in C(/etc/kernel/proxmox-boot-uuids); with O(root=/), C(proxmox-boot-tool status)
    says whether they hold systemd-boot or GRUB), kernelstub's configuration, a mounted ESP with
    C(loader/loader.conf), BLS entries next to GRUB, C(/etc/default/grub). When these do not single out one
    path the module fails, naming what it found, and changes nothing.
  - For O(bootloader=grub) it edits C(GRUB_CMDLINE_LINUX) (or O(grub_variable)) in C(/etc/default/grub) or
    in a C(/etc/default/grub.d/*.cfg) drop-in (O(grub_file)), taking the drop-ins into account only where the
    system's C(grub-mkconfig) sources them (Debian, Ubuntu; not Fedora, RHEL, openSUSE, Arch, where a drop-in
    is refused), then runs the distribution's grub config update (C(update-grub),
    C(grub2-mkconfig -o /boot/grub2/grub.cfg), C(grub-mkconfig -o /boot/grub/grub.cfg), or
    C(proxmox-boot-tool refresh) on ESPs that proxmox-boot-tool keeps).
  - For O(bootloader=bls) (GRUB with Boot Loader Specification entries, as on RHEL and Fedora) it edits the
    C(options) lines of every C(/boot/loader/entries/*.conf) entry, C(GRUB_CMDLINE_LINUX) when
    C(/etc/default/grub) exists, and C(/etc/kernel/cmdline) (created when missing), as
    C(grubby --update-kernel=ALL) does, so kernels installed before or after the reboot get the arguments.
    When C(grubby) is installed and O(root=/), the change is made with
    C(grubby --update-kernel=ALL) and then checked, and completed directly where grubby left something out.
  - For O(bootloader=systemd-boot) it edits C(/etc/kernel/cmdline) and the entries in the ESP's
    C(loader/entries) and, when the ESP is on C(/efi) or C(/boot/efi), in C(/boot/loader/entries) (the
    XBOOTLDR partition, which systemd-boot reads too).
  - For O(bootloader=proxmox-boot-tool) (Proxmox VE with systemd-boot on ESPs it manages, ZFS on UEFI) it
    edits C(/etc/kernel/cmdline), then runs C(proxmox-boot-tool refresh). ESPs that C(proxmox-boot-tool status)
    reports as set up differently, or a failing status, are refused.
  - For O(bootloader=kernelstub) (Pop!_OS) it edits C(user.kernel_options) of
    C(/etc/kernelstub/configuration), from which kernelstub rewrites the entries at each kernel update, and
    the C(Pop_OS-*.conf) entries in the ESP's C(loader/entries) (never the recovery partition's
    C(Recovery-*.conf)), then runs C(kernelstub), which rewrites the entries from that
    configuration.
  - A missing C(/etc/kernel/cmdline) is created from the full current command line (C(/usr/lib/kernel/cmdline),
    C(/proc/cmdline), else the newest boot entry; for proxmox-boot-tool C(/proc/cmdline) only, as its refresh
    does), and only when that names the root device (C(root=));
    otherwise the module fails instead of writing a command line a new kernel could not boot with.
  - Parameters that may repeat (C(rd.driver.pre), C(rd.driver.blacklist), C(modprobe.blacklist), C(console),
    C(rd.lvm.lv), ...) and comma-list values (C(vfio-pci.ids)) gain the missing values; what is there stays.
  - Any other present C(key=value) replaces another value of the same key in place (for example C(intel_iommu=off)
    becomes C(intel_iommu=on)) and removes duplicates; each replacement is reported in RV(replaced).
    Keys compare as the kernel does, with C(-) and C(_) equal.
  - Files are written through a temporary file that is parsed back and checked (and, for GRUB shell
    fragments, syntax-checked with C(sh -n)) before it atomically replaces the original. If a later write
    fails, the files already written are restored (created ones removed) and the run fails with
    C(changed=false), naming the file that failed; if a restore fails too, C(changed=true) and the message
    names the files left changed.
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
      - Values with whitespace or quotes, shell characters (C($), backquote, backslash) and characters GRUB's
        script parser treats specially (C(;), C(|), C(&), C(<), C(>), C({), C(})) are refused, on every
        boot path (GRUB reads BLS entries' options too).
      - With O(state=absent), a bare C(key) removes the key with any value; C(key=value) removes only that value.
        C(root) (the root device) is never removed; O(state=absent) with C(root) or C(root=...) is refused.
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
      - Which boot path to edit. V(auto) decides from what the host boots with (see the description and
        C(docs/kernel_cmdline.md) for the rules) and fails, naming what it found, when that is ambiguous.
      - An explicit value is accepted only when it is what V(auto) decides, or one of the paths V(auto) leaves
        open when it is ambiguous; otherwise the module fails naming what it found and what to use.
    type: str
    choices: [auto, grub, bls, systemd-boot, proxmox-boot-tool, kernelstub]
    default: auto
  grub_file:
    description:
      - The GRUB defaults file to add arguments to, C(/etc/default/grub) or a C(/etc/default/grub.d/NAME.cfg)
        drop-in (created when missing, as C(GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX ...")). A NAME starting
        with C(.) is refused (grub-mkconfig's C(grub.d/*.cfg) does not match it).
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
      - Directory all paths are read and written under (for images and tests). The regeneration command
        and grubby run only when this is C(/); otherwise RV(regenerate) names what to run in that system.
    type: path
    default: /
  update_bootloader:
    description:
      - Run the regeneration (grub config update, C(proxmox-boot-tool refresh), C(kernelstub)) after the files changed.
        Never in check mode, never when nothing changed, never when O(root) is not C(/); when it does not
        run, RV(regenerate) lists it.
    type: bool
    default: true
  update_command:
    description:
      - The command to regenerate the grub configuration instead of the detected one (O(bootloader=grub)).
    type: list
    elements: str
  backup:
    description:
      - Keep a timestamped copy of each file that is changed (only files that are changed), next to it as
        C(FILE.PID.YYYYMMDDTHHMMSS~), without the colon that FAT (the ESP holding loader entries) refuses.
    type: bool
    default: false
notes:
  - A new argument takes effect at the next boot; RV(reboot_required) tells whether the running kernel
    (C(/proc/cmdline) under O(root)) already has the wanted state, and RV(next_boot) which entries carry it.
  - When the files carried the arguments before the running kernel booted and C(/proc/cmdline) still lacks
    them, the module fails saying which entry the host booted from, instead of asking for another reboot.
  - Debian's kernel enables the Intel IOMMU by default, so C(/proc/cmdline) without C(intel_iommu=on) does not
    prove that the IOMMU is off.
  - Unified kernel images embed their command line and are not changed. When the next boot starts one,
    RV(regenerate) names its rebuild (C(mkinitcpio -P) where a preset sets C(*_uki=)) and RV(next_boot) says it
    carries the old command line until rebuilt; without a known rebuild the change is refused.
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

# One argument per item: in a YAML flow list [a,b] the commas of vfio-pci.ids would split it.
- name: Bind a GPU to vfio-pci at boot, through a drop-in of our own (Debian, Ubuntu)
  virtdev.libvirt.kernel_cmdline:
    args:
      - vfio-pci.ids=10de:1b80,10de:10f0
      - rd.driver.pre=vfio-pci
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
  description: The boot path that was edited (detected with O(bootloader=auto)).
  returned: success
  type: str
  sample: grub
before:
  description: Arguments of the primary command line before the change (the GRUB variables' effective value,
    the newest BLS entry, C(/etc/kernel/cmdline), or kernelstub's C(user.kernel_options)).
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
  description: Commands run (or that would run in check mode), such as grubby or C(update-grub).
  returned: success
  type: list
  elements: list
  sample: [[update-grub]]
regenerate:
  description: Commands still to be run in the target system for the boot configuration to carry the change
    (with O(root) other than C(/), or O(update_bootloader=false)); empty when nothing is left to do.
    For GRUB it also lists the update while the generated grub.cfg's first kernel line lacks what the
    defaults carry, even when no file changes (a pending update of an earlier run; run on a live host).
  returned: success
  type: list
  elements: list
  sample: [[proxmox-boot-tool, refresh]]
next_boot:
  description: Which boot entries carry the command line at the next boot.
  returned: success
  type: str
  sample: the grub.cfg that update-grub generates from /etc/default/grub
booted_from:
  description: After a reboot that did not bring the arguments, the entry the running kernel came from
    (the module fails then, saying so).
  returned: failure
  type: str
reboot_required:
  description: Whether the running kernel's C(/proc/cmdline) differs from the wanted state, so a reboot is
    needed for it to take effect. True also when a change was made and C(/proc/cmdline) cannot be read.
    C(/proc/cmdline) counts every occurrence of a repeatable parameter and the last of any other.
  returned: success
  type: bool
diff:
  description: Before and after text of each changed file.
  returned: when diff mode is on and something changed
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import plan as boot
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot.operation import KernelCmdline
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import runner


def find_grubby(module, root):
    """grubby edits the running system's files, so only when root is /."""
    return module.get_bin_path('grubby') if root == '/' else None


class KernelCmdlineRun(KernelCmdline):
    def grubby(self):
        return find_grubby(self.module, self.root)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            uri=dict(type='str'),  # accepted for the action group's module_defaults; unused
            args=dict(type='list', elements='str', required=True),
            state=dict(type='str', choices=['present', 'absent'], default='present'),
            bootloader=dict(type='str', choices=['auto'] + list(boot.BOOTLOADERS), default='auto'),
            grub_file=dict(type='path', default='/etc/default/grub'),
            grub_variable=dict(type='str', choices=['GRUB_CMDLINE_LINUX', 'GRUB_CMDLINE_LINUX_DEFAULT'],
                               default='GRUB_CMDLINE_LINUX'),
            root=dict(type='path', default='/'),
            update_bootloader=dict(type='bool', default=True),
            update_command=dict(type='list', elements='str'),
            backup=dict(type='bool', default=False),
        ),
        supports_check_mode=True,
    )
    runner.run(module, KernelCmdlineRun)


if __name__ == '__main__':
    main()
