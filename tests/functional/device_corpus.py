# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A corpus of real guest definitions for the device engine's round-trip test (test_device_corpus.py).

* ``VIRT_INSTALL``: virt-install (Debian package virtinst) command lines, one per OS and device combination;
  the XML is generated at test time with ``virt-install --print-xml`` against a real QEMU driver.
* ``HAND_WRITTEN``: guests written here that together use every device element of libvirt's domain XML
  format (https://libvirt.org/formatdomain.html#devices) in the forms the QEMU driver accepts.
"""

from __future__ import annotations

import subprocess

# virt-install arguments; {image} is a qcow2 image, {dir} a directory of the test
VIRT_INSTALL = {
    'debian-pc-bios-virtio': ['--machine', 'pc', '--osinfo', 'debian11', '--disk', 'path={image},bus=virtio',
                              '--network', 'network=default,model=virtio', '--graphics', 'none',
                              '--console', 'pty,target.type=virtio'],
    'fedora-q35-uefi-vnc': ['--machine', 'q35', '--osinfo', 'fedora37', '--boot', 'uefi',
                            '--disk', 'path={image},bus=virtio,boot.order=1',
                            '--network', 'network=default,model=virtio,boot.order=2',
                            '--graphics', 'vnc,listen=127.0.0.1', '--video', 'virtio'],
    'win10-q35-uefi-tpm-spice': ['--machine', 'q35', '--osinfo', 'win10', '--boot', 'uefi',
                                 '--disk', 'path={image},bus=sata', '--network', 'network=default,model=e1000e',
                                 '--graphics', 'spice', '--video', 'qxl', '--sound', 'ich9',
                                 '--tpm', 'emulator,model=tpm-crb,version=2.0', '--channel', 'spicevmc',
                                 '--redirdev', 'usb,type=spicevmc', '--redirdev', 'usb,type=spicevmc'],
    'win2k19-pc-bios-ide': ['--machine', 'pc', '--osinfo', 'win2k19', '--disk', 'path={image},bus=ide',
                            '--network', 'network=default,model=rtl8139', '--graphics', 'vnc', '--video', 'vga',
                            '--sound', 'ac97', '--input', 'tablet,bus=usb'],
    'ubuntu-q35-scsi': ['--machine', 'q35', '--osinfo', 'ubuntu22.04', '--controller', 'scsi,model=virtio-scsi',
                        '--disk', 'path={image},bus=scsi,cache=none,discard=unmap',
                        '--disk', 'device=cdrom,bus=scsi', '--disk', 'size=0.01,bus=scsi,format=raw,path={dir}/d2.img',
                        '--network', 'bridge=br0,model=virtio', '--graphics', 'none'],
    'spice-usbredir': ['--machine', 'q35', '--osinfo', 'linux2022', '--disk', 'none',
                       '--graphics', 'spice,listen=none', '--video', 'qxl', '--channel', 'spicevmc',
                       '--redirdev', 'usb,type=spicevmc', '--redirdev', 'usb,type=tcp,server=localhost:4000',
                       '--smartcard', 'passthrough,type=spicevmc', '--controller', 'usb,model=qemu-xhci'],
    'virtiofs': ['--machine', 'q35', '--osinfo', 'linux2022', '--disk', 'none',
                 '--memorybacking', 'source.type=memfd,access.mode=shared',
                 '--filesystem', 'source.dir={dir},target.dir=share0,driver.type=virtiofs',
                 '--filesystem', '{dir},share9p,mode=mapped', '--network', 'none'],
    'hostdev-pci-usb': ['--machine', 'q35', '--osinfo', 'linux2022', '--disk', 'none', '--network', 'none',
                        # a host PCI device by its node device name: defined only, never started or bound
                        '--hostdev', 'pci_0000_00_01_0'],
    'sound-watchdog-panic': ['--machine', 'pc', '--osinfo', 'linux2022', '--disk', 'none',
                             '--sound', 'es1370', '--sound', 'ich6', '--watchdog', 'i6300esb,action=poweroff',
                             '--panic', 'isa', '--network', 'none', '--graphics', 'none'],
    'channels-consoles': ['--machine', 'q35', '--osinfo', 'linux2022', '--disk', 'none', '--network', 'none',
                          '--channel', 'unix,target.type=virtio,name=org.qemu.guest_agent.0',
                          '--channel', 'pty,target.type=virtio,name=org.example.0',
                          '--serial', 'file,path={dir}/serial.log', '--serial', 'pty',
                          '--console', 'pty,target.type=virtio', '--parallel', 'pty', '--graphics', 'none'],
    'rng-balloon-vsock': ['--machine', 'q35', '--osinfo', 'linux2022', '--disk', 'none', '--network', 'none',
                          '--rng', 'builtin', '--memballoon', 'virtio,stats.period=10,autodeflate=on',
                          '--vsock', 'cid.auto=yes', '--iommu', 'virtio', '--graphics', 'none'],
    'graphics-variants': ['--machine', 'q35', '--osinfo', 'linux2022', '--disk', 'none', '--network', 'none',
                          '--graphics', 'vnc,port=5950,listen=0.0.0.0', '--graphics', 'egl-headless',
                          '--video', 'virtio,heads=2', '--input', 'keyboard,bus=virtio',
                          '--input', 'mouse,bus=virtio'],
    'centos-pc-sata-cdrom': ['--machine', 'pc', '--osinfo', 'centos-stream9', '--disk', 'path={image},bus=sata',
                             '--disk', 'device=cdrom,bus=sata,readonly=on', '--disk', 'device=floppy',
                             '--network', 'network=default,model=e1000,mac=52:54:00:12:34:56',
                             '--graphics', 'vnc', '--video', 'cirrus'],
    'networks': ['--machine', 'q35', '--osinfo', 'linux2022', '--disk', 'none', '--graphics', 'none',
                 '--network', 'network=default,model=virtio,driver.queues=4,mtu.size=9000',
                 '--network', 'type=direct,source=eth0,source.mode=bridge,model=virtio',
                 '--network', 'user,model=e1000e', '--network', 'bridge=br0,model=virtio,link.state=down',
                 '--network', 'network=default,model=pcnet'],
    'pc-legacy-nics-inputs': ['--machine', 'pc', '--osinfo', 'generic', '--disk', 'none', '--graphics', 'vnc',
                              '--network', 'network=default,model=ne2k_pci', '--sound', 'sb16',
                              '--input', 'tablet,bus=usb', '--video', 'bochs', '--watchdog', 'ib700'],
    'win11-q35-uefi-secure': ['--machine', 'q35', '--osinfo', 'win11', '--boot', 'uefi',
                              '--disk', 'path={image},bus=sata', '--network', 'network=default,model=e1000e',
                              '--graphics', 'spice', '--video', 'qxl', '--tpm', 'emulator', '--sound', 'ich9'],
    'ubuntu-q35-vnc-qxl-audio': ['--machine', 'q35', '--osinfo', 'ubuntu22.04', '--disk', 'path={image}',
                                 '--network', 'network=default', '--graphics', 'vnc', '--video', 'qxl',
                                 '--sound', 'ich9', '--audio', 'id=1,type=none'],
}


def virt_install_xml(uri, name, args, image, directory):
    """The guest definition virt-install writes (``--print-xml``); fails the test when virt-install does."""
    args = [arg.replace('{image}', image).replace('{dir}', directory) for arg in args]
    proc = subprocess.run(['virt-install', '--connect', uri, '--print-xml', '--name', name, '--memory', '256',
                           '--vcpus', '1', '--import', '--virt-type', 'qemu', '--noautoconsole',
                           # the guests share one image and are never started
                           '--check', 'path_in_use=off,mac_in_use=off'] + args,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise AssertionError('virt-install %s failed: %s' % (' '.join(args), proc.stderr.strip()))
    return proc.stdout


_HEAD = ("<domain type='qemu'><name>%s</name><memory unit='MiB'>256</memory>%s"
         "<os><type arch='x86_64' machine='%s'>hvm</type></os><features><acpi/>%s</features>"
         "<devices>%s</devices></domain>")


def _guest(name, machine, devices, extra='', features=''):
    return _HEAD % (name, extra, machine, features, devices)


# Every device element of formatdomain "Devices", in forms the QEMU driver accepts at define time.
HAND_WRITTEN = {
    'hand-disks': ('q35', '''
      <disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none' io='native' discard='unmap'/>
        <source file='{image}'/><target dev='vda' bus='virtio'/><serial>SN-1</serial><boot order='1'/></disk>
      <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='sda' bus='sata'/><readonly/></disk>
      <disk type='block' device='disk'><driver name='qemu' type='raw' error_policy='report'/><source dev='/dev/null'/>
        <target dev='vdb' bus='virtio'/><alias name='ua-data'/><shareable/></disk>
      <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{dir}/usb.img'/>
        <target dev='sdb' bus='usb'/></disk>
      <controller type='scsi' index='0' model='virtio-scsi'><driver queues='2'/></controller>
      <disk type='file' device='disk'><source file='{dir}/s.img'/><target dev='sdc' bus='scsi'/></disk>
    '''),
    'hand-controllers': ('q35', '''
      <controller type='usb' index='0' model='ich9-ehci1'/>
      <controller type='usb' index='0' model='ich9-uhci1'><master startport='0'/></controller>
      <controller type='usb' index='0' model='ich9-uhci2'><master startport='2'/></controller>
      <controller type='virtio-serial' index='0' ports='16'/>
      <controller type='pci' index='1' model='pcie-root-port'><model name='pcie-root-port'/>
        <target chassis='1' port='0x10'/></controller>
      <controller type='pci' index='2' model='pcie-to-pci-bridge'/>
      <controller type='scsi' index='0' model='lsilogic'/>
      <controller type='ccid' index='0'/>
    '''),
    'hand-chars': ('pc', '''
      <serial type='tcp'><source mode='bind' host='127.0.0.1' service='4555'/><protocol type='telnet'/>
        <target port='0'/></serial>
      <serial type='unix'><source mode='bind' path='{dir}/s1.sock'/><target port='1'/></serial>
      <parallel type='file'><source path='{dir}/lp0'/><target port='0'/></parallel>
      <console type='pty'><target type='virtio' port='1'/></console>
      <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
      <channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>
      <graphics type='spice' autoport='yes'/>
    '''),
    'hand-misc': ('q35', '''
      <input type='tablet' bus='usb'/>
      <input type='evdev'><source dev='/dev/input/event0'/></input>
      <hub type='usb'/>
      <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1' passwd='secret'/>
      <video><model type='virtio' heads='1' primary='yes'/></video>
      <sound model='ich9'><codec type='micro'/></sound>
      <audio id='1' type='none'/>
      <watchdog model='i6300esb' action='reset'/>
      <memballoon model='virtio'><stats period='5'/></memballoon>
      <rng model='virtio'><rate bytes='1024' period='1000'/><backend model='random'>/dev/urandom</backend></rng>
      <tpm model='tpm-tis'><backend type='emulator' version='2.0'/></tpm>
      <panic model='isa'/>
      <shmem name='ivshmem0'><model type='ivshmem-plain'/><size unit='M'>4</size></shmem>
      <vsock model='virtio'><cid auto='no' address='7'/></vsock>
      <crypto model='virtio' type='qemu'><backend model='builtin' queues='1'/></crypto>
      <pstore backend='acpi-erst'><path>{dir}/pstore</path><size unit='KiB'>8</size></pstore>
      <redirdev bus='usb' type='spicevmc'/>
      <redirfilter><usbdev class='0x08' vendor='0x1234' product='0xbeef' version='2.00' allow='yes'/>
        <usbdev allow='no'/></redirfilter>
      <smartcard mode='host'/>
      <graphics type='spice' autoport='yes'/>
    '''),
    'hand-memory-iommu': ('q35', '''
      <iommu model='intel'><driver intremap='on'/></iommu>
      <memory model='dimm'><target><size unit='MiB'>128</size><node>0</node></target></memory>
    ''', "<maxMemory slots='4' unit='MiB'>1024</maxMemory>", "<ioapic driver='qemu'/>",
                          "<cpu><numa><cell id='0' cpus='0' memory='256' unit='MiB'/></numa></cpu>"),
    'hand-hostdevs': ('q35', '''
      <hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0x0000' bus='0x65' slot='0x00'
        function='0x0'/></source><rom bar='on'/></hostdev>
      <hostdev mode='subsystem' type='usb'><source><vendor id='0x046d'/><product id='0xc52b'/></source></hostdev>
      <hostdev mode='subsystem' type='scsi'><source><adapter name='scsi_host0'/><address bus='0' target='0'
        unit='1'/></source><readonly/></hostdev>
      <hostdev mode='subsystem' type='mdev' model='vfio-pci'><source><address
        uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev>
      <interface type='hostdev' managed='yes'><mac address='52:54:00:6d:90:02'/><source><address type='pci'
        domain='0x0000' bus='0x66' slot='0x10' function='0x1'/></source></interface>
    '''),
}


def hand_written_xml(name, entry, image, directory):
    machine, devices = entry[0], entry[1]
    extra = entry[2] if len(entry) > 2 else ''
    features = entry[3] if len(entry) > 3 else ''
    cpu = entry[4] if len(entry) > 4 else ''
    devices = devices.replace('{image}', image).replace('{dir}', directory)
    return _guest(name, machine, devices, extra + cpu, features)
