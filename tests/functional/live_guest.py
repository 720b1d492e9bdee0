# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A real Linux guest for hotplug tests: Debian's kernel and a tiny busybox initramfs, under TCG.

The guest does nothing but run: its kernel answers PCI hot-plug (ACPI on pc, pciehp on q35), and a
background job powers it off when the ACPI power button is pressed, so graceful shutdown works too.
It reports on its serial console, which libvirt writes to a file.

Uncooperative guests are made with kernel arguments (``domain_xml(..., cmdline=...)``):
``acpiphp.disable=1`` makes the kernel ignore ACPI hot-plug, so it never releases a device (as a guest
that vetoes an unplug); ``virtdev_power=ignore`` ignores the power button; ``virtdev_power=slow:N``
powers off N seconds after it.
"""

from __future__ import annotations

import gzip
import lzma
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'kernel'))

import testbed  # noqa: E402  pylint: disable=wrong-import-position

READY = 'VIRTDEV-GUEST-READY'
POWEROFF = 'VIRTDEV-GUEST-POWEROFF'
BUTTON = 'VIRTDEV-GUEST-BUTTON'

INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r mod; do insmod "/lib/modules/$mod"; done < /modules.list
sleep 1
for event in /sys/class/input/event*; do
    grep -q "Power Button" "$event/device/name" 2>/dev/null && button="/dev/input/${event##*/}"
done
power=now
for arg in $(cat /proc/cmdline); do
    case "$arg" in virtdev_power=*) power="${arg#virtdev_power=}" ;; esac
done
if [ -n "$button" ] && [ "$power" != ignore ]; then
    ( head -c 1 "$button" > /dev/null; echo __BUTTON__
      case "$power" in slow:*) sleep "${power#slow:}" ;; esac
      echo __POWEROFF__; poweroff -f ) &
fi
echo __READY__
while true; do sleep 3600; done
"""


def build_boot_files(directory):
    """(kernel path, initramfs path) for the guest; raises testbed.TestbedUnavailable when missing."""
    version, vmlinuz = testbed.find_kernel()
    archive = testbed._Cpio()  # pylint: disable=protected-access
    for name in ('.', 'bin', 'dev', 'proc', 'sys', 'lib', 'lib/modules'):
        archive.directory(name)
    archive.chardev('dev/console', 5, 1)
    archive.file('bin/busybox', Path(testbed.find_busybox()).read_bytes(), 0o755)
    init = INIT.replace('__READY__', READY).replace('__POWEROFF__', POWEROFF).replace('__BUTTON__', BUTTON)
    archive.file('init', init.encode(), 0o755)
    names = []
    for path in testbed.module_closure(version, modules=('button', 'evdev')):
        data, name = path.read_bytes(), path.name
        if name.endswith('.xz'):
            data, name = lzma.decompress(data), name[:-3]
        elif name.endswith('.gz'):
            data, name = gzip.decompress(data), name[:-3]
        archive.file('lib/modules/' + name, data)
        names.append(name)
    archive.file('modules.list', ('\n'.join(names) + '\n').encode())
    initrd = Path(directory) / 'live-guest.initrd'
    initrd.write_bytes(gzip.compress(archive.finish(), compresslevel=1))
    return str(vmlinuz), str(initrd)


def domain_xml(name, machine, kernel, initrd, console_log, root_ports=8, cmdline='', devices='', acpi=True,
               bridge=True):
    """A TCG guest booting our kernel; q35 gets root ports (and, with ``bridge``, a PCI bridge) for hotplug.
    The built-in devices take some of the ports at define time; the rest stay free for hot-plug. ``cmdline``
    is added to the kernel's arguments, ``devices`` (XML) to its devices; without ``acpi`` the guest has no
    ACPI (no PCI hot-plug on pc, no power button)."""
    controllers = ''
    if machine == 'q35':
        controllers = "<controller type='pci' index='0' model='pcie-root'/>"
        controllers += ''.join("<controller type='pci' model='pcie-root-port'/>" for _port in range(root_ports))
        if bridge:
            controllers += "<controller type='pci' model='pcie-to-pci-bridge'/>"
    features = '<acpi/><apic/>' if acpi else '<apic/>'
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='{machine}'>hvm</type>
    <kernel>{kernel}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>console=ttyS0 panic=-1 quiet {cmdline}</cmdline>
  </os>
  <features>{features}</features>
  <on_poweroff>destroy</on_poweroff>
  <on_crash>destroy</on_crash>
  <devices>
    {controllers}
    <controller type='virtio-serial' index='0'/>
    <serial type='file'><source path='{console_log}' append='on'/><target port='0'/></serial>
    <console type='file'><source path='{console_log}' append='on'/><target type='serial' port='0'/></console>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>
    <video><model type='vga'/></video>
    {devices}
  </devices>
</domain>"""


def wait_for(console_log, marker, timeout=120, count=1):
    """Wait until the guest has printed ``marker`` ``count`` times on its serial console (the log is
    appended to across restarts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if Path(console_log).read_text(errors='replace').count(marker) >= count:
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.5)
    return False
