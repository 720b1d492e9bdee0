# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The hostile-input catalogue: one table, one test. Every module and role is fed wrong types, out-of-range
numbers, control characters, huge strings, every address notation libvirt accepts, XML injection and path
traversal. Each case must end in a refusal whose message names the field and the value, without a
traceback, and with nothing written: no libvirt write call (counted by ``_libvirt.Connection``), no file
changed below the fixture root, no sysfs write (the FakeKernel records them).

Modules run in-process as Ansible runs them; libvirt is the in-process test driver loaded with
``fixtures/sysfs/libvirt-test-driver.xml`` (guest ``fw`` is shut off), the host is a fixture tree.
With ``VIRTDEV_RELIABILITY_DIR`` set, the figures are written to ``hostile_inputs.json`` there
(``{cases, modules: {name: count}, refused_before_write}``; the roles count under their own names, ``guest`` and
``passthrough_host``) for docs/reliability.md.
"""

from __future__ import annotations

import collections
import json
import os

import pytest

from ansible.errors import AnsibleFilterError
from ansible.release import __version__ as ANSIBLE_CORE_VERSION

from ansible_collections.virtdev.libvirt.plugins.filter.guest_devices import guest_devices
from ansible_collections.virtdev.libvirt.plugins.module_utils import _guest_lock, _libvirt
from ansible_collections.virtdev.libvirt.plugins.modules import (
    domain, domain_devices, host_devices_info, kernel_cmdline, mdev, network, sriov_vfs, vfio_bind,
)
from ansible_collections.virtdev.libvirt.tests.unit.fixtures.bootloaders import trees
from ansible_collections.virtdev.libvirt.tests.unit.prepare_helpers import machine, run_module, snapshot
from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import FIXTURES, build

pytestmark = pytest.mark.skipif(not _libvirt.HAS_LIBVIRT, reason='libvirt-python is not installed')

TEST_URI = 'test://' + os.path.join(FIXTURES, 'libvirt-test-driver.xml')
MODULES = {module.__name__.rsplit('.', 1)[1]: module for module in (
    domain, domain_devices, host_devices_info, kernel_cmdline, mdev, network, sriov_vfs, vfio_bind)}
ROUTE_NIC, ROOT_NVME, GPU = '0000:00:1f.6', '0000:02:00.0', '0000:01:00.0'   # desktop.yml
HUGE = 'x' * 100000
HOST_READERS = ('domain_devices', 'domain', 'host_devices_info')   # modules that never write to the host
PROFILE_VIRTIO = {'nic_model': 'virtio', 'disk_bus': 'virtio', 'disk_prefix': 'vd', 'devices': []}


class Case:
    """``target``: a module name, or 'guest'/'passthrough_host' for a role (run as the role's task does).
    ``machine``: the fixture host; ``expect``: fragments the message must hold (the field and the value);
    ``hidden``: fragments it must not hold (secrets)."""

    def __init__(self, ident, target, params, expect, machine='desktop', hidden=(), module=None):
        self.ident, self.target, self.params, self.expect = ident, target, params, expect
        self.machine, self.hidden = machine, hidden
        self.module = module or target


def dd(ident, config, expect, **kwargs):
    """A domain_devices case on guest fw."""
    return Case(ident, 'domain_devices', {'domain': 'fw', 'config': config}, expect, **kwargs)


def xml(ident, device_xml, expect, **kwargs):
    return dd(ident, [{'kind': 'xml', 'xml': device_xml}], ['config[0]'] + expect, **kwargs)


def hostdev_xml(attributes):
    return "<hostdev mode='subsystem' type='pci' managed='yes'><source><address %s/></source></hostdev>" % attributes


NIC = {'kind': 'interface', 'source': {'network': 'default'}}
GUARD = 'guard host_critical'

CASES = [
    # -- domain_devices: control characters and strings XML cannot carry ---------------------------------------
    dd('nic-network-control-char', [{'kind': 'interface', 'source': {'network': 'a\x01b'}}],
       ['config[0].source.network', repr('a\x01b'), 'U+0001']),
    dd('disk-serial-nul', [{'kind': 'disk', 'target': 'vdb', 'serial': 'AB\x00C'}],
       ['config[0].serial', repr('AB\x00C'), 'U+0000']),
    dd('password-control-char-hidden', [{'kind': 'graphics', 'type': 'vnc', 'password': 'pw\x07secret'}],
       ['config[0].password', '(value hidden)', 'U+0007'], hidden=('pw', 'secret')),
    dd('bridge-unit-separator', [{'kind': 'interface', 'source': {'bridge': 'br\x1f0'}}],
       ['config[0].source.bridge', 'U+001F']),
    dd('filesystem-target-fffe', [{'kind': 'filesystem', 'source': {'dir': '/srv'}, 'target': 'tag\ufffe'}],
       ['config[0].target', 'U+FFFE']),
    dd('manifest-names-entry', None, ['domains[1].config[0].source.network', repr('x\x1by')]),
    xml('xml-control-char', "<watchdog model='i6300esb' action='res\x01et'/>", ['U+0001']),
    xml('xml-vertical-tab', "<watchdog model='i6300esb\x0b'/>", ['U+000B']),
    xml('xml-char-reference-nul', "<watchdog model='i6300esb&#0;'/>", ['not well-formed']),
    dd('domain-name-nul', [NIC], ['domain', repr('fw\x00')]),
    # -- domain_devices: what libvirt's schema refuses, refused up front -------------------------------------------
    dd('mac-multicast', [dict(NIC, mac='01:00:5e:00:00:01')], ['config[0].mac', "'01:00:5e:00:00:01'", 'multicast']),
    dd('mac-broadcast', [dict(NIC, mac='ff:ff:ff:ff:ff:ff')], ['config[0].mac', "'ff:ff:ff:ff:ff:ff'"]),
    dd('mac-dashes', [dict(NIC, mac='52-54-00-aa-bb-cc')], ['config[0].mac', "'52-54-00-aa-bb-cc'"]),
    dd('mac-huge', [dict(NIC, mac=HUGE)], ['config[0].mac', "'xxxxxxxx"]),
    dd('mac-seven-octets', [dict(NIC, mac='52:54:00:aa:bb:cc:dd')], ['config[0].mac', "'52:54:00:aa:bb:cc:dd'"]),
    dd('disk-file-relative', [{'kind': 'disk', 'target': 'vdb', 'source': {'file': 'data.qcow2'}}],
       ['config[0].source.file', "'data.qcow2'", 'absolute']),
    dd('disk-file-traversal', [{'kind': 'disk', 'target': 'vdb',
                                'source': {'file': '/var/lib/libvirt/images/../../../../etc/shadow'}}],
       ['config[0].source.file', "'/var/lib/libvirt/images/../../../../etc/shadow'", "'..'"]),
    dd('disk-block-relative', [{'kind': 'disk', 'target': 'vdb', 'source': {'block': 'sdb'}}],
       ['config[0].source.block', "'sdb'"]),
    dd('filesystem-dir-traversal', [{'kind': 'filesystem', 'source': {'dir': '/srv/../etc'}, 'target': 'share'}],
       ['config[0].source.dir', "'/srv/../etc'"]),
    dd('hostdev-rom-relative', [{'kind': 'hostdev', 'address': GPU, 'rom_file': '../rom.bin'}],
       ['config[0].rom_file', "'../rom.bin'"]),
    dd('memory-path-relative', [{'kind': 'memory', 'model': 'virtio-pmem', 'source_path': 'pmem0', 'size_mib': 128}],
       ['config[0].source_path', "'pmem0'"]),
    dd('graphics-listen-empty', [{'kind': 'graphics', 'type': 'vnc', 'listen': ''}], ['config[0].listen', "''"]),
    dd('network-empty', [{'kind': 'interface', 'source': {'network': ''}}], ['config[0].source.network', 'empty']),
    dd('disk-serial-injection', [{'kind': 'disk', 'target': 'vdb', 'serial': "a'/><qemu:commandline/>"}],
       ['config[0].serial', repr("a'/><qemu:commandline/>")]),
    dd('disk-target-newline', [{'kind': 'disk', 'target': 'vdb\n'}], ['config[0].target', repr('vdb\n')]),
    dd('disk-target-huge', [{'kind': 'disk', 'target': 'vd' + 'a' * 100000}], ['config[0].target', "'vdaaaa"]),
    dd('rng-backend-traversal', [{'kind': 'rng', 'backend': '/dev/../etc/passwd'}],
       ['config[0].backend', "'/dev/../etc/passwd'"]),
    dd('watchdog-action-choice', [{'kind': 'watchdog', 'model': 'i6300esb', 'action': 'explode'}],
       ['config[0].action', "'explode'"]),
    dd('kind-unknown', [{'kind': 'gpu'}], ['value of kind must be one of', 'got: gpu found in config']),
    # -- domain_devices: types and ranges ---------------------------------------------------------------------------
    dd('queues-zero', [dict(NIC, queues=0)], ['config[0].queues', '0 is out of range']),
    dd('queues-huge', [dict(NIC, queues=2 ** 40)], ['config[0].queues', str(2 ** 40)]),
    dd('mtu-too-big', [dict(NIC, mtu=70000)], ['config[0].mtu', '70000']),
    dd('vlan-negative', [dict(NIC, vlan=-1)], ['config[0].vlan', '-1']),
    dd('controller-index-256', [{'kind': 'controller', 'type': 'pci', 'index': 256}], ['config[0].index', '256']),
    dd('vsock-cid-reserved', [{'kind': 'vsock', 'cid': 2}], ['config[0].cid', "'2'"]),
    dd('boot-order-zero', [{'kind': 'disk', 'target': 'vdb', 'boot_order': 0}], ['config[0].boot_order', '0']),
    dd('source-two-kinds', [{'kind': 'interface', 'source': {'network': 'a', 'bridge': 'b'}}],
       ['config[0].source', "'network': 'a'", "'bridge': 'b'"]),
    dd('readonly-not-bool', [{'kind': 'disk', 'target': 'vdb', 'readonly': 'maybe'}], ['readonly', 'maybe']),
    dd('usb-vendor-word', [{'kind': 'hostdev', 'type': 'usb', 'vendor': 'logitech', 'product': '0xc52b'}],
       ['config[0].vendor', "'logitech'"]),
    dd('usb-vendor-17-bit', [{'kind': 'hostdev', 'type': 'usb', 'vendor': 0x1ffff, 'product': '0xc52b'}],
       ['config[0].vendor', str(0x1ffff)]),
    dd('mdev-uuid-bad', [{'kind': 'hostdev', 'type': 'mdev', 'model': 'vfio-pci', 'uuid': '../../../etc'}],
       ['config[0].uuid', "'../../../etc'"]),
    dd('scsi-adapter-traversal', [{'kind': 'hostdev', 'type': 'scsi', 'adapter': '../scsi_host0', 'address': '0:0:1'}],
       ['config[0].adapter', "'../scsi_host0'"]),
    Case('host-root-control-char', 'domain_devices', {'domain': 'fw', 'config': [NIC], 'host_root': '/srv/\x01'},
         ['host_root', repr('/srv/\x01')]),
    Case('detach-timeout-zero', 'domain_devices', {'domain': 'fw', 'config': [NIC], 'detach_timeout': 0},
         ['detach_timeout', '0 is out of range']),
    Case('parsed-running-config-nul', 'domain_devices', {'state': 'parsed', 'running_config': '<domain>\x00</domain>'},
         ['running_config', 'U+0000']),
    # -- domain_devices: typed PCI addresses -------------------------------------------------------------------------
    dd('pci-slot-20', [{'kind': 'hostdev', 'address': '0000:01:20.0'}], ['config[0].address', "'0000:01:20.0'"]),
    dd('pci-function-8', [{'kind': 'hostdev', 'address': '0000:01:00.8'}], ['config[0].address', "'0000:01:00.8'"]),
    dd('pci-traversal', [{'kind': 'hostdev', 'address': '../../../sys'}], ['config[0].address', "'../../../sys'"]),
    dd('pci-huge-domain', [{'kind': 'hostdev', 'address': '0' * 100000 + ':00:1f.6'}], ['config[0].address', "'0000"]),
    dd('pci-typed-route-nic', [{'kind': 'hostdev', 'address': '00:1F.6'}], ['config[0]', ROUTE_NIC, GUARD]),
    dd('vf-typed-route-nic', [dict(NIC, source={'hostdev': '0:00:1f.6'}, mac='52:54:00:00:00:09')],
       ['config[0].source.hostdev', "'0:00:1f.6'"]),
    # two NICs on one host device: each is a request of its own (the duplicate guard sees both)
    dd('two-nics-one-device', [dict(NIC, source={'hostdev': '0000:00:1f.6'}), dict(NIC, source={'hostdev': '00:1f.6'})],
       ['config[1]', 'the same device as config[0]', 'guard duplicate']),
    # -- domain_devices: every notation libvirt accepts reaches the guards (raw XML) -----------------------------------
    xml('xml-route-nic-canonical', hostdev_xml("domain='0x0000' bus='0x00' slot='0x1f' function='0x6'"),
        [ROUTE_NIC, GUARD]),
    xml('xml-route-nic-decimal', hostdev_xml("bus='0' slot='31' function='6'"), [ROUTE_NIC, GUARD]),
    xml('xml-route-nic-octal-no-domain-bus', hostdev_xml("slot='037' function='06'"), [ROUTE_NIC, GUARD]),
    xml('xml-route-nic-upper-hex', hostdev_xml("domain='0X0' slot='0X1F' function='0X6'"), [ROUTE_NIC, GUARD]),
    xml('xml-route-nic-blank-plus', hostdev_xml("slot=' +31' function='&#9;6'"), [ROUTE_NIC, GUARD]),
    xml('xml-route-nic-long-zeros', hostdev_xml("domain='00000000000' slot='0x000001f' function='6'"),
        [ROUTE_NIC, GUARD]),
    xml('xml-route-nic-interface-hostdev', "<interface type='hostdev' managed='yes'><mac address='52:54:00:00:00:0a'/>"
        "<source><address type='pci' slot='31' function='6'/></source></interface>", [ROUTE_NIC, GUARD]),
    xml('xml-root-nvme-bus-only', hostdev_xml("bus='2'"), [ROOT_NVME, GUARD]),
    xml('xml-root-nvme-octal', hostdev_xml("bus='02' slot='00'"), [ROOT_NVME, GUARD]),
    xml('xml-root-nvme-hex', hostdev_xml("domain='0x0' bus='0x2' slot='0x0' function='0x0'"), [ROOT_NVME, GUARD]),
    xml('xml-root-nvme-decimal-domain', hostdev_xml("domain='0' bus='2' slot='0' function='0'"), [ROOT_NVME, GUARD]),
    xml('xml-host-bridge-empty-address', hostdev_xml(''), ['0000:00:00.0', GUARD]),
    xml('xml-bus-08-unreadable', hostdev_xml("bus='08' slot='0'"), ["'08'", 'guard address']),
    xml('xml-bus-trailing-blank', hostdev_xml("bus='2 ' slot='0'"), ["'2 '", 'guard address']),
    xml('xml-bus-negative', hostdev_xml("bus='-2'"), ["'-2'", 'guard address']),
    xml('xml-slot-out-of-range', hostdev_xml("bus='2' slot='32'"), ['slot', 'guard address']),
    xml('xml-usb-vendor-hex-without-0x', "<hostdev mode='subsystem' type='usb'><source><vendor id='046d'/>"
        "<product id='0xc52b'/></source></hostdev>", ["'046d'", 'guard address']),
    xml('xml-mdev-uuid-bad', "<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source>"
        "<address uuid='{a297db4a-f4c2-11e6-90f6-d3b88d6c9525}'/></source></hostdev>",
        ["'{a297db4a-f4c2-11e6-90f6-d3b88d6c9525}'", 'guard address']),
    xml('xml-interface-hostdev-no-type', "<interface type='hostdev'><mac address='52:54:00:00:00:0b'/>"
        "<source><address bus='0' slot='31' function='6'/></source></interface>", ["'bus': '0'", 'guard address']),
    xml('xml-interface-without-mac', "<interface type='network'><source network='default'/></interface>",
        ["<mac address='...'/>"]),
    xml('xml-interface-multicast-mac', "<interface type='network'><mac address='03:00:00:00:00:01'/>"
        "<source network='default'/></interface>", ["'03:00:00:00:00:01'", 'multicast']),
    xml('xml-doctype-entity', '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><watchdog model="&e;"/>',
        ['external entity']),
    xml('xml-not-a-device', '<domain><name>evil</name></domain>', ['<domain> is not a libvirt device element']),
    xml('xml-two-roots', "<watchdog model='i6300esb'/><sound model='ich9'/>", ['not well-formed']),
    # -- domain --------------------------------------------------------------------------------------------------------
    Case('domain-name-control-char', 'domain', {'name': 'web\x1b[31m'}, ['name', repr('web\x1b[31m')]),
    Case('domain-name-slash', 'domain', {'name': '../etc/web'}, ['name', "'../etc/web'"]),
    Case('domain-uuid-bad', 'domain', {'name': 'new', 'uuid': 'c2177883-f1bb-47f0-914d'},
         ['uuid', "'c2177883-f1bb-47f0-914d'"]),
    Case('domain-memory-zero', 'domain', {'name': 'new', 'memory': 0}, ['memory', '0 is out of range']),
    Case('domain-vcpus-huge', 'domain', {'name': 'new', 'vcpus': 10 ** 6}, ['vcpus', str(10 ** 6)]),
    Case('domain-root-ports-31', 'domain', {'name': 'new', 'pcie_root_ports': 31}, ['pcie_root_ports', '31']),
    Case('domain-machine-nul', 'domain', {'name': 'new', 'machine': 'q35\x00'}, ['machine', repr('q35\x00')]),
    Case('domain-memory-word', 'domain', {'name': 'new', 'memory': 'lots'}, ['memory', 'lots']),
    # -- kernel_cmdline ------------------------------------------------------------------------------------------------
    Case('cmdline-arg-huge', 'kernel_cmdline', {'args': ['intel_iommu=' + HUGE]},
         ['args[0]', "'intel_iommu=xxxx", 'COMMAND_LINE_SIZE'], machine='grub'),
    Case('cmdline-args-total', 'kernel_cmdline', {'args': ['opt%02d=%s' % (n, 'v' * 90) for n in range(25)]},
         ['args', 'COMMAND_LINE_SIZE'], machine='grub'),
    Case('cmdline-newline-injection', 'kernel_cmdline', {'args': ['quiet\nGRUB_TIMEOUT=0']},
         ['args[0]', repr('quiet\nGRUB_TIMEOUT=0')], machine='grub'),
    Case('cmdline-command-substitution', 'kernel_cmdline', {'args': ['x=$(reboot)']}, ['args[0]', "'x=$(reboot)'"],
         machine='grub'),
    Case('cmdline-quote', 'kernel_cmdline', {'args': ['x="a"']}, ['args[0]', 'x="a"'], machine='grub'),
    Case('cmdline-nul', 'kernel_cmdline', {'args': ['iommu=pt\x00']}, ['args[0]', repr('iommu=pt\x00')],
         machine='grub'),
    Case('cmdline-key-slash', 'kernel_cmdline', {'args': ['../x=1']}, ['args[0]', "'../x=1'"], machine='grub'),
    Case('cmdline-empty', 'kernel_cmdline', {'args': ['']}, ['args[0]', "''"], machine='grub'),
    Case('cmdline-grub-file-nul', 'kernel_cmdline', {'args': ['iommu=pt'], 'grub_file': '/etc/default/grub\x00.d'},
         ['grub_file', 'U+0000'], machine='grub'),
    Case('cmdline-update-command-escape', 'kernel_cmdline',
         {'args': ['iommu=pt'], 'update_command': ['update-grub', '\x1b]0;pwned\x07']},
         ['update_command[1]', 'U+001B'], machine='grub'),
    # -- vfio_bind -------------------------------------------------------------------------------------------------------
    Case('vfio-address-traversal', 'vfio_bind', {'addresses': ['../../../../etc']}, ["'../../../../etc'"]),
    Case('vfio-address-nul', 'vfio_bind', {'addresses': ['0000:01:00.0\x00']}, ['addresses[0]', 'U+0000']),
    Case('vfio-route-nic-short', 'vfio_bind', {'addresses': ['00:1f.6']}, [ROUTE_NIC, 'host-critical']),
    Case('vfio-root-nvme-upper', 'vfio_bind', {'addresses': ['0000:02:00.0'.upper()]}, [ROOT_NVME, 'host-critical']),
    Case('vfio-driver-traversal', 'vfio_bind', {'addresses': [GPU], 'driver': '../../unbind'}, ["'../../unbind'"]),
    Case('vfio-driver-newline', 'vfio_bind', {'addresses': [GPU], 'driver': 'vfio-pci\n'}, [repr('vfio-pci\n')]),
    # -- sriov_vfs ---------------------------------------------------------------------------------------------------------
    Case('sriov-pf-traversal', 'sriov_vfs', {'pf': '../../../etc', 'num_vfs': 1}, ["'../../../etc'"], machine='sriov'),
    Case('sriov-pf-injection', 'sriov_vfs', {'pf': 'ens2f0;reboot', 'num_vfs': 1}, ["'ens2f0;reboot'"],
         machine='sriov'),
    Case('sriov-num-vfs-negative', 'sriov_vfs', {'pf': '0000:41:00.1', 'num_vfs': -1}, ['num_vfs', '-1'],
         machine='sriov'),
    Case('sriov-vf-mac-multicast', 'sriov_vfs', {'pf': '0000:41:00.0', 'num_vfs': 4,
                                                 'vfs': [{'index': 0, 'mac': '01:00:5E:00:00:01'}]},
         ['vfs[0].mac', "'01:00:5E:00:00:01'", 'multicast'], machine='sriov'),
    Case('sriov-vf-mac-nul', 'sriov_vfs', {'pf': '0000:41:00.0', 'num_vfs': 4, 'vfs': [{'index': 0, 'mac': '\x00'}]},
         ['vfs[0].mac', 'U+0000'], machine='sriov'),
    Case('sriov-vf-vlan-range', 'sriov_vfs', {'pf': '0000:41:00.0', 'num_vfs': 4, 'vfs': [{'index': 0, 'vlan': 5000}]},
         ['vfs[0].vlan', '5000'], machine='sriov'),
    # -- mdev ----------------------------------------------------------------------------------------------------------------
    Case('mdev-uuid-traversal', 'mdev', {'uuid': '../../../../etc/passwd', 'parent': '0000:00:02.0',
                                         'mdev_type': 'i915-GVTg_V5_8'}, ['uuid', "'../../../../etc/passwd'"],
         machine='mdev'),
    Case('mdev-uuid-control', 'mdev', {'uuid': 'a297db4a\x7f', 'parent': '0000:00:02.0', 'mdev_type': 'i915-GVTg_V5_8'},
         ['uuid', repr('a297db4a\x7f')], machine='mdev'),
    Case('mdev-type-traversal', 'mdev', {'uuid': '3b9f6a2e-1c4d-4e5f-8a7b-9c0d1e2f3a4b', 'parent': '0000:00:02.0',
                                         'mdev_type': '../../../../remove'}, ['../../../../remove'], machine='mdev'),
    Case('mdev-parent-word', 'mdev', {'uuid': '3b9f6a2e-1c4d-4e5f-8a7b-9c0d1e2f3a4b', 'parent': 'gpu0',
                                      'mdev_type': 'x'}, ['parent', "'gpu0'"], machine='mdev'),
    # -- host_devices_info ----------------------------------------------------------------------------------------------------
    Case('info-format-choice', 'host_devices_info', {'format': 'pdf', 'libvirt': False}, ['format', 'pdf']),
    Case('info-uri-control', 'host_devices_info', {'uri': 'qemu:///system\x01'}, ['uri', 'U+0001']),
    # -- network -----------------------------------------------------------------------------------------------------------
    Case('network-name-slash', 'network', {'name': '../default', 'forward': 'bridge', 'bridge': 'br0'},
         ['name', "'../default'"]),
    Case('network-pf-traversal', 'network', {'name': 'pool', 'forward': 'hostdev', 'pf': '../../etc'},
         ['pf', "'../../etc'"]),
    Case('network-bridge-injection', 'network', {'name': 'lan', 'forward': 'bridge', 'bridge': "br0'/><x a='"},
         ['bridge', "br0'/><x a='"]),
    Case('network-interface-control', 'network', {'name': 'mvtap', 'forward': 'passthrough', 'interfaces': ['eth\x01']},
         ['interfaces[0]', 'U+0001']),
    Case('network-vlan-range', 'network', {'name': 'pool', 'forward': 'hostdev', 'pf': 'ens2f0', 'vlan': 4096},
         ['vlan', '4096']),
    Case('network-option-of-another-kind', 'network', {'name': 'lan', 'forward': 'bridge', 'bridge': 'br0',
                                                       'pf': 'ens2f0'}, ['pf', 'forward=bridge']),
    # -- role guest (guest_devices filter, then domain_devices as its task runs it) ------------------------------------------
    Case('guest-network-not-a-dict', 'guest', {'networks': ['default']}, ['networks[0]', "'default'"]),
    Case('guest-disk-without-source', 'guest', {'disks': [{'size': 10}]}, ['disks[0].size', 'unknown option (given 10)']),
    Case('guest-disk-no-source', 'guest', {'disks': [{'format': 'raw'}]}, ['disks[0]', "{'format': 'raw'}"]),
    Case('guest-profile-missing-key', 'guest', {'profile': {'nic_model': 'virtio'}}, ['profile', 'disk_bus']),
    Case('guest-network-control-char', 'guest', {'networks': [{'network': 'lan\x02'}]},
         ['config[0].source.network', 'U+0002'], module='domain_devices'),
    Case('guest-disk-relative', 'guest', {'disks': [{'file': 'disk.qcow2'}]}, ['config[0].source.file', "'disk.qcow2'"],
         module='domain_devices'),
    Case('guest-host-device-route-nic', 'guest', {'host_devices': ['00:1f.6']}, ['config[0]', ROUTE_NIC, GUARD],
         module='domain_devices'),
    Case('guest-extra-xml-root-nvme', 'guest', {'extra': [{'kind': 'xml', 'xml': hostdev_xml("bus='2'")}]},
         [ROOT_NVME, GUARD], module='domain_devices'),
    Case('guest-mac-multicast', 'guest', {'networks': [{'network': 'default', 'mac': '33:33:00:00:00:01'}]},
         ['config[0].mac', "'33:33:00:00:00:01'"], module='domain_devices'),
    # -- role passthrough_host (its module calls with the role's variables) -------------------------------------------------
    Case('ph-kernel-args-huge', 'passthrough_host', {'passthrough_host_kernel_args': [HUGE]},
         ['args[2]', 'COMMAND_LINE_SIZE'], machine='grub', module='kernel_cmdline'),
    Case('ph-vfio-devices-route-nic', 'passthrough_host', {'passthrough_host_vfio_devices': ['0000:00:1F.6']},
         [ROUTE_NIC, 'host-critical'], module='vfio_bind'),
    Case('ph-sriov-pf-injection', 'passthrough_host', {'passthrough_host_sriov': [{'pf': '$(reboot)', 'num_vfs': 2}]},
         ["'$(reboot)'"], machine='sriov', module='sriov_vfs'),
    Case('ph-mdev-uuid-traversal', 'passthrough_host',
         {'passthrough_host_mdevs': [{'uuid': '../create', 'parent': '0000:00:02.0', 'mdev_type': 'i915-GVTg_V5_8'}]},
         ['uuid', "'../create'"], machine='mdev', module='mdev'),
]

RESULTS = collections.OrderedDict()   # ident -> (module, refused before any write)

# ansible-core 2.21 logs a module's arguments to syslog before the module's code runs and itself refuses a
# top-level string argument holding NUL ("Failed to log to syslog (embedded null character)"): the module never
# sees the value, so its message cannot name the field (still refused, nothing written).
CORE_REFUSES_TOP_LEVEL_NUL = tuple(int(part) for part in ANSIBLE_CORE_VERSION.split('.')[:2]) >= (2, 21)


def _expected_fragments(case, params, message):
    nul_argument = any(isinstance(value, str) and '\x00' in value for value in params.values())
    if CORE_REFUSES_TOP_LEVEL_NUL and nul_argument and message.startswith('Failed to log to syslog'):
        return ['embedded null character']
    return case.expect


def _manifest_case(case):
    if case.ident == 'manifest-names-entry':
        case.params = {'domains': [{'domain': 'gpu-vm', 'config': [NIC]},
                                   {'domain': 'fw', 'config': [{'kind': 'interface', 'source': {'network': 'x\x1by'}}]}]}
    if case.ident == 'domain-name-nul':
        case.params['domain'] = 'fw\x00'
    return case


@pytest.fixture(scope='module', autouse=True)
def figures():
    """Write the catalogue's figures for docs/reliability.md once the module's cases have run."""
    yield RESULTS
    directory = os.environ.get('VIRTDEV_RELIABILITY_DIR')
    if directory and RESULTS:
        os.makedirs(directory, exist_ok=True)
        modules = collections.Counter(module for module, _refused in RESULTS.values())
        summary = {'cases': len(RESULTS), 'modules': dict(sorted(modules.items())),
                   'refused_before_write': sum(1 for _module, refused in RESULTS.values() if refused)}
        with open(os.path.join(directory, 'hostile_inputs.json'), 'w', encoding='utf-8') as handle:
            json.dump(summary, handle, indent=2, sort_keys=True)


@pytest.fixture
def libvirt_writes(monkeypatch):
    """Every libvirt Connection the module opens, for counting its write calls."""
    opened = []
    original = _libvirt.Connection.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(_libvirt.Connection, '__init__', init)
    return lambda: sum(count for conn in opened for name, count in conn.calls.items() if name in _libvirt.WRITE_CALLS)


@pytest.fixture(scope='module')
def shared_desktop(tmp_path_factory):
    """One desktop tree for the cases whose module only reads the host (compared before and after each)."""
    return build('desktop', tmp_path_factory.mktemp('shared'))


def _host(case, tmp_path, monkeypatch, shared_desktop):
    """(root, recorded sysfs writes) of the case's fixture host."""
    if case.module in HOST_READERS and case.machine == 'desktop':
        return shared_desktop, []
    if case.machine == 'grub':
        root = str(tmp_path / 'grub')
        trees.debian_grub(root, linux='quiet')
        return root, []
    root, kernel = machine(tmp_path, monkeypatch, case.machine)
    return root, kernel.writes


def _params(case, root):
    """The module parameters, as the case's module or role passes them."""
    params = dict(case.params)
    if case.target == 'guest':
        profile = params.pop('profile', PROFILE_VIRTIO)
        config = guest_devices(profile, params.get('networks', []), params.get('disks', []),
                               params.get('host_devices', [])) + params.get('extra', [])
        return {'uri': TEST_URI, 'domain': 'fw', 'host_root': root, 'config': config}
    if case.target == 'passthrough_host':
        role = {'kernel_cmdline': lambda v: {'args': ['intel_iommu=on', 'iommu=pt'] + v['passthrough_host_kernel_args']},
                'vfio_bind': lambda v: {'addresses': v['passthrough_host_vfio_devices'], 'whole_group': True},
                'sriov_vfs': lambda v: dict(v['passthrough_host_sriov'][0]),
                'mdev': lambda v: dict(v['passthrough_host_mdevs'][0])}[case.module](params)
        return dict(role, root=root)
    if case.module in ('domain_devices', 'domain', 'network'):
        params.setdefault('uri', TEST_URI)
        if case.module == 'domain_devices' and params.get('state') != 'parsed':
            params.setdefault('host_root', root)
        return params
    if case.module == 'host_devices_info':
        return dict(params, root=root)
    return dict(params, root=root)


@pytest.mark.parametrize('case', [_manifest_case(case) for case in CASES], ids=lambda case: case.ident)
def test_hostile_input_is_refused_naming_field_and_value_and_nothing_is_written(
        case, capsys, tmp_path, monkeypatch, libvirt_writes, shared_desktop):
    root, sysfs_writes = _host(case, tmp_path, monkeypatch, shared_desktop)
    before = snapshot(root)
    try:
        params = _params(case, root)
    except AnsibleFilterError as exc:   # the guest role's filter refuses before any module runs
        message, writes, expect = str(exc), 0, case.expect
    else:
        result = run_module(capsys, MODULES[case.module], **params)   # raises on a traceback
        assert result['rc'] == 1 and result.get('failed') is True, result
        assert 'exception' not in result and 'Traceback' not in result['msg'], result
        message, writes = result['msg'], libvirt_writes()
        expect = _expected_fragments(case, params, message)
    for fragment in expect:
        assert fragment in message, '%r not in %r' % (fragment, message[:2000])
    for fragment in case.hidden:
        assert fragment not in message
    assert writes == 0, 'libvirt write calls were made'
    assert sysfs_writes == [], 'sysfs was written'
    if case.module == 'domain_devices':  # a lock kept past the run would make the next run wait for it
        assert _host_lock_is_free(params.get('uri')), 'the run kept the host passthrough lock'
    assert snapshot(root) == before, 'a file changed below the fixture root'
    RESULTS[case.ident] = (case.target if case.target in ('guest', 'passthrough_host') else case.module, True)


def _host_lock_is_free(uri):
    """This test process (where the module ran) has no open file on the host passthrough lock: a lock kept past
    the run would make the next run wait. Other processes (a concurrent test stage) may hold it meanwhile."""
    if not uri:
        return True
    path = os.path.realpath(_guest_lock.lock_path(_guest_lock.lock_dir(uri), 'device-mappings'))
    for fd in os.listdir('/proc/self/fd'):
        try:
            if os.readlink(os.path.join('/proc/self/fd', fd)) in (path, path + ' (deleted)'):
                return False
        except OSError:   # the directory's own fd, closed meanwhile
            continue
    return True


def test_the_catalogue_is_big_enough_and_covers_every_module_and_role():
    targets = collections.Counter(case.target for case in CASES)
    assert len(CASES) >= 80 and len({case.ident for case in CASES}) == len(CASES)
    assert set(targets) == set(MODULES) | {'guest', 'passthrough_host'}, targets


@pytest.mark.parametrize('value', ['br\ud800', '\udfff', 'ok\ud83d'])
def test_lone_surrogates_are_refused_by_the_string_check(value):
    """ansible-core refuses module arguments with lone surrogates before a module runs ("Refusing to deserialize
    an invalid UTF8 string value"); the collection's own check catches them too, for callers that build
    parameters themselves (the engine, filters), naming the field."""
    from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine, _xml
    with pytest.raises(_xml.XMLInputError, match=r'config\[0\]\.source\.network: .* contains U\+D'):
        _xml.check_text_tree({'config': [{'source': {'network': value}}]}, '')
    with pytest.raises(Exception, match='U\\+D'):
        _device_engine.declare([{'kind': 'xml', 'xml': "<watchdog model='%s'/>" % value}], 'g')


INJECTION = "x'/><hostdev mode='subsystem' type='pci'><source><address bus='2'/></source></hostdev><y a='"


def _string_options():
    """(kind, option path, spec) for every string option of the kind table (and of its sources): each string an
    attacker could try to break out of XML with."""
    from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import all_kinds
    from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import Source
    for kind in all_kinds():
        for option, field in kind.fields.items():
            if isinstance(field, Source):
                for variant in field.variants.values():
                    for name, sub in variant.fields.items():
                        if sub.value_type == 'str':
                            source = {key: '/p' for key in (variant.selector,) + variant.needs}
                            yield kind, '%s.%s' % (option, name), dict(
                                kind.example, **{option: dict(source, **{name: INJECTION})})
            elif field.value_type == 'str':
                yield kind, option, dict(kind.example, **{option: INJECTION})


@pytest.mark.parametrize('kind, option, spec', list(_string_options()),
                         ids=lambda value: value.label if hasattr(value, 'label') else value if isinstance(value, str) else '')
def test_xml_injection_through_any_string_is_refused_or_stays_text(kind, option, spec):
    """A string that tries to close its attribute and add a hostdev is either refused naming the option, or stays the
    value it was: the rendered device has no other element and reads back the same string."""
    from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine, _xml
    from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
    try:
        (item,) = _device_engine.declare([spec], 'guest')
    except SpecError as exc:
        assert str(exc).startswith('config[0].%s: ' % option), str(exc)
        field = kind.fields.get(option)
        if field is not None and field.secret:   # a refused secret is named, never shown
            assert INJECTION not in str(exc) and repr(INJECTION)[:20] not in str(exc), str(exc)
        else:
            assert repr(INJECTION)[:20] in str(exc), str(exc)
        return
    # the element as it would be written to libvirt (state rendered masks secrets, so not its output)
    rendered = _xml.parse(_xml.to_string(item.element))
    assert rendered.find('.//hostdev') is None and rendered.find('.//y') is None
    value = kind.parse(rendered)
    for part in option.split('.'):
        value = value[part]
    assert value == INJECTION
