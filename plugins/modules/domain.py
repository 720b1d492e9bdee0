#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: domain
short_description: Ensure a libvirt guest is defined with its domain-level settings, running or stopped
version_added: 0.1.0
description:
  - Defines a libvirt domain if it is absent, keeps its domain-level settings (everything outside
    C(<devices>) - firmware and secure boot, boot order, features such as Hyper-V and KVM hidden, CPU
    model and topology, clock and timers, memory and huge pages, pinning, NUMA, lifecycle actions,
    SMBIOS strings) as declared, and starts, stops or undefines it.
  - Every setting is optional; an omitted setting leaves the guest's value alone. Only what a setting
    owns is written, so metadata, namespaces (C(qemu:commandline)), features no option describes and
    the devices are kept. One validated define per changed guest; the result is read back and compared,
    and the old definition is restored when libvirt did not keep what was asked.
  - On a running guest, the current memory (balloon target), the current vCPU count (within the
    maximum), vCPU/emulator/IOThread pinning and the title and description change live too; every other
    change is persistent and listed in RV(waiting_for_restart) (O(restart=if_required) restarts the
    guest for it).
  - Combinations that cannot work are refused before anything is written, naming the options (secure
    boot without UEFI or without SMM on q35, a CPU topology that does not multiply to O(vcpus), huge
    pages the local host does not offer, virtiofs without shared memory, a boot order together with
    per-device boot order, settings QEMU refuses under TCG when the guest is to run).
  - O(state=gathered) returns the settings of a guest in this module's option format (plus the parts
    no option describes in RV(unmanaged)); fed back, it changes nothing. See C(docs/domain.md).
  - Devices are not this module's job; use M(virtdev.libvirt.domain_devices) for them.
author:
  - virtdev.libvirt maintainers (@virtdev)
extends_documentation_fragment:
  - virtdev.libvirt.connection
  - virtdev.libvirt.domain_settings
attributes:
  check_mode:
    support: full
    description: Reports what would change (RV(commands), RV(settings)) and makes no write call.
  diff_mode:
    support: full
    description: Shows the settings before and after, one key per setting.
