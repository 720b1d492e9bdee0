# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The real-kernel test bed booted through a real bootloader: OVMF -> systemd-boot -> the loader entry.

:class:`testbed.Guest` gives the kernel its command line with QEMU's ``-kernel/-append``, so what a
module writes into boot files never reaches a kernel.  Here QEMU gets no kernel: OVMF (UEFI firmware)
starts ``EFI/BOOT/BOOTX64.EFI`` of a virtio disk holding an EFI System Partition (vfat), which is
Debian's ``systemd-bootx64.efi``; systemd-boot reads ``loader/loader.conf`` and the Boot Loader
Specification entry ``loader/entries/vdtb.conf`` and starts the kernel on the ESP with that entry's
``options`` as its command line, setting its EFI variables (``LoaderInfo``, ``LoaderEntrySelected``;
systemd's Boot Loader Interface).  The guest mounts the ESP at ``/boot/efi`` and efivarfs, so a module
run in the guest sees the host the way a systemd-boot host looks.  :meth:`BootloaderGuest.reboot`
powers QEMU off and starts it again with the same ESP image and EFI variable store: the next boot reads
what the module wrote.

The ESP image is a plain file (no partition table: OVMF reads a FAT file system on a whole disk as
removable media) built with ``mkfs.vfat -C`` and mtools, without loop mounts.

Measured here (2 cores, TCG, shared): QEMU start to READY through OVMF and systemd-boot 10-25 s.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from testbed import GUEST_MODULES, Guest, TestbedUnavailable

#: Debian packages this variant needs besides testbed.HOST_PACKAGES.
HOST_PACKAGES = ("ovmf", "systemd-boot-efi", "dosfstools", "mtools")

SYSTEMD_BOOT = Path("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
ESP_KIB = 65536
ENTRY = "vdtb.conf"
#: The kernel never mounts it (the initramfs's /init chroots into the 9p tree); it stands for the root
#: device every real entry carries, which a command-line edit must keep.
ROOT_ARG = "root=PARTLABEL=vdtb-root"


class BootloaderGuest(Guest):
    """A :class:`testbed.Guest` started by OVMF and systemd-boot from an ESP image it builds."""

    __test__ = False

    MODULES = GUEST_MODULES + ("virtio_blk", "vfat", "nls_cp437", "nls_ascii", "nls_utf8", "efivarfs")

    @staticmethod
    def check_available():
        found = Guest.check_available()
        for path, package in ((SYSTEMD_BOOT, "systemd-boot-efi"), (OVMF_CODE, "ovmf"), (OVMF_VARS, "ovmf")):
            if not path.is_file():
                raise TestbedUnavailable("%s not found (Debian package %s)" % (path, package))
        for program, package in (("mkfs.vfat", "dosfstools"), ("mcopy", "mtools"), ("mmd", "mtools")):
            if not shutil.which(program) and not Path("/usr/sbin", program).exists():
                raise TestbedUnavailable("%s not found (Debian package %s)" % (program, package))
        return found

    @property
    def esp(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "esp.img"

    def entry_options(self) -> str:
        return " ".join([ROOT_ARG, "console=ttyS0", "panic=-1", "rdinit=/init"] + list(self.append))

    def prepare(self, version, vmlinuz, busybox) -> None:
        super().prepare(version, vmlinuz, busybox)
        work = self.workdir
        mkfs = shutil.which("mkfs.vfat") or "/usr/sbin/mkfs.vfat"
        subprocess.run([mkfs, "-F", "32", "-n", "VDTB-ESP", "-C", str(self.esp), str(ESP_KIB)],
                       check=True, capture_output=True)
        (work / "loader.conf").write_text("default %s\ntimeout 0\neditor no\n" % ENTRY)
        (work / ENTRY).write_text("title vdtb\nlinux /vmlinuz\ninitrd /initrd.gz\noptions %s\n" % self.entry_options())
        image = "-i", str(self.esp)
        subprocess.run(["mmd", *image, "::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries"],
                       check=True, capture_output=True)
        for source, target in ((SYSTEMD_BOOT, "::/EFI/BOOT/BOOTX64.EFI"), (vmlinuz, "::/vmlinuz"),
                               (work / "initrd.gz", "::/initrd.gz"), (work / "loader.conf", "::/loader/loader.conf"),
                               (work / ENTRY, "::/loader/entries/" + ENTRY)):
            subprocess.run(["mcopy", *image, str(source), target], check=True, capture_output=True)
        shutil.copyfile(OVMF_VARS, work / "efivars.fd")

    def esp_file(self, path: str) -> str:
        """A file's text on the ESP image, read from this host with mtools (the guest must be off or
        have synced)."""
        proc = subprocess.run(["mtype", "-i", str(self.esp), "::" + path], check=True, capture_output=True, text=True)
        return proc.stdout

    def qemu_command(self, qemu, vmlinuz, initrd, xfer):
        command = super().qemu_command(qemu, vmlinuz, initrd, xfer)
        kernel = command.index("-kernel")
        del command[kernel:kernel + 6]  # -kernel K -initrd I -append A: the loader decides
        command[1:1] = [
            "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=%s" % OVMF_CODE,
            "-drive", "if=pflash,format=raw,unit=1,file=%s" % (self.workdir / "efivars.fd"),
            "-drive", "if=none,id=esp,format=raw,file=%s" % self.esp,
            "-device", "virtio-blk-pci,drive=esp,bus=pcie.0,addr=0x7,bootindex=0",
        ]
        return command

    def reboot(self) -> float:
        """Power off and boot again from the same ESP and EFI variables; the seconds to READY."""
        keep, self.keep = self.keep, True
        try:
            self.stop()
        finally:
            self.keep = keep
        return self.start()
