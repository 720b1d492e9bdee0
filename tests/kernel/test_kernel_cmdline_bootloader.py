# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kernel_cmdline on a guest that boots through OVMF and systemd-boot (tests/kernel/bootloader_bed.py):
the module edits the loader entry on the ESP, the guest is rebooted, and the kernel that systemd-boot
starts has the arguments in ``/proc/cmdline``, next to the root device and every earlier argument; then
they are removed and the next boot is without them.

The module runs as Ansible runs a module (its file with an arguments file), with ``bootloader: auto``:
the boot path is detected from the guest's real EFI variables (``LoaderInfo`` set by systemd-boot) and
its mounted ESP.
"""

from __future__ import annotations

import json
import sys
import time

import pytest

from bootloader_bed import ENTRY, ROOT_ARG, BootloaderGuest
from testbed import COLLECTION_LINK, require

ARGS = ["vfio-pci.ids=8086:10d3", "rd.driver.pre=vfio-pci"]
ESP_ENTRY = "/boot/efi/loader/entries/" + ENTRY
TIMINGS = {}


@pytest.fixture(scope="module")
def bed():
    require(BootloaderGuest, "bootloader test bed")
    guest = BootloaderGuest()
    TIMINGS["boot"] = guest.start()
    try:
        yield guest
    finally:
        guest.stop()
        print("\nbootloader bed: %s" % ", ".join("%s %.1f s" % item for item in TIMINGS.items()))


def module(guest, name, **params):
    """Run kernel_cmdline in the guest with ``params``; its JSON result (and rc)."""
    args = guest.put(name + ".json", json.dumps({"ANSIBLE_MODULE_ARGS": params}))
    result = guest.run("\n".join(list(COLLECTION_LINK) + [
        "PYTHONPATH=/tmp/ac %s -m ansible_collections.virtdev.libvirt.plugins.modules.kernel_cmdline %s"
        % (sys.executable, args), "rc=$?", "sync", "exit $rc"]), timeout=300)
    data = json.loads(result.output[result.output.index("{"):])
    return result.rc, data


def proc_cmdline(guest):
    result = guest.run("cat /proc/cmdline")
    assert result.rc == 0, result.output
    return result.output.split()


def subsequence(short, long):
    iterator = iter(long)
    return all(token in iterator for token in short)


@pytest.fixture(scope="module")
def added(bed):
    before = proc_cmdline(bed)
    check_rc, check = module(bed, "check", args=ARGS, _ansible_check_mode=True, _ansible_diff=True)
    started = time.monotonic()
    rc, apply = module(bed, "apply", args=ARGS)
    TIMINGS["module run"] = time.monotonic() - started
    TIMINGS["reboot"] = bed.reboot()
    after = proc_cmdline(bed)
    again_rc, again = module(bed, "again", args=ARGS)
    return dict(before=before, check=(check_rc, check), apply=(rc, apply), after=after, again=(again_rc, again))


def test_the_module_finds_systemd_boot_and_edits_the_entry(added):
    rc, apply = added["apply"]
    check_rc, check = added["check"]
    assert rc == 0 and check_rc == 0, (apply, check)
    assert apply["bootloader"] == check["bootloader"] == "systemd-boot"  # from LoaderInfo, not from files
    assert apply["changed"] is True and apply["reboot_required"] is True
    assert ESP_ENTRY in apply["files"] and check["files"] == apply["files"]
    assert ESP_ENTRY in apply["next_boot"]
    assert [d["before_header"] for d in check["diff"]] == apply["files"]


def test_the_next_boot_has_the_arguments_and_keeps_the_rest(added):
    before, after = added["before"], added["after"]
    assert ROOT_ARG in before and not any(arg in before for arg in ARGS)
    for arg in ARGS:
        assert after.count(arg) == 1, after
    # root= and every earlier argument kept, in order; the new ones follow them
    assert subsequence(before, after), (before, after)
    assert after[-len(ARGS):] == ARGS


def test_after_the_reboot_nothing_is_left_to_do(added):
    rc, again = added["again"]
    assert rc == 0, again
    assert again["changed"] is False and again["reboot_required"] is False and again["files"] == []


def test_removed_arguments_are_gone_at_the_next_boot(bed, added):
    rc, removed = module(bed, "remove", args=["rd.driver.pre=vfio-pci"], state="absent")
    assert rc == 0, removed
    assert removed["changed"] is True and ESP_ENTRY in removed["files"]
    assert "rd.driver.pre=vfio-pci" not in bed.run("cat %s" % ESP_ENTRY).output
    TIMINGS["second reboot"] = bed.reboot()
    after = proc_cmdline(bed)
    assert "rd.driver.pre=vfio-pci" not in after
    assert subsequence(added["before"] + ["vfio-pci.ids=8086:10d3"], after), after
    assert "rd.driver.pre=vfio-pci" not in bed.esp_file("/loader/entries/" + ENTRY)
