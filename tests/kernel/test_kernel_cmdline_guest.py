# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kernel_cmdline through ``ansible-playbook -c local`` in the real-kernel guest, with ``root: /``.

The guest's ``/`` is this host's tree under a tmpfs overlay, so ``/etc/default/grub`` written there
is thrown away with the guest: this is the one place the ``root: /`` path (the bootloader update
command, ``/proc/cmdline`` of a kernel we booted with known arguments) runs for real.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from testbed import ANSIBLE_PLAYBOOK, ansible_playbook_lines

GRUB = '''\
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX="intel_iommu=off"
'''

PLAYBOOK = '''\
- hosts: localhost
  gather_facts: false
  vars:
    update: [/bin/sh, -c, 'echo ran >> /run/testbed/update-grub.log']
  tasks:
    - name: Check mode first
      virtdev.libvirt.kernel_cmdline:
        args: [intel_iommu=on, iommu=pt]
        bootloader: grub
        update_command: "{{ update }}"
      check_mode: true
      diff: true
      register: check
    - name: Apply
      virtdev.libvirt.kernel_cmdline:
        args: [intel_iommu=on, iommu=pt]
        bootloader: grub
        update_command: "{{ update }}"
      register: apply
    - name: Apply again
      virtdev.libvirt.kernel_cmdline:
        args: [intel_iommu=on, iommu=pt]
        bootloader: grub
        update_command: "{{ update }}"
      register: again
    - name: An argument the running kernel does not have
      virtdev.libvirt.kernel_cmdline:
        args: [rd.driver.pre=vfio-pci]
        bootloader: grub
        update_command: "{{ update }}"
        backup: true
      register: extra
    - name: Hand the results back
      ansible.builtin.copy:
        content: "{{ {'check': check, 'apply': apply, 'again': again, 'extra': extra} | to_json }}"
        dest: /run/testbed/results.json
        mode: "0644"
'''


@pytest.fixture(scope="module")
def playbook_run(guest):
    if not os.path.exists(ANSIBLE_PLAYBOOK):
        pytest.skip("ansible-playbook not found next to %s" % sys.executable)
    grub = guest.put("grub", GRUB)
    playbook = guest.put("playbook.yml", PLAYBOOK)
    script = "\n".join([
        ": ansible-playbook -c local, kernel_cmdline x4 + copy",
        "set -e",
        "test ! -e /etc/default/grub.d || rm -rf /etc/default/grub.d",
        "mkdir -p /etc/default",
        "cp %s /etc/default/grub" % grub,
    ] + ansible_playbook_lines(playbook) + [
        "cat /etc/default/grub",
    ])
    result = guest.run(script, timeout=900)
    assert result.rc == 0, result.output
    results = json.loads(guest.get("results.json"))
    return result, results, guest.get("update-grub.log") or ""


def test_check_apply_idempotent_in_guest(playbook_run):
    result, results, update_log = playbook_run
    check, apply, again = results["check"], results["apply"], results["again"]
    assert check["changed"] is True and check["diff"]
    assert apply["changed"] is True and again["changed"] is False
    assert apply["replaced"] == [{"before": "intel_iommu=off", "after": "intel_iommu=on",
                                  "location": "/etc/default/grub:5 GRUB_CMDLINE_LINUX"}]
    assert apply["files"] == ["/etc/default/grub"]
    assert 'GRUB_CMDLINE_LINUX="intel_iommu=on iommu=pt rd.driver.pre=vfio-pci"' in result.output
    # the update command ran once per real change: not in check mode, not when nothing changed
    assert update_log.split() == ["ran", "ran"]
    assert apply["commands"] == [["/bin/sh", "-c", "echo ran >> /run/testbed/update-grub.log"]]
    assert check["commands"] == apply["commands"]  # check mode names what the real run runs
    assert again["commands"] == []
    # root is /: the regeneration ran, nothing is left to the admin
    assert apply["regenerate"] == [] and check["regenerate"] == []
    assert apply["next_boot"].startswith("the grub.cfg that /bin/sh -c echo ran")


def test_reboot_required_follows_the_running_kernel(playbook_run):
    _result, results, _log = playbook_run
    # the guest kernel was booted with intel_iommu=on iommu=pt (testbed default)
    assert results["apply"]["reboot_required"] is False
    assert results["extra"]["reboot_required"] is True
    [backup] = results["extra"]["backup_files"]
    assert backup.startswith("/etc/default/grub.")
