# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A GPU with its audio function, bound to vfio-pci as one IOMMU group, in the real-kernel guest.

The guest machine gets a two-function device in one slot of its root bus (function 0 a display controller,
function 1 an HD audio controller, as a discrete GPU has): without ACS the kernel puts both functions in one
IOMMU group. The guest role's plan (filter guest_plan, profile gpu_passthrough, the GPU named by its slot)
turns that slot into both functions, and the passthrough_host role binds them - the whole group - to
vfio-pci; a second run changes nothing. Asserted from the guest kernel's own view (sysfs, /dev/vfio).

This module boots its own guest (the extra devices are a parameter of the bed; the other tests' guest has
none of them); its file name sorts before the tests that use the session's guest.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

import testbed
from testbed import ANSIBLE_PLAYBOOK, ansible_playbook_lines

GPU_SLOT = '0000:00:07'
FUNCTIONS = ('0000:00:07.0', '0000:00:07.1')
GPU_DEVICES = (
    # secondary-vga: PCI class 0x0380 (display, not VGA): not the boot display the host guards keep
    "-device", "secondary-vga,bus=pcie.0,addr=0x7.0,multifunction=on",
    "-device", "ich9-intel-hda,bus=pcie.0,addr=0x7.1",
)
GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n'

PLAYBOOK = '''\
- hosts: localhost
  gather_facts: false
  vars:
    passthrough_host_iommu: intel        # the emulated IOMMU; TCG's CPU vendor says nothing about it
    passthrough_host_bootloader: grub
    passthrough_host_bootloader_update_command: [/bin/sh, -c, 'true']
    passthrough_host_persistent: false   # no initramfs rebuild under TCG
    # the built-in profile's keys that matter here (the plan of the guest role, roles/guest/vars/main.yml)
    profiles:
      gpu_passthrough: {nic_model: virtio, disk_bus: virtio, disk_prefix: vd}
  tasks:
    - name: Read the host as the guest role does
      virtdev.libvirt.host_devices_info:
        libvirt: false
      register: host
    - name: Plan the GPU guest, the GPU named by its slot
      ansible.builtin.set_fact:
        plan: >-
          {{ ([{'name': 'gpu01', 'profile': 'gpu_passthrough', 'gpu': '%(slot)s', 'networks': []}]
              | virtdev.libvirt.guest_plan(profiles, {}, host.pci_devices))[0] }}
    - name: Prepare the host for exactly those devices (first run)
      ansible.builtin.include_role:
        name: virtdev.libvirt.passthrough_host
      vars:
        passthrough_host_vfio_devices: "{{ plan.vfio }}"
    - name: Prepare it again (second run)
      ansible.builtin.include_role:
        name: virtdev.libvirt.passthrough_host
      vars:
        passthrough_host_vfio_devices: "{{ plan.vfio }}"
    - name: Hand the plan back
      ansible.builtin.copy:
        content: "{{ {'vfio': plan.vfio, 'hostdevs': plan.config | selectattr('kind', 'eq', 'hostdev') | list,
                      'groups': host.pci_devices | selectattr('address', 'in', plan.vfio)
                                | map(attribute='iommu_group') | list} | to_json }}"
        dest: /run/testbed/gpu-plan.json
        mode: "0644"
''' % {'slot': GPU_SLOT}


@pytest.fixture(scope="module")
def gpu_bed():
    testbed.require()
    if not os.path.exists(ANSIBLE_PLAYBOOK):
        pytest.skip("ansible-playbook not found next to %s" % sys.executable)
    bed = testbed.Guest(extra_devices=GPU_DEVICES)
    bed.start()
    try:
        yield bed
    finally:
        bed.stop()


@pytest.fixture(scope="module")
def gpu_run(gpu_bed):
    grub = gpu_bed.put("gpu-grub", GRUB)
    playbook = gpu_bed.put("gpu-playbook.yml", PLAYBOOK)
    before = gpu_bed.run(" ; ".join(
        "echo {0} GROUP=$(basename $(readlink -f /sys/bus/pci/devices/{0}/iommu_group)) CLASS=$(cat "
        "/sys/bus/pci/devices/{0}/class)".format(address) for address in FUNCTIONS))
    assert before.rc == 0, before.output
    drivers = " ; ".join(
        "l=/sys/bus/pci/devices/{0}/driver; echo {0} DRIVER=$([ -e $l ] && basename $(readlink -f $l) || echo none)"
        .format(address) for address in FUNCTIONS)
    script = "\n".join([
        ": ansible-playbook -c local, the GPU plan and passthrough_host x2",
        "set -e",
        "rm -rf /etc/default/grub.d; mkdir -p /etc/default",
        "cp %s /etc/default/grub" % grub,
    ] + ansible_playbook_lines(playbook) + [
        drivers,
        "group=$(basename $(readlink -f /sys/bus/pci/devices/%s/iommu_group)); test -c /dev/vfio/$group "
        "&& echo VFIO-NODE=yes" % FUNCTIONS[0],
    ])
    # two role runs and the plan under TCG: 900 s was not enough on a loaded 2-core machine
    result = gpu_bed.run(script, timeout=1800)
    assert result.rc == 0, result.output
    return before.output, result.output, json.loads(gpu_bed.get("gpu-plan.json"))


def test_the_two_functions_share_one_iommu_group(gpu_run):
    before, _output, plan = gpu_run
    groups = {line.split()[0]: line.split()[1] for line in before.splitlines() if 'GROUP=' in line}
    assert set(groups) == set(FUNCTIONS) and len(set(groups.values())) == 1, before
    assert 'CLASS=0x038000' in before and 'CLASS=0x040300' in before, before
    assert len(set(plan['groups'])) == 1


def test_the_slot_becomes_one_multifunction_device_of_both_functions(gpu_run):
    _before, _output, plan = gpu_run
    assert plan['vfio'] == list(FUNCTIONS)
    assert [(device['address'], device['guest_address'], device.get('multifunction')) for device in plan['hostdevs']] == [
        (FUNCTIONS[0], '0000:00:10.0', True), (FUNCTIONS[1], '0000:00:10.1', None)]


def test_the_whole_group_is_on_vfio_pci_and_a_second_run_changes_nothing(gpu_run):
    _before, output, _plan = gpu_run
    for address in FUNCTIONS:
        assert '%s DRIVER=vfio-pci' % address in output, output
    assert 'VFIO-NODE=yes' in output
    recaps = [line for line in output.splitlines() if line.startswith('localhost')]
    assert recaps and 'failed=0' in recaps[-1], output
    # changed: kernel_cmdline and vfio_bind of the first run, the plan file; the second run changes nothing
    changed = [line for line in output.splitlines() if line.startswith('changed:')]
    assert len(changed) == 3, changed
