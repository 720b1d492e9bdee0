# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The passthrough_host role through ``ansible-playbook -c local`` in the real-kernel guest.

Asserted from the guest kernel's own view: the lone e1000e ends on vfio-pci with its /dev/vfio group,
a second run changes nothing, and asking for the AHCI controller (host-critical group) fails before
anything is changed.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from testbed import ANSIBLE_PLAYBOOK, ansible_playbook_lines

GRUB = 'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet"\nGRUB_CMDLINE_LINUX=""\n'
LONE_NIC = '0000:00:03.0'
AHCI = '0000:00:1f.2'

PLAYBOOK = '''\
- hosts: localhost
  gather_facts: false
  vars:
    passthrough_host_iommu: intel        # the emulated IOMMU; TCG's CPU vendor says nothing about it
    passthrough_host_bootloader: grub
    passthrough_host_bootloader_update_command: [/bin/sh, -c, 'echo ran >> /run/testbed/update-grub.log']
    passthrough_host_persistent: false   # no initramfs rebuild under TCG
  tasks:
    - name: First run
      ansible.builtin.include_role:
        name: virtdev.libvirt.passthrough_host
      vars:
        passthrough_host_vfio_devices: ["%(nic)s"]
    - name: Record the first run
      ansible.builtin.set_fact:
        first_reboot: "{{ passthrough_host_reboot_required }}"
    - name: Second run
      ansible.builtin.include_role:
        name: virtdev.libvirt.passthrough_host
      vars:
        passthrough_host_vfio_devices: ["%(nic)s"]
    - name: The AHCI controller is refused before anything changes
      block:
        - name: Ask for it
          ansible.builtin.include_role:
            name: virtdev.libvirt.passthrough_host
          vars:
            passthrough_host_vfio_devices: ["%(ahci)s"]
      rescue:
        - name: Keep the refusal
          ansible.builtin.set_fact:
            refusal: "{{ ansible_failed_result.msg }}"
    - name: Hand the results back
      ansible.builtin.copy:
        content: "{{ {'first_reboot': first_reboot, 'refusal': refusal | default('')} | to_json }}"
        dest: /run/testbed/role-results.json
        mode: "0644"
''' % {'nic': LONE_NIC, 'ahci': AHCI}


@pytest.fixture(scope="module")
def role_run(guest):
    if not os.path.exists(ANSIBLE_PLAYBOOK):
        pytest.skip("ansible-playbook not found next to %s" % sys.executable)
    grub = guest.put("role-grub", GRUB)
    playbook = guest.put("role-playbook.yml", PLAYBOOK)
    driver = "l=/sys/bus/pci/devices/%s/driver; if [ -e $l ]; then basename $(readlink -f $l); else echo none; fi"
    script = "\n".join([
        ": ansible-playbook -c local, passthrough_host role x3",
        "set -e",
        "rm -rf /etc/default/grub.d; mkdir -p /etc/default",
        "cp %s /etc/default/grub" % grub,
    ] + ansible_playbook_lines(playbook) + [
        "echo NIC-DRIVER=$(%s)" % (driver % LONE_NIC),
        "echo AHCI-DRIVER=$(%s)" % (driver % AHCI),
        "echo AHCI-OVERRIDE=$(cat /sys/bus/pci/devices/%s/driver_override)" % AHCI,
        "group=$(basename $(readlink -f /sys/bus/pci/devices/%s/iommu_group)); test -c /dev/vfio/$group "
        "&& echo VFIO-NODE=yes" % LONE_NIC,
        "grep GRUB_CMDLINE_LINUX= /etc/default/grub",
    ])
    result = guest.run(script, timeout=900)
    # give the NIC back for the tests that follow in this guest
    guest.run("echo > /sys/bus/pci/devices/{0}/driver_override; echo {0} > /sys/bus/pci/drivers/vfio-pci/unbind; "
              "echo {0} > /sys/bus/pci/drivers_probe".format(LONE_NIC))
    assert result.rc == 0, result.output
    return result, json.loads(guest.get("role-results.json"))


def test_role_binds_the_device_and_keeps_the_host(role_run):
    result, results = role_run
    assert "NIC-DRIVER=vfio-pci" in result.output and "VFIO-NODE=yes" in result.output
    # the refused controller was not touched: no override written, not on vfio-pci
    assert "AHCI-OVERRIDE=(null)" in result.output and "AHCI-DRIVER=vfio-pci" not in result.output
    assert 'GRUB_CMDLINE_LINUX="intel_iommu=on iommu=pt"' in result.output
    assert results["first_reboot"] is False             # the guest kernel already runs with those arguments


def test_second_run_changes_nothing(role_run):
    result, _results = role_run
    recaps = [line for line in result.output.splitlines() if line.startswith("localhost")]
    assert recaps and "failed=0" in recaps[-1]
    # changed tasks: first run (cmdline + bind), the refusal play part changes nothing
    changed = [line for line in result.output.splitlines() if line.startswith("changed:")]
    assert len(changed) == 3, changed   # kernel_cmdline, vfio_bind, the results file


def test_host_critical_device_is_refused_before_any_change(role_run):
    _result, results = role_run
    assert results["refusal"].startswith("Refused, nothing was changed: 0000:00:1f.2")
