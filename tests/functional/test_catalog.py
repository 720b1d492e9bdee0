# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every kind of the catalog: its documented example validates against libvirt's RNG schema
(virt-xml-validate) and converges check -> apply -> apply on a real libvirtd."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import all_kinds

# More than the one documented example for the kinds with several forms.
EXTRA_EXAMPLES = [
    {'kind': 'interface', 'source': {'network': 'default'}, 'model': 'e1000'},
    {'kind': 'interface', 'source': {'bridge': 'br0'}, 'model': 'rtl8139', 'link_state': 'down'},
    {'kind': 'interface', 'source': {'direct': 'eth0', 'mode': 'bridge'}, 'model': 'virtio'},
    {'kind': 'interface', 'source': {'network': 'jumbo'}, 'model': 'virtio', 'mtu': 9000},
    {'kind': 'interface', 'source': {'user': True}, 'model': 'e1000e'},
    {'kind': 'interface', 'source': {'hostdev': '0000:3b:02.1'}, 'mac': '52:54:00:5e:00:01', 'vlan': 42,
     'managed': True},
    {'kind': 'interface', 'source': {'network': 'default'}, 'model': 'virtio', 'driver': 'vhost', 'queues': 4},
    {'kind': 'disk', 'target': 'sdb', 'bus': 'sata', 'device': 'cdrom', 'readonly': True},
    {'kind': 'disk', 'target': 'fda', 'bus': 'fdc', 'device': 'floppy'},
    {'kind': 'disk', 'target': 'sdf', 'bus': 'sata', 'source': {'file': '/var/lib/libvirt/images/legacy.img'},
     'format': 'raw'},  # IDE exists on pc machines only: covered by the integration target and round trips
    {'kind': 'disk', 'target': 'sdc', 'bus': 'usb', 'source': {'block': '/dev/null'}},
    {'kind': 'disk', 'target': 'vdc', 'source': {'file': '/var/lib/libvirt/images/fast.raw'}, 'iothread': 1,
     'serial': 'DATA01'},
    {'kind': 'disk', 'target': 'sdd', 'bus': 'scsi', 'source': {'volume': 'vol1', 'pool': 'default'}},
    {'kind': 'controller', 'type': 'usb', 'model': 'qemu-xhci', 'index': 1, 'ports': 8},
    {'kind': 'controller', 'type': 'scsi', 'model': 'virtio-scsi', 'index': 1, 'queues': 2, 'iothread': 2},
    {'kind': 'controller', 'type': 'scsi', 'model': 'lsilogic', 'index': 2},
    {'kind': 'controller', 'type': 'pci', 'model': 'pcie-to-pci-bridge'},
    {'kind': 'controller', 'type': 'virtio-serial', 'index': 1},
    {'kind': 'video', 'model': 'qxl', 'vram': 65536, 'heads': 1},
    {'kind': 'video', 'model': 'virtio', 'accel3d': False},
    {'kind': 'input', 'type': 'keyboard', 'bus': 'virtio'},
    {'kind': 'serial', 'type': 'pty', 'target_type': 'pci-serial', 'port': 1},
    {'kind': 'console', 'type': 'pty', 'target_type': 'serial'},
    {'kind': 'channel', 'type': 'spicevmc', 'target_type': 'virtio', 'target_name': 'com.redhat.spice.0'},
    {'kind': 'graphics', 'type': 'spice', 'autoport': True, 'password': 's3cret-pw'},
    {'kind': 'watchdog', 'model': 'ib700', 'action': 'poweroff'},  # itco needs libvirt >= 9.1
    {'kind': 'filesystem', 'driver': 'path', 'source': {'dir': '/srv/nine'}, 'target': 'nine', 'accessmode': 'mapped',
     'readonly': True},
    {'kind': 'iommu', 'model': 'intel', 'intremap': True, 'caching_mode': True},
    {'kind': 'memballoon', 'model': 'virtio', 'autodeflate': True},
    {'kind': 'tpm', 'model': 'tpm-tis', 'backend': 'passthrough', 'device_path': '/dev/tpm0'},
    {'kind': 'rng', 'backend': 'builtin'},
    {'kind': 'memory', 'model': 'dimm', 'size_mib': 256, 'node': 0},
    {'kind': 'hostdev', 'address': '0000:66:00.1', 'guest_address': '0000:00:10.1'},
]
EXAMPLES = [kind.example for kind in all_kinds()] + EXTRA_EXAMPLES
IDS = ['%02d-%s' % (index, example['kind']) for index, example in enumerate(EXAMPLES)]

