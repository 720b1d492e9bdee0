# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The test bed itself, asserted from the guest kernel's own view.

Every fact here is read inside the guest (its /sys and /dev), never from this host.
"""

from __future__ import annotations

import re

from testbed import Guest

LONE = Guest.LONE_NIC
BRIDGED = Guest.BRIDGED_NICS


def _group_of(guest, address: str) -> str:
    out = guest.sh("basename \"$(readlink -f /sys/bus/pci/devices/%s/iommu_group)\"" % address).output
    group = out.strip()
    assert group.isdigit(), "no IOMMU group for %s: %r" % (address, out)
    return group


def _group_members(guest, group: str) -> list[str]:
    return sorted(guest.sh("ls /sys/kernel/iommu_groups/%s/devices" % group).output.split())


def _driver(guest, address: str) -> str:
    out = guest.run(
        "l=/sys/bus/pci/devices/%s/driver; if [ -e $l ]; then basename \"$(readlink -f $l)\"; "
        "else echo '<none>'; fi" % address
    ).output
    return out.strip()


def test_runs_host_python_in_guest_kernel(guest):
    # The guest kernel is the Debian one we booted, not this host's, and the
    # chroot gives us this host's Python and this checkout.
    out = guest.sh("uname -r; cat /proc/cmdline; python3 -c 'import sys; print(sys.version_info[:2])'; "
                   "test -f galaxy.yml && echo checkout-ok").output.splitlines()
    assert re.match(r"^\d+\.\d+", out[0])
    assert "intel_iommu=on" in out[1].split()
    assert out[2].startswith("(3, ")
    assert out[3] == "checkout-ok"


def test_exit_status_and_output_are_passed_back(guest):
    result = guest.run("echo to-stdout; echo to-stderr >&2; exit 7")
    assert result.rc == 7
    assert "to-stdout" in result.output and "to-stderr" in result.output


def test_iommu_groups_exist(guest):
    out = guest.sh("ls /sys/kernel/iommu_groups; echo --; ls /sys/class/iommu").output
    groups, units = out.split("--")
    assert len(groups.split()) >= 4, out
    assert units.split(), "no IOMMU unit registered in /sys/class/iommu"


def test_lone_nic_is_alone_in_its_group(guest):
    group = _group_of(guest, LONE)
    assert _group_members(guest, group) == [LONE]
    assert guest.sh("cat /sys/bus/pci/devices/%s/vendor /sys/bus/pci/devices/%s/device"
                    % (LONE, LONE)).output.split() == list(Guest.NIC_IDS)


def test_bridged_nics_share_one_group(guest):
    first, second = (_group_of(guest, address) for address in BRIDGED)
    assert first == second
    members = _group_members(guest, first)
    assert set(BRIDGED) <= set(members)
    assert _group_of(guest, LONE) != first
    # The two NICs really sit behind the bridge (its secondary bus).
    below = guest.sh("ls -d /sys/bus/pci/devices/%s/0000:*" % Guest.BRIDGE).output.split()
    assert sorted(path.rsplit("/", 1)[1] for path in below) == sorted(BRIDGED)


def test_host_critical_group_fixture(guest):
    groups = {_group_of(guest, address) for address in Guest.HOST_CRITICAL}
    assert len(groups) == 1
    classes = guest.sh("cat %s" % " ".join(
        "/sys/bus/pci/devices/%s/class" % address for address in Guest.HOST_CRITICAL)).output.split()
    # ISA bridge, SATA AHCI, SMBus
    assert [value[:6] for value in classes] == ["0x0601", "0x0106", "0x0c05"]


def test_bind_lone_nic_to_vfio_pci_and_back(guest):
    group = _group_of(guest, LONE)
    assert _driver(guest, LONE) == "e1000e"
    dev = "/sys/bus/pci/devices/" + LONE
    guest.sh(
        "set -e\n"
        "echo vfio-pci > {dev}/driver_override\n"
        "echo {addr} > {dev}/driver/unbind\n"
        "echo {addr} > /sys/bus/pci/drivers_probe\n".format(dev=dev, addr=LONE)
    )
    assert _driver(guest, LONE) == "vfio-pci"
    node = guest.sh("test -c /dev/vfio/{g} && ls -l /dev/vfio/{g}; test -c /dev/vfio/vfio && echo container-ok"
                    .format(g=group)).output
    assert "/dev/vfio/%s" % group in node and "container-ok" in node
    # The bridged NICs were not touched.
    assert [_driver(guest, address) for address in BRIDGED] == ["e1000e", "e1000e"]

    # Give the device back to its host driver.
    guest.sh(
        "set -e\n"
        "echo > {dev}/driver_override\n"
        "echo {addr} > {dev}/driver/unbind\n"
        "echo {addr} > /sys/bus/pci/drivers_probe\n".format(dev=dev, addr=LONE)
    )
    assert _driver(guest, LONE) == "e1000e"
    assert guest.run("test -e /dev/vfio/%s" % group).rc != 0


def test_bogus_driver_override_leaves_device_driverless(guest):
    # The failure mode docs/host_preparation.md warns about: drivers_probe "succeeds"
    # but nothing binds; only the driver link tells the truth.
    address = BRIDGED[1]
    dev = "/sys/bus/pci/devices/" + address
    result = guest.run(
        "echo no-such-driver > {dev}/driver_override; echo {addr} > {dev}/driver/unbind; "
        "echo {addr} > /sys/bus/pci/drivers_probe; echo probe-rc=$?".format(dev=dev, addr=address))
    assert "probe-rc=0" in result.output
    assert _driver(guest, address) == "<none>"
    guest.sh("echo > {dev}/driver_override; echo {addr} > /sys/bus/pci/drivers_probe".format(dev=dev, addr=address))
    assert _driver(guest, address) == "e1000e"