options:
  name:
    description: Name of the domain. It is always taken as a name, never as a UUID.
    type: str
    required: true
  uuid:
    description:
      - UUID for a new domain (libvirt generates one when omitted). An existing domain's UUID is never changed.
      - With an existing domain, the domain named O(name) must have this UUID, else the task fails and changes
        nothing; so O(state=absent) with O(uuid) removes only that very guest.
    type: str
  type:
    description: Domain type of a new domain. V(qemu) runs under TCG emulation, V(kvm) needs hardware virtualization.
    type: str
    choices: [kvm, qemu]
    default: kvm
  arch:
    description: Guest architecture of a new domain.
    type: str
    default: x86_64
  pcie_root_ports:
    description:
      - For a new q35 guest, how many B(free) C(pcie-root-port) controllers it gets, so PCIe devices can be
        hot-plugged later (each needs an empty port). libvirt gives the guest's own devices ports first; this
        counts what is left for hot-plug right after creation.
      - Devices added to the definition later take free ports too. An existing domain is not topped up (that
        would change it on every run that follows a device change); declare extra ports with
        M(virtdev.libvirt.domain_devices) (O(virtdev.libvirt.domain_devices#module:config[].kind=controller),
        O(virtdev.libvirt.domain_devices#module:config[].model=pcie-root-port) and an index) to keep a fixed
        layout.
    type: int
    default: 0
  autostart:
    description: Start the guest when the host (libvirtd) starts. Not changed when omitted.
    type: bool
  change_firmware:
    description:
      - Allow O(firmware) to differ from an existing guest's firmware and change it. Off by default because
        it changes what the guest boots (a UEFI guest's boot entries live in its NVRAM; a BIOS guest's disk
        may have no EFI system partition).
    type: bool
    default: false
  state:
    description:
      - V(present) defines the domain and its settings; V(running) also starts it; V(shutoff) also stops it
        (graceful shutdown, then forced off after O(shutdown_timeout)); V(absent) stops and undefines it
        (disk images are kept).
      - V(gathered) returns the guest's settings in the option format (RV(gathered)), changing nothing.
      - V(parsed) turns O(running_config) domain XML into the option format (RV(parsed)) without a connection.
    type: str
    choices: [present, absent, running, shutoff, gathered, parsed]
    default: present
  running_config:
    description: Domain XML text for O(state=parsed).
    type: str
  restart:
    description:
      - V(if_required) restarts a running guest (graceful shutdown, then start) when a change waits for its
        next boot; V(never) only reports it in RV(waiting_for_restart).
    type: str
    choices: [never, if_required]
    default: never
  shutdown_timeout:
    description: Seconds to wait for a graceful shutdown before forcing the guest off.
    type: int
    default: 120
notes:
  - Under TCG (O(type=qemu)) QEMU has no host CPU to pass through and refuses the Hyper-V C(vpindex)
    enlightenment (and C(synic)/C(stimer), which need it); the module refuses them when such a guest is to
    run. Use O(cpu.mode=maximum) there. C(docs/guide_windows11.md) shows a KVM guest and its TCG variant.
seealso:
  - module: virtdev.libvirt.domain_devices
'''

EXAMPLES = r'''
- name: A small UEFI q35 guest with room for four hot-plugged PCIe devices
  virtdev.libvirt.domain:
    name: web01
    memory: 2048
    vcpus: 2
    machine: q35
    firmware: efi
    pcie_root_ports: 4

- name: A Windows 11 guest (docs/guide_windows11.md has the complete playbook)
  virtdev.libvirt.domain:
    name: win11
    machine: q35
    memory: 8192
    vcpus: 4
    firmware: efi
    secure_boot: true
    enrolled_keys: true
    features:
      acpi: true
      apic: true
      smm: true
      hyperv: {relaxed: true, vapic: true, spinlocks: true, spinlocks_retries: 8191, vpindex: true,
               synic: true, stimer: true, reset: true, frequencies: true}
    cpu:
      mode: host-passthrough
      topology: {sockets: 1, dies: 1, cores: 2, threads: 2}
    clock:
      offset: localtime
      timers:
        - {name: rtc, tickpolicy: catchup}
        - {name: hpet, present: false}
        - {name: hypervclock, present: true}
    boot:
      order: [cdrom, hd]

- name: A GPU passthrough guest's settings (docs/guide_gpu_passthrough.md)
  virtdev.libvirt.domain:
    name: gpu01
    vcpus: 4
    features:
      kvm: {hidden: true}
      hyperv: {vendor_id: 0123456789ab}
    cpu:
      mode: host-passthrough
      topology: {sockets: 1, dies: 1, cores: 4, threads: 1}
    memory_backing:
      hugepages: true
      hugepage_size: 2048
    cputune:
      vcpupin: [{vcpu: 0, cpuset: "2"}, {vcpu: 1, cpuset: "3"}, {vcpu: 2, cpuset: "4"}, {vcpu: 3, cpuset: "5"}]
      emulatorpin: "0-1"

- name: Read a guest's settings in this module's format
  virtdev.libvirt.domain:
    name: win11
    state: gathered
  register: win11_settings

- name: Start it
  virtdev.libvirt.domain:
    name: web01
    state: running

- name: Remove a guest (its disk images stay)
  virtdev.libvirt.domain:
    name: old01
    state: absent
'''

RETURN = r'''
domain:
  description: The domain's base settings after the run (predicted in check mode).
  returned: when the domain exists after the run
  type: dict
  sample: {name: web01, uuid: 3f0c..., memory_mib: 2048, vcpus: 2, machine: pc-q35-7.2, firmware: efi, active: false}
settings:
  description: The domain-level settings after the run, in the option format (as libvirt kept them; predicted in
    check mode).
  returned: when the domain exists after the run
  type: dict
  sample: {memory: 2048, vcpus: 2, firmware: efi, features: {acpi: true, smm: true}}
gathered:
  description: With O(state=gathered), the guest's settings in the option format (and C(autostart)).
  returned: state is gathered
  type: dict
parsed:
  description: With O(state=parsed), the settings of O(running_config) in the option format.
  returned: state is parsed
  type: dict
unmanaged:
  description: With O(state=gathered) or O(state=parsed), the parts of the definition outside C(<devices>) that no
    option describes (kept as they are by every run), as element paths.
  returned: state is gathered or parsed
  type: list
  elements: str
  sample: [metadata, pm]
restart_required:
  description: Whether a running guest sees part of the change only after its next boot.
  returned: always
  type: bool
waiting_for_restart:
  description: The settings (one path per setting) a running guest sees only after its next boot.
  returned: always
  type: list
  elements: str
  sample: [features.hyperv.vendor_id]
restarted:
  description: Whether the guest was restarted for the change (O(restart=if_required)).
  returned: always
  type: bool
commands:
  description: What was (or would be) done, in order. C(live <setting>) is a change made to the running guest.
  returned: always
  type: list
  elements: str
  sample: [define, live current_memory, start]
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _domain_runner, _domain_settings


def argument_spec():
    spec = dict(_common.CONNECTION_ARGS)
    spec.update(_domain_settings.argument_spec())
    spec.update(
        name={'type': 'str', 'required': True},
        uuid={'type': 'str'},
        type={'type': 'str', 'choices': ['kvm', 'qemu'], 'default': 'kvm'},
        arch={'type': 'str', 'default': 'x86_64'},
        pcie_root_ports={'type': 'int', 'default': 0},
        autostart={'type': 'bool'},
        change_firmware={'type': 'bool', 'default': False},
        state={'type': 'str', 'choices': ['present', 'absent', 'running', 'shutoff', 'gathered', 'parsed'],
               'default': 'present'},
        running_config={'type': 'str'},
        restart={'type': 'str', 'choices': ['never', 'if_required'], 'default': 'never'},
        shutdown_timeout={'type': 'int', 'default': 120},
    )
    return spec


def main():
    module = AnsibleModule(
        argument_spec=argument_spec(),
        required_if=[('state', 'parsed', ('running_config',))],
        supports_check_mode=True,
    )
    _domain_runner.run(module)


if __name__ == '__main__':
    main()