# A q35 guest that every example can be defined on: IOThreads for iothread options, shared memory for
# virtiofs, a split I/O APIC for the intel vIOMMU, SPICE graphics for spicevmc channels, memory slots and
# a NUMA cell for memory devices.
BASE = """<domain type='qemu'>
  <name>{name}</name>
  <maxMemory slots='4' unit='MiB'>4096</maxMemory>
  <memory unit='MiB'>256</memory>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <vcpu>1</vcpu>
  <iothreads>2</iothreads>
  <cpu><numa><cell id='0' cpus='0' memory='256' unit='MiB'/></numa></cpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><acpi/><apic/><ioapic driver='qemu'/></features>
  <devices><graphics type='spice' autoport='yes'/>{devices}</devices>
</domain>"""


def _validate(xml_text, tmp_path):
    if shutil.which('virt-xml-validate') is None:
        pytest.fail('virt-xml-validate is missing (Debian package libvirt-clients)')
    path = tmp_path / 'domain.xml'
    path.write_text(xml_text, encoding='utf-8')
    proc = subprocess.run(['virt-xml-validate', str(path), 'domain'], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize('example', EXAMPLES, ids=IDS)
def test_rendered_example_is_valid_libvirt_xml(example, tmp_path):
    rendered = _device_engine.render(_device_engine.declare([example], 'catalog'))
    _validate(BASE.format(name='catalog', devices=''.join(rendered)), tmp_path)


@pytest.mark.parametrize('example', EXAMPLES, ids=IDS)
def test_example_converges_on_libvirtd(example, libvirtd_uri, run_module, virsh, tmp_path):
    name = 'catalog-%s' % tmp_path.name[-20:].replace('[', '').replace(']', '')
    virsh(libvirtd_uri, 'define', '{xml}', xml=BASE.format(name=name, devices=''))
    try:
        # the examples' host devices are not this machine's: the preflight has its own tests
        args = {'uri': libvirtd_uri, 'domain': name, 'config': [example], 'host_checks': False}
        check = run_module('domain_devices', args, check_mode=True)
        assert check.get('changed') is True, check
        applied = run_module('domain_devices', args)
        assert applied.get('changed') is True, applied
        assert [c['op'] for c in applied['commands']] == [c['op'] for c in check['commands']]
        again = run_module('domain_devices', args)
        assert again.get('changed') is False, again
        again_check = run_module('domain_devices', args, check_mode=True)
        assert again_check.get('changed') is False, again_check
        # the class of what was declared is visible in gathered data
        gathered = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'state': 'gathered'})
        # the declared device (typed, or as xml where libvirt added parts no option describes) has the class
        # of the table's class column
        (declared,) = _device_engine.declare([example], name)
        classes = [item['class'] for item in gathered['gathered'] if item['kind'] == example['kind']
                   or item['kind'] == 'xml' and re.match(r'<%s[\s/>]' % declared.tag, item['xml'])]
        assert declared.kind.device_class(declared.spec) in classes, (classes, example)
        assert 's3cret-pw' not in str(gathered) + str(applied)  # secrets never come back
    finally:
        virsh(libvirtd_uri, 'undefine', name, check=False)


def test_every_kind_has_a_documented_example():
    assert all(kind.example for kind in all_kinds())
    classes = {kind.device_class(kind.example) for kind in all_kinds()}
    assert classes == {'emulated', 'virtio', 'passthrough'}


def test_secret_is_redacted_in_views_but_written():
    (item,) = _device_engine.declare([{'kind': 'graphics', 'type': 'vnc', 'password': 'pw1'}], 'g')
    assert item.element.get('passwd') == 'pw1'
    domain = BASE.format(name='g', devices=_xml.to_string(item.element))
    result = _device_engine.plan(domain, _device_engine.declare([{'kind': 'graphics', 'type': 'vnc',
                                                                  'password': 'pw2'}], 'g'), 'merged')
    assert result.changed and 'pw2' in result.new_xml
    assert 'pw1' not in result.before_text + str(result.before) and 'pw2' not in result.after_text + str(result.after)
    assert not _device_engine.plan(domain, _device_engine.declare([{'kind': 'graphics', 'type': 'vnc'}], 'g'),
                                   'replaced').changed  # an omitted password is kept, not reset
