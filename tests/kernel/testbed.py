# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Real-kernel test bed: Debian's kernel under QEMU TCG with an emulated Intel IOMMU.

The guest boots a busybox initramfs built here (carrying the module closures of
vfio, vfio-pci, vfio_iommu_type1, e1000e, 9p/virtio and overlay), mounts this
host's ``/`` read-only over 9p with a tmpfs overlay on top, mounts its *own*
proc/sys/dev over the host's mount points and runs commands in a chroot of that
tree, so this host's Python and this checkout are usable inside.  The guest's
``/sys`` is the guest kernel's: nothing here writes to the host's ``/sys``.

PCI topology (fixed addresses, see the class constants of :class:`Guest`)::

    00:00.0  q35 host bridge
    00:03.0  e1000e                     alone in its IOMMU group
    00:04.0  pci-bridge (conventional)  -> bus 01
      01:01.0  e1000e                   shares one group with 01:02.0 (and the bridge)
      01:02.0  e1000e
    00:05.0  virtio-9p  (host root, read-only)
    00:06.0  virtio-9p  (transfer directory)
    00:1f.0/2/3  ICH9 LPC/ISA bridge, AHCI, SMBus: one group, the host-critical fixture

Commands are sent over the serial console as ``RUN <n>``; the script itself and
its output travel through a private transfer directory shared over 9p, and the
guest prints ``@@vdtb-<token> DONE <n> <rc>`` when it is done.  ``poweroff -f``
always exits 0, so results are only ever taken from those markers.

Only one guest runs at a time on this host (a file lock serialises them): two
TCG guests on two cores starve each other.

Measured on the 2-core machines here: boot to the READY marker 6-8 s, a shell command 0.05-0.3 s,
the first Python start through pyenv ~4.5 s, ``ansible-playbook -c local`` with 5 tasks 50-75 s.

Command line use (``--append intel_iommu=off`` gives the no-IOMMU negative path)::

    python tests/kernel/testbed.py -- sh -c 'ls /sys/kernel/iommu_groups'
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import gzip
import io
import lzma
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Shell lines that make this checkout importable as ansible_collections.virtdev.libvirt in the guest.
COLLECTION_LINK = (
    "mkdir -p /tmp/ac/ansible_collections/virtdev",
    "ln -sfn %s /tmp/ac/ansible_collections/virtdev/libvirt" % REPO_ROOT,
)
#: Where ansible-playbook of the interpreter running the tests lives (it runs in the guest's chroot too).
ANSIBLE_PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")


def ansible_playbook_lines(playbook: str, *env: str) -> list[str]:
    """Shell lines that run ``playbook`` with ``-c local`` in the guest against this checkout's collection;
    ``env`` adds ``NAME=value`` settings."""
    settings = ["ANSIBLE_COLLECTIONS_PATH=/tmp/ac", "ANSIBLE_LOCAL_TEMP=/tmp/ansible-local",
                "ANSIBLE_REMOTE_TEMP=/tmp/ansible-remote", "ANSIBLE_NOCOLOR=1",
                "ANSIBLE_PYTHON_INTERPRETER=%s" % sys.executable] + list(env)
    return list(COLLECTION_LINK) + ["export " + " ".join(settings),
                                    "%s -c local -i localhost, %s" % (ANSIBLE_PLAYBOOK, playbook)]


#: Modules loaded in the guest, in this order (with their dependency closures).
GUEST_MODULES = (
    "virtio_pci",
    "9pnet_virtio",
    "9p",
    "overlay",
    "e1000e",
    "vfio",
    "vfio_iommu_type1",
    "vfio_pci",
)

#: Debian packages the test bed needs on the host.
HOST_PACKAGES = ("qemu-system-x86", "linux-image-amd64", "busybox-static", "kmod")

LOCK_PATH = Path(tempfile.gettempdir()) / "virtdev-testbed.lock"
#: This process's hold on LOCK_PATH, shared by its guests: a test that boots its own guest (the
#: bootloader variant) while the session's guest is up would otherwise wait for itself.
_HELD: dict = {"file": None, "count": 0}


class TestbedUnavailable(RuntimeError):
    """A prerequisite (QEMU, a kernel, busybox) is missing on this host."""

    __test__ = False  # not a pytest test class


