# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Session fixture for the real-kernel test bed (one guest boot per session).

The guest is skipped with its reason when QEMU, a kernel or busybox is missing,
unless ``VIRTDEV_TESTBED_REQUIRED=1`` (set it in CI), which turns that into a failure.
Boot and per-command timings are printed in the terminal summary.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import testbed  # noqa: E402  pylint: disable=wrong-import-position

_TIMINGS: list[tuple[str, float, int]] = []


class TimedGuest:
    """Wraps :class:`testbed.Guest` so every command's time is recorded."""

    def __init__(self, guest: testbed.Guest) -> None:
        self.guest = guest

    def __getattr__(self, name):
        return getattr(self.guest, name)

    def run(self, command, **kwargs) -> testbed.Result:
        result = self.guest.run(command, **kwargs)
        label = command if isinstance(command, str) else " ".join(command)
        _TIMINGS.append((label.strip().splitlines()[0][:70], result.seconds, result.rc))
        return result

    def sh(self, script: str, **kwargs) -> testbed.Result:
        """Run a shell script; fail the test with its output unless it exits 0."""
        result = self.run(script, **kwargs)
        assert result.rc == 0, "guest script failed (rc=%d):\n%s\n--- output ---\n%s" % (
            result.rc, script, result.output)
        return result


@pytest.fixture(scope="session")
def guest():
    testbed.require()
    bed = testbed.Guest()
    boot = bed.start()
    _TIMINGS.append(("<boot to READY>", boot, 0))
    try:
        yield TimedGuest(bed)
    finally:
        bed.stop()


def pytest_terminal_summary(terminalreporter):
    if not _TIMINGS:
        return
    terminalreporter.section("real-kernel test bed timings")
    for label, seconds, rc in _TIMINGS:
        terminalreporter.write_line("%7.2f s  rc=%-3d %s" % (seconds, rc, label))