def require(guest_class=None, what="real-kernel test bed"):
    """In a test: skip it when ``guest_class`` (default :class:`Guest`) cannot run here, or fail it when
    ``VIRTDEV_TESTBED_REQUIRED`` is set (CI sets it, so a missing prerequisite is never a silent skip)."""
    # imported here: this file is also a command, run without pytest
    import pytest  # pylint: disable=import-outside-toplevel

    try:
        (guest_class or Guest).check_available()
    except TestbedUnavailable as exc:
        if os.environ.get("VIRTDEV_TESTBED_REQUIRED", "") not in ("", "0", "false", "no"):
            pytest.fail("%s required but unavailable: %s" % (what, exc))
        pytest.skip("%s unavailable: %s" % (what, exc))


class TestbedError(RuntimeError):
    """The guest failed to boot, died or timed out."""

    __test__ = False


@dataclasses.dataclass
class Result:
    """Outcome of one command run inside the guest."""

    command: str
    rc: int
    output: str
    seconds: float

    __test__ = False

    def check(self) -> Result:
        if self.rc != 0:
            raise TestbedError(
                "guest command failed (rc=%d): %s\n%s" % (self.rc, self.command, self.output)
            )
        return self


# --------------------------------------------------------------------------- discovery


def find_qemu() -> str:
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise TestbedUnavailable("qemu-system-x86_64 not found (Debian package qemu-system-x86)")
    return qemu


def find_busybox() -> str:
    for candidate in (os.environ.get("TESTBED_BUSYBOX"), "/bin/busybox", "/usr/bin/busybox"):
        if not candidate or not os.path.isfile(candidate):
            continue
        with open(candidate, "rb") as handle:
            head = handle.read(4096 * 4)
        # A static binary has no PT_INTERP / dynamic loader path.
        if b"ld-linux" not in head:
            return candidate
    raise TestbedUnavailable("a static busybox was not found (Debian package busybox-static)")


def _version_key(version: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", version)]


def find_kernel() -> tuple[str, Path]:
    """Return (version, vmlinuz path) of the newest kernel with modules installed.

    ``TESTBED_KERNEL`` may name a vmlinuz file explicitly.
    """
    explicit = os.environ.get("TESTBED_KERNEL")
    candidates = [Path(explicit)] if explicit else sorted(Path("/boot").glob("vmlinuz-*"))
    found = []
    for path in candidates:
        version = path.name[len("vmlinuz-"):]
        if path.is_file() and (Path("/lib/modules") / version / "modules.dep").is_file():
            found.append((version, path))
    if not found:
        raise TestbedUnavailable(
            "no kernel with modules found under /boot and /lib/modules (Debian package linux-image-amd64)"
        )
    return max(found, key=lambda item: _version_key(item[0]))


def module_closure(kernel_version: str, modules=GUEST_MODULES) -> list[Path]:
    """Module files to insmod, in load order, from ``modprobe --show-depends``."""
    modprobe = shutil.which("modprobe") or "/sbin/modprobe"
    if not os.path.exists(modprobe):
        raise TestbedUnavailable("modprobe not found (Debian package kmod)")
    ordered: list[Path] = []
    for name in modules:
        proc = subprocess.run(
            [modprobe, "-S", kernel_version, "--show-depends", name],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise TestbedUnavailable(
                "modprobe --show-depends %s failed for kernel %s: %s" % (name, kernel_version, proc.stderr.strip())
            )
        for line in proc.stdout.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "insmod":
                path = Path(words[1])
                if path not in ordered:
                    ordered.append(path)
            # "builtin NAME" lines need nothing
    return ordered


# --------------------------------------------------------------------------- initramfs


class _Cpio:
    """Minimal writer of the ``newc`` cpio format the kernel unpacks."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0,
        )
        self.ino += 1
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self.buf.write(header + encoded)
        self.buf.write(b"\0" * (-(len(header) + len(encoded)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def directory(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
M='@@vdtb-__TOKEN__'
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "$M STAGE userspace"
while read -r mod; do
    insmod "/lib/modules/$mod" || echo "$M WARN insmod $mod failed"
done < /modules.list
fail() { echo "$M FAIL $*"; poweroff -f; }
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /hostro \
    || fail "mount 9p hostroot"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 xfer /xfer || fail "mount 9p xfer"
mount -t tmpfs -o mode=0755 tmpfs /rw
mkdir -p /rw/upper /rw/work
if ! mount -t overlay overlay -o lowerdir=/hostro,upperdir=/rw/upper,workdir=/rw/work /newroot; then
    echo "$M WARN overlay failed, falling back to tmpfs mounts"
    mount --bind /hostro /newroot
    for d in tmp root run var/tmp var/lib var/cache; do mount -t tmpfs tmpfs "/newroot/$d"; done
fi
# The guest's own proc/sys/dev hide the host's mount points before anything runs.
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -t devtmpfs devtmpfs /newroot/dev
mkdir -p /newroot/dev/shm /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mkdir -p /newroot/run/testbed
mount --bind /xfer /newroot/run/testbed
# The checkout may live below a directory the guest gets fresh (/tmp, /run): share it explicitly, with
# a tmpfs overlay like / so the guest can write there without touching the host's files.
R=__CHECKOUT__
case "$R" in
/tmp/* | /run/*)
    mkdir -p "/newroot$R" /rw/checkout-upper /rw/checkout-work
    mount -t overlay overlay -o "lowerdir=/hostro$R,upperdir=/rw/checkout-upper,workdir=/rw/checkout-work" \
        "/newroot$R" || mount --bind "/hostro$R" "/newroot$R" || fail "share the checkout $R"
    ;;
esac
# Booted through UEFI with a disk (tests/kernel/bootloader_bed.py): EFI variables and the ESP where a
# host has them, so the tree's boot files are the ones the firmware and the loader read.
if [ -d /sys/firmware/efi/efivars ]; then
    mount -t efivarfs efivarfs /newroot/sys/firmware/efi/efivars || echo "$M WARN efivarfs"
fi
if [ -b /dev/vda ]; then
    mkdir -p /newroot/boot/efi
    mount -t vfat /dev/vda /newroot/boot/efi || fail "mount the ESP /dev/vda"
fi
echo 1 > /proc/sys/kernel/printk
stty -echo 2>/dev/null
echo "$M READY"
while read -r verb num; do
    case "$verb" in
    RUN)
        env -i /bin/chroot /newroot /bin/sh "/run/testbed/cmd-$num.sh" \
            > "/xfer/out-$num" 2>&1 < /dev/null
        rc=$?
        sync
        echo "$M DONE $num $rc"
        ;;
    POWEROFF)
        break
        ;;
    esac
done
echo "$M POWEROFF"
sync
if [ -b /dev/vda ]; then umount /newroot/boot/efi || echo "$M WARN umount ESP"; fi
poweroff -f
"""


def build_initramfs(dest: Path, kernel_version: str, token: str, busybox: str | None = None,
                    modules=GUEST_MODULES) -> Path:
    """Write a gzip'ed newc initramfs to ``dest`` and return it."""
    busybox = busybox or find_busybox()
    archive = _Cpio()
    for directory in (".", "bin", "dev", "proc", "sys", "lib", "lib/modules", "hostro", "rw",
                      "newroot", "xfer", "tmp"):
        archive.directory(directory)
    archive.chardev("dev/console", 5, 1)
    archive.chardev("dev/null", 1, 3)
    archive.file("bin/busybox", Path(busybox).read_bytes(), 0o755)
    archive.file("init", _INIT.replace("__TOKEN__", token).replace("__CHECKOUT__", shlex.quote(str(REPO_ROOT))).encode(),
                 0o755)
    names = []
    for path in module_closure(kernel_version, modules):
        data = path.read_bytes()
        name = path.name
        if name.endswith(".xz"):
            data, name = lzma.decompress(data), name[:-3]
        elif name.endswith(".gz"):
            data, name = gzip.decompress(data), name[:-3]
        elif not name.endswith(".ko"):
            raise TestbedUnavailable("cannot unpack kernel module %s" % path)
        archive.file("lib/modules/" + name, data)
        names.append(name)
    archive.file("modules.list", ("\n".join(names) + "\n").encode())
    dest.write_bytes(gzip.compress(archive.finish(), compresslevel=1))
    return dest


# --------------------------------------------------------------------------- guest


class Guest:
    """One QEMU guest; ``start()`` boots it, ``run()`` runs commands in it."""

    __test__ = False

    LONE_NIC = "0000:00:03.0"
    BRIDGE = "0000:00:04.0"
    BRIDGED_NICS = ("0000:01:01.0", "0000:01:02.0")
    HOST_CRITICAL = ("0000:00:1f.0", "0000:00:1f.2", "0000:00:1f.3")
    NIC_IDS = ("0x8086", "0x10d3")  # e1000e vendor / device
    MODULES = GUEST_MODULES  # loaded by the initramfs

    def __init__(
        self,
        *,
        smp: int = 2,
        memory_mb: int = 1024,
        append: tuple[str, ...] = ("intel_iommu=on", "iommu=pt"),
        boot_timeout: float = 300.0,
        lock_timeout: float = 1800.0,
        cwd: str | os.PathLike = REPO_ROOT,
        env: dict[str, str] | None = None,
        keep: bool = False,
        extra_devices: tuple[str, ...] = (),
    ) -> None:
        # more QEMU arguments for the emulated machine (a test's own devices; none by default)
        self.extra_devices = tuple(extra_devices)
        self.smp = smp
        self.memory_mb = memory_mb
        self.append = tuple(append)
        self.boot_timeout = boot_timeout
        self.lock_timeout = lock_timeout
        self.cwd = str(cwd)
        self.env = self._default_env()
        self.env.update(env or {})
        self.keep = keep
        self.token = secrets.token_hex(6)
        self.marker = "@@vdtb-" + self.token
        self.boot_seconds: float | None = None
        self.workdir: Path | None = None
        self._proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._serial = bytearray()
        self._cond = threading.Condition()
        self._lock_file = None
        self._count = 0
        self._log = None

    # -- environment -------------------------------------------------------

    @staticmethod
    def _default_env() -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
            "HOME": "/root",
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "TERM": "dumb",
        }
        for key, value in os.environ.items():
            if key.startswith("PYENV") or key in ("VIRTUAL_ENV", "PYTHONPATH"):
                env[key] = value
        return env

    @staticmethod
    def check_available() -> tuple[str, str, Path, str]:
        """Raise :class:`TestbedUnavailable` unless everything needed is installed."""
        qemu = find_qemu()
        version, vmlinuz = find_kernel()
        if not (shutil.which("modprobe") or os.path.exists("/sbin/modprobe")):
            raise TestbedUnavailable("modprobe not found (Debian package kmod)")
        return qemu, version, vmlinuz, find_busybox()

    # -- lifecycle ---------------------------------------------------------

    def qemu_command(self, qemu: str, vmlinuz: Path, initrd: Path, xfer: Path) -> list[str]:
        append = ["console=ttyS0", "panic=-1", "rdinit=/init"] + list(self.append)
        cmd = [
            qemu, "-nodefaults", "-no-user-config", "-no-reboot",
            "-accel", "tcg,tb-size=256",
            "-machine", "q35,kernel-irqchip=split",
            "-cpu", "max", "-smp", str(self.smp), "-m", str(self.memory_mb),
            "-device", "intel-iommu,intremap=on,caching-mode=on",
            "-display", "none", "-monitor", "none", "-serial", "stdio",
            "-kernel", str(vmlinuz), "-initrd", str(initrd), "-append", " ".join(append),
            "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot,bus=pcie.0,addr=0x5",
            "-fsdev", "local,id=xfer,path=%s,security_model=none" % xfer,
            "-device", "virtio-9p-pci,fsdev=xfer,mount_tag=xfer,bus=pcie.0,addr=0x6",
            # The lone NIC: a root-complex integrated endpoint, alone in its group.
            "-netdev", "user,id=lone,restrict=on",
            "-device", "e1000e,netdev=lone,bus=pcie.0,addr=0x3,mac=52:54:00:76:00:03",
            # Two NICs behind a conventional PCI bridge: DMA aliases to the bridge, one group.
            "-device", "pci-bridge,id=br1,chassis_nr=1,shpc=off,bus=pcie.0,addr=0x4",
            "-netdev", "user,id=shared0,restrict=on",
            "-device", "e1000e,netdev=shared0,bus=br1,addr=0x1,mac=52:54:00:76:01:01",
            "-netdev", "user,id=shared1,restrict=on",
            "-device", "e1000e,netdev=shared1,bus=br1,addr=0x2,mac=52:54:00:76:01:02",
        ] + list(self.extra_devices)
        return cmd

    def _acquire_lock(self) -> None:
        if _HELD["count"]:
            _HELD["count"] += 1
            self._lock_file = _HELD["file"]
            return
        self._lock_file = open(LOCK_PATH, "a+")  # pylint: disable=consider-using-with
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                _HELD.update(file=self._lock_file, count=1)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    self._lock_file.close()
                    self._lock_file = None
                    raise TestbedError("another test bed guest held %s for too long" % LOCK_PATH) from None
                time.sleep(1)

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file = None
            _HELD["count"] -= 1
            if not _HELD["count"]:
                fcntl.flock(_HELD["file"], fcntl.LOCK_UN)
                _HELD["file"].close()
                _HELD["file"] = None

    def prepare(self, version: str, vmlinuz: Path, busybox: str) -> None:
        """Build what QEMU boots in the fresh ``self.workdir`` (a variant adds its disks)."""
        build_initramfs(self.workdir / "initrd.gz", version, self.token, busybox, self.MODULES)

    def start(self) -> float:
        """Boot the guest; return the seconds from QEMU start to the READY marker.

        A guest stopped with ``keep`` starts again from the same work directory (its disks kept)."""
        qemu, version, vmlinuz, busybox = self.check_available()
        self._acquire_lock()
        try:
            xfer = None if self.workdir is None else self.workdir / "xfer"
            if xfer is None:
                self.workdir = Path(tempfile.mkdtemp(prefix="virtdev-testbed-"))
                xfer = self.workdir / "xfer"
                xfer.mkdir()
                self.prepare(version, vmlinuz, busybox)
            initrd = self.workdir / "initrd.gz"
            self._log = open(self.workdir / "serial.log", "ab")  # pylint: disable=consider-using-with
            with self._cond:
                offset = len(self._serial)
            started = time.monotonic()
            self._proc = subprocess.Popen(  # pylint: disable=consider-using-with
                self.qemu_command(qemu, vmlinuz, initrd, xfer),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            )
            self._reader = threading.Thread(target=self._read_serial, args=(self._proc.stdout,), daemon=True)
            self._reader.start()
            match = self._wait_for(r"%s (READY|FAIL [^\r\n]*)" % re.escape(self.marker), offset, self.boot_timeout)
            if match.group(1) != "READY":
                raise TestbedError("guest setup failed: %s\n%s" % (match.group(1), self.serial_tail()))
            self.boot_seconds = time.monotonic() - started
            return self.boot_seconds
        except BaseException:
            self.stop()
            raise

    def _read_serial(self, stream) -> None:
        while True:
            chunk = stream.read1(65536)
            with self._cond:
                if chunk:
                    self._serial.extend(chunk)
                    if self._log is not None:
                        self._log.write(chunk)
                        self._log.flush()
                else:
                    self._cond.notify_all()
                    return
                self._cond.notify_all()

    def _wait_for(self, pattern: str, offset: int, timeout: float) -> _DecodedMatch:
        regex = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                match = regex.search(bytes(self._serial), offset)
                if match:
                    return _DecodedMatch(match)
                if self._proc is None or (self._proc.poll() is not None and not self._reader_alive()):
                    raise TestbedError("QEMU exited (rc=%s) before %r appeared\n%s" % (
                        None if self._proc is None else self._proc.returncode, pattern, self.serial_tail()))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TestbedError("timed out after %.0f s waiting for %r\n%s" % (timeout, pattern, self.serial_tail()))
                self._cond.wait(min(remaining, 1.0))

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def serial_text(self) -> str:
        with self._cond:
            return bytes(self._serial).decode("utf-8", "replace")

    def serial_tail(self, lines: int = 60) -> str:
        return "\n".join(self.serial_text().replace("\r", "").splitlines()[-lines:])

    def run(self, command: str | list[str] | tuple[str, ...], timeout: float = 600.0, cwd: str | None = None,
            env: dict[str, str] | None = None) -> Result:
        """Run ``command`` (a shell string or an argv list) in the guest's chroot."""
        if self._proc is None or self._proc.poll() is not None or self.workdir is None:
            raise TestbedError("the guest is not running")
        if not isinstance(command, str):
            command = shlex.join(command)
        self._count += 1
        num = self._count
        merged = dict(self.env)
        merged.update(env or {})
        lines = ["export %s=%s" % (key, shlex.quote(value)) for key, value in sorted(merged.items())]
        lines.append("cd %s || exit 125" % shlex.quote(cwd or self.cwd))
        lines.append(command)
        script = self.workdir / "xfer" / ("cmd-%d.sh" % num)
        script.write_text("\n".join(lines) + "\n")
        with self._cond:
            offset = len(self._serial)
        started = time.monotonic()
        assert self._proc.stdin is not None
        self._proc.stdin.write(b"RUN %d\n" % num)
        self._proc.stdin.flush()
        try:
            match = self._wait_for(r"%s DONE %d (\d+)" % (re.escape(self.marker), num), offset, timeout)
        except TestbedError:
            self.stop()
            raise
        seconds = time.monotonic() - started
        output_path = self.workdir / "xfer" / ("out-%d" % num)
        output = output_path.read_text(errors="replace") if output_path.exists() else ""
        return Result(command=command, rc=int(match.group(1)), output=output, seconds=seconds)

    def put(self, name: str, text: str) -> str:
        """Make a file visible in the guest (through the transfer directory); return its guest path."""
        if self.workdir is None or "/" in name:
            raise TestbedError("cannot put %r: the guest is not running or the name has a slash" % name)
        (self.workdir / "xfer" / name).write_text(text)
        return "/run/testbed/" + name

    def get(self, name: str) -> str | None:
        """Read a file the guest wrote to /run/testbed/NAME, or None."""
        path = None if self.workdir is None else self.workdir / "xfer" / name
        return path.read_text() if path is not None and path.exists() else None

    def stop(self, timeout: float = 60.0) -> None:
        """Power the guest off (kill it if it does not go) and clean up."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                try:
                    assert proc.stdin is not None
                    proc.stdin.write(b"POWEROFF\n")
                    proc.stdin.flush()
                except (BrokenPipeError, OSError):
                    pass
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        if self._reader is not None:
            self._reader.join(10)
            self._reader = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.workdir is not None and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        self._release_lock()

    def __enter__(self) -> Guest:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class _DecodedMatch:
    """A bytes regex match whose groups read as str."""

    def __init__(self, match: re.Match) -> None:
        self._match = match

    def group(self, index: int = 0) -> str:
        return self._match.group(index).decode("utf-8", "replace")


def run_once(command: str | list[str], **kwargs) -> tuple[Result, float]:
    """Boot a guest, run one command, power off; return (result, boot seconds)."""
    timeout = kwargs.pop("timeout", 600.0)
    with Guest(**kwargs) as guest:
        return guest.run(command, timeout=timeout), guest.boot_seconds or 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--smp", type=int, default=2)
    parser.add_argument("--memory", type=int, default=1024, help="MiB")
    parser.add_argument("--append", action="append", default=None,
                        help="kernel argument (repeatable; default: intel_iommu=on iommu=pt)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (serial.log)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command to run in the guest")
    guest = Guest(smp=args.smp, memory_mb=args.memory, keep=args.keep,
                  append=tuple(args.append) if args.append is not None else ("intel_iommu=on", "iommu=pt"))
    try:
        boot = guest.start()
    except TestbedUnavailable as exc:
        print("test bed unavailable: %s" % exc, file=sys.stderr)
        return 77
    try:
        result = guest.run(command if len(command) > 1 else command[0], timeout=args.timeout)
    finally:
        workdir = guest.workdir
        guest.stop()
    sys.stdout.write(result.output)
    print("[testbed] boot %.1f s, command %.1f s, rc %d%s" % (
        boot, result.seconds, result.rc, (", work dir %s" % workdir) if args.keep else ""), file=sys.stderr)
    return result.rc


if __name__ == "__main__":
    sys.exit(main())
