# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The reconcile engine on XML fixtures: every state on every kind, identity, preservation, errors."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine as engine
from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import Reading, kind_of_element

# A definition as libvirt stores it, with hand-made customizations the module does not manage.
DOMAIN = """
<domain type='kvm'>
  <name>web01</name>
  <uuid>3f0c1a52-6a47-4a2b-8f7e-3d1e4a2b9c11</uuid>
  <memory unit='KiB'>1048576</memory>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='none' discard='unmap'/>
      <source file='/var/lib/libvirt/images/web01.qcow2'/>
      <target dev='vda' bus='virtio'/>
      <boot order='1'/>
      <iotune><total_iops_sec>500</total_iops_sec></iotune>
      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>
    </disk>
    <controller type='pci' index='0' model='pcie-root'/>
    <controller type='usb' index='0' model='qemu-xhci'>
      <address type='pci' domain='0x0000' bus='0x02' slot='0x00' function='0x0'/>
    </controller>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:01'/>
      <source network='default'/>
      <model type='virtio'/>
      <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:aa:bb:02'/>
      <source bridge='br0'/>
      <model type='e1000'/>
      <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>
    </interface>
    <input type='mouse' bus='ps2'/>
    <input type='tablet' bus='usb'><address type='usb' bus='0' port='1'/></input>
    <rng model='virtio'>
      <backend model='random'>/dev/random</backend>
      <address type='pci' domain='0x0000' bus='0x06' slot='0x00' function='0x0'/>
    </rng>
    <hostdev mode='subsystem' type='pci' managed='yes'>
      <source><address domain='0x0000' bus='0x65' slot='0x00' function='0x0'/></source>
      <rom bar='on'/>
      <address type='pci' domain='0x0000' bus='0x07' slot='0x00' function='0x0'/>
    </hostdev>
    <watchdog model='i6300esb' action='reset'/>
    <memballoon model='virtio'/>
  </devices>
  <seclabel type='dynamic' model='apparmor' relabel='yes'/>
</domain>
"""


def run(config, state='merged', xml=DOMAIN, name='web01', overridden_kinds=None):
    return engine.plan(xml, engine.declare(config, name), state, overridden_kinds)


def devices(text):
    return _xml.parse(text).find('devices')


def find(text, tag, attr_path, value):
    for element in devices(text).iter(tag):
        path, _sep, attr = attr_path.rpartition('@')
        node = _xml.child(element, path)
        if node is not None and node.get(attr) == value:
            return element
    return None


# Per kind: a new device (attach), the existing one as it is (no change), the existing one with one
# option changed (update). Each row is checked under merged, replaced and deleted below.
CASES = {
    'interface': dict(
        new={'kind': 'interface', 'source': {'network': 'lab'}, 'model': 'e1000e'},
        same={'kind': 'interface', 'mac': '52:54:00:aa:bb:01', 'source': {'network': 'default'}, 'model': 'virtio'},
        changed={'kind': 'interface', 'mac': '52:54:00:aa:bb:01', 'source': {'network': 'default'}, 'model': 'rtl8139'},
        locate=('interface', 'mac@address', '52:54:00:aa:bb:01')),
    'disk': dict(
        new={'kind': 'disk', 'target': 'sdb', 'bus': 'sata', 'device': 'cdrom', 'readonly': True},
        same={'kind': 'disk', 'target': 'vda', 'source': {'file': '/var/lib/libvirt/images/web01.qcow2'},
              'format': 'qcow2'},
        changed={'kind': 'disk', 'target': 'vda', 'source': {'file': '/var/lib/libvirt/images/web01.qcow2'},
                 'format': 'qcow2', 'readonly': True},
        locate=('disk', 'target@dev', 'vda')),
    'rng': dict(
        new={'kind': 'rng', 'backend': 'builtin'},
        same={'kind': 'rng', 'backend': '/dev/random'},
        changed={'kind': 'rng', 'backend': '/dev/urandom'},
        locate=('rng', '@model', 'virtio')),
    'hostdev': dict(
        new={'kind': 'hostdev', 'address': '0000:66:00.1'},
        same={'kind': 'hostdev', 'address': '0000:65:00.0', 'managed': True},
        changed={'kind': 'hostdev', 'address': '0000:65:00.0', 'managed': False},
        locate=('hostdev', 'source/address@bus', '0x65')),
    'xml': dict(
        new={'kind': 'xml', 'xml': "<sound model='ich9'/>"},
        same={'kind': 'xml', 'xml': "<watchdog model='i6300esb' action='reset'/>"},
        changed={'kind': 'xml', 'xml': "<watchdog model='i6300esb' action='poweroff'/>"},
        locate=('watchdog', '@model', 'i6300esb')),
}


@pytest.mark.parametrize('kind', sorted(CASES))
@pytest.mark.parametrize('state', ['merged', 'replaced', 'overridden'])
def test_each_state_each_kind_converges(kind, state):
    case = CASES[kind]
    for spec in (case['new'], case['changed']):
        first = run([spec], state)
        assert first.changed, (state, spec)
        assert first.new_xml is not None
        # applying the same declaration to the result changes nothing: idempotent
        again = engine.plan(first.new_xml, engine.declare([spec], 'web01'), state)
        assert not again.changed, again.commands
        assert again.new_xml is None
    assert not run([case['same']], 'merged').changed


@pytest.mark.parametrize('kind', sorted(CASES))
def test_deleted_removes_only_the_listed_device(kind):
    case = CASES[kind]
    result = run([case['same']], 'deleted')
    assert [command['op'] for command in result.commands] == ['detach']
    assert find(result.new_xml, *case['locate']) is None
    assert len(devices(result.new_xml)) == len(devices(DOMAIN)) - 1
    assert not engine.plan(result.new_xml, engine.declare([case['same']], 'web01'), 'deleted').changed
    assert not run([case['new']], 'deleted').changed  # absent already


def test_update_keeps_address_and_unmanaged_parts():
    result = run([CASES['disk']['changed']], 'replaced')
    disk = find(result.new_xml, 'disk', 'target@dev', 'vda')
    assert disk.find('readonly') is not None
    assert disk.find('boot') is None                                  # an option (boot_order), unlisted: reset
    assert disk.find('iotune/total_iops_sec').text == '500'           # hand-made, no option: kept
    assert disk.find('driver').get('discard') is None                 # an option, unlisted: reset
    assert disk.find('address').get('bus') == '0x04'                  # guest-visible address kept
    # everything outside <devices> is kept as well
    assert _xml.parse(result.new_xml).find('seclabel').get('model') == 'apparmor'


def test_replaced_resets_unlisted_options_but_merged_keeps_them():
    readonly = run([CASES['disk']['changed']], 'merged').new_xml
    spec = {'kind': 'disk', 'target': 'vda', 'source': {'file': '/var/lib/libvirt/images/web01.qcow2'}}
    assert not engine.plan(readonly, engine.declare([spec], 'web01'), 'merged').changed
    disk = find(engine.plan(readonly, engine.declare([spec], 'web01'), 'replaced').new_xml, 'disk', 'target@dev', 'vda')
    assert disk.find('readonly') is None                     # listed nowhere: reset
    assert disk.find('iotune/total_iops_sec').text == '500'  # not an option: kept
    assert disk.find('target').get('bus') == 'virtio'        # libvirt derives it when absent: left alone
    assert disk.find('driver').get('type') == 'qcow2'        # likewise the format
    # an interface model is filled in by libvirt when absent, so replaced leaves it too
    nic = {'kind': 'interface', 'mac': '52:54:00:aa:bb:01', 'source': {'network': 'default'}}
    assert not run([nic], 'replaced').changed


def test_overridden_narrowed_removes_other_devices_of_the_kinds_named_but_not_implicit_ones():
    result = run([{'kind': 'interface', 'mac': '52:54:00:aa:bb:02', 'source': {'bridge': 'br0'}, 'model': 'e1000'},
                  {'kind': 'xml', 'xml': "<input type='tablet' bus='usb'/>"}], 'overridden',
                 overridden_kinds=['interface', 'input'])
    macs = [el.get('address') for el in devices(result.new_xml).iter('mac')]
    assert macs == ['52:54:00:aa:bb:02']
    # the PS/2 mouse is implicit: reported, not removed; disks were not named: untouched
    assert result.implicit == [{'kind': 'input', 'type': 'mouse', 'bus': 'ps2', 'class': 'emulated'}]
    assert find(result.new_xml, 'disk', 'target@dev', 'vda') is not None
    assert {c['op'] for c in result.commands} == {'detach'}


def test_interface_without_mac_gets_a_stable_mac_and_matches_on_rerun():
    spec = {'kind': 'interface', 'source': {'network': 'lab'}, 'model': 'virtio'}
    first = run([spec])
    second = run([spec])
    assert first.commands[0]['key'] == second.commands[0]['key']
    assert not engine.plan(first.new_xml, engine.declare([spec], 'web01'), 'merged').changed
    # a different domain gets a different MAC
    assert run([spec], name='web02').commands[0]['key'] != first.commands[0]['key']


ONE_VIRTIO_NIC = ("<domain type='qemu'><name>web01</name><devices>"
                  "<interface type='network'><mac address='52:54:00:aa:bb:0a'/><source network='default'/>"
                  "<model type='virtio'/></interface>"
                  "<controller type='scsi' index='0' model='lsilogic'/>"
                  "<input type='tablet' bus='usb'/></devices></domain>")


@pytest.mark.parametrize('state', ['merged', 'replaced', 'overridden'])
def test_a_loosely_found_device_is_adopted_only_when_it_agrees_on_every_declared_option(state):
    e1000 = {'kind': 'interface', 'source': {'network': 'default'}, 'model': 'e1000'}
    virtio = {'kind': 'interface', 'source': {'network': 'default'}, 'model': 'virtio'}
    # the case: the hand-made virtio NIC stays virtio, the e1000 is added, in either order
    for config in ([e1000, virtio], [virtio, e1000]):
        result = run(config, state, xml=ONE_VIRTIO_NIC, overridden_kinds=['interface'])
        assert [(c['op'], c['kind']) for c in result.commands] == [('attach', 'interface')], result.commands
        nics = {el.find('mac').get('address'): el.find('model').get('type')
                for el in devices(result.new_xml).iter('interface')}
        assert nics['52:54:00:aa:bb:0a'] == 'virtio' and sorted(nics.values()) == ['e1000', 'virtio']
        assert not run(config, state, xml=result.new_xml, overridden_kinds=['interface']).changed
    # adopt: agrees on every declared option (no MAC: the existing one is kept)
    assert not run([virtio], state, xml=ONE_VIRTIO_NIC, overridden_kinds=['interface']).changed
    # never change: a controller or input found only by type keeps its model / bus; the spec is added
    for spec, tag in (({'kind': 'controller', 'type': 'scsi', 'model': 'virtio-scsi'}, 'controller'),
                      ({'kind': 'input', 'type': 'tablet', 'bus': 'virtio'}, 'input')):
        result = run([spec], state, xml=ONE_VIRTIO_NIC, overridden_kinds=[tag])
        ops = [c['op'] for c in result.commands]
        # overridden removes the tablet; the first SCSI controller is libvirt's own (implicit)
        replaced_too = state == 'overridden' and tag == 'input'
        assert ops == (['attach', 'detach'] if replaced_too else ['attach']), result.commands
        if not replaced_too:
            assert _xml.to_string(devices(ONE_VIRTIO_NIC).find(tag)) in result.new_xml   # untouched
        adopted = run([dict(spec, model='lsilogic') if tag == 'controller' else dict(spec, bus='usb')], state,
                      xml=ONE_VIRTIO_NIC, overridden_kinds=[tag])
        assert not adopted.changed, adopted.commands


@pytest.mark.parametrize('state', ['merged', 'replaced', 'overridden'])
def test_a_nic_this_module_added_without_mac_keeps_its_model_when_another_model_takes_its_position(state):
    """Trial 7: a virtio NIC added from a spec without MAC has the MAC made for the first NIC on its network; a
    later list [e1000, virtio] makes that same MAC for the e1000. The MAC is no promise: the virtio NIC is not
    turned into an e1000, the e1000 is added with a MAC no device has, and the next run changes nothing."""
    e1000 = {'kind': 'interface', 'source': {'network': 'default'}, 'model': 'e1000'}
    virtio = {'kind': 'interface', 'source': {'network': 'default'}, 'model': 'virtio'}
    bare = "<domain type='qemu'><name>web01</name><devices/></domain>"
    first = run([virtio], 'merged', xml=bare)
    (made,) = [el.find('mac').get('address') for el in devices(first.new_xml).iter('interface')]
    result = run([e1000, virtio], state, xml=first.new_xml, overridden_kinds=['interface'])
    assert [(c['op'], c['kind']) for c in result.commands] == [('attach', 'interface')], result.commands
    nics = {el.find('mac').get('address'): el.find('model').get('type')
            for el in devices(result.new_xml).iter('interface')}
    assert nics[made] == 'virtio' and sorted(nics.values()) == ['e1000', 'virtio'] and len(nics) == 2
    assert result.commands[0]['key'] != 'mac ' + made
    assert not run([e1000, virtio], state, xml=result.new_xml, overridden_kinds=['interface']).changed


def test_the_most_specific_loose_spec_chooses_first():
    two = ONE_VIRTIO_NIC.replace('</devices>', "<interface type='network'><mac address='52:54:00:aa:bb:0b'/>"
                                 "<source network='default'/><model type='virtio'/><driver queues='4'/>"
                                 "</interface></devices>")
    # the vaguer spec comes first but does not take the only NIC with 4 queues
    config = [{'kind': 'interface', 'source': {'network': 'default'}, 'model': 'virtio'},
              {'kind': 'interface', 'source': {'network': 'default'}, 'model': 'virtio', 'queues': 4}]
    assert not run(config, 'merged', xml=two).changed


def test_raw_xml_may_not_move_a_device():
    moved = ("<watchdog model='i6300esb' action='reset'>"
             "<address type='pci' domain='0x0000' bus='0x09' slot='0x00' function='0x0'/></watchdog>")
    existing = DOMAIN.replace("<watchdog model='i6300esb' action='reset'/>", moved.replace('0x09', '0x08'))
    with pytest.raises(SpecError, match='would move watchdog'):
        run([{'kind': 'xml', 'xml': moved}], xml=existing)


def test_gathered_feeds_back_without_change():
    gathered = engine.gather(DOMAIN)
    classes = {item.get('mac') or item['kind']: item['class'] for item in gathered}
    assert classes['52:54:00:aa:bb:02'] == 'emulated' and classes['52:54:00:aa:bb:01'] == 'virtio'
    # vda has parts no option describes (boot order, iotune): shown losslessly as xml, still classed
    (vda,) = [item for item in gathered if item['kind'] == 'xml' and "dev=\"vda\"" in item['xml']]
    assert vda['class'] == 'virtio'
    hostdevs = [item for item in gathered if item['kind'] == 'hostdev']
    assert [(item['class'], item['rom_bar']) for item in hostdevs] == [('passthrough', True)]
    for state in ('merged', 'replaced', 'overridden'):
        result = engine.plan(DOMAIN, engine.declare(gathered, 'web01'), state)
        assert not result.changed, (state, result.commands)


def test_gathered_without_implicit_leaves_out_what_libvirt_adds_and_overridden_keeps_it():
    xml = DOMAIN.replace('</devices>', "<controller type='pci' index='0' model='pci-root'/>"
                                       "<input type='mouse' bus='ps2'/><memballoon model='virtio'/></devices>")
    everything, short = engine.gather(xml), engine.gather(xml, implicit=False)
    left_out = [item for item in everything if item not in short]
    assert {item['kind'] for item in left_out} >= {'controller', 'input', 'memballoon'}
    result = engine.plan(xml, engine.declare(short, 'web01'), 'overridden')
    assert not result.changed and len(result.implicit) == len(left_out)


def test_verify_reports_what_libvirt_did_not_keep():
    result = run([CASES['disk']['new']])
    assert engine.verify(result, result.new_xml) == []
    assert engine.verify(result, DOMAIN) == ['config[0] (disk target sdb) is missing from the definition libvirt kept']
    dropped = result.new_xml.replace('<readonly/>', '')
    assert engine.verify(result, dropped) == ['config[0] (disk target sdb): libvirt kept readonly=False, asked True']


def test_rendered_needs_no_domain_xml():
    rendered = engine.render(engine.declare([CASES['hostdev']['new'], CASES['rng']['new']], 'web01'))
    hostdev = _xml.parse(rendered[0])
    assert hostdev.get('mode') == 'subsystem' and hostdev.get('managed') == 'yes'
    assert hostdev.find('source/address').attrib == {'domain': '0x0000', 'bus': '0x66', 'slot': '0x00',
                                                     'function': '0x1'}
    assert _xml.parse(rendered[1]).find('backend').get('model') == 'builtin'


@pytest.mark.parametrize('address, expected', [
    ('0000:01:00.0', '0000:01:00.0'),
    ('01:00.0', '0000:01:00.0'),
    ('10000:3B:1f.7', '10000:3b:1f.7'),   # 5-digit PCI domains exist on large hosts
])
def test_pci_addresses_accepted(address, expected):
    (item,) = engine.declare([{'kind': 'hostdev', 'address': address}], 'g')
    assert item.spec['address'] == expected


BAD_INPUT = [
    ([{'kind': 'gpu'}], "config[0].kind: 'gpu' is not one of"),
    ([{'kind': 'interface', 'source': {'network': 'default'}, 'model': 'e1000 x'}],
     "config[0].model: 'e1000 x' is not valid"),
    ([{'kind': 'interface', 'source': {'network': 'default'}, 'mac': '52:54:00:zz:00:01'}],
     "config[0].mac: '52:54:00:zz:00:01' is not a MAC address"),
    ([{'kind': 'hostdev', 'address': '01:00'}], "config[0].address: '01:00' is not a PCI address"),
    ([{'kind': 'hostdev', 'address': '0000:01:20.0'}], "'0000:01:20.0' is not a PCI address"),
    ([{'kind': 'hostdev', 'address': '0000:01:00.8'}], "'0000:01:00.8' is not a PCI address"),
    ([{'kind': 'hostdev', 'address': '../x'}], "'../x' is not a PCI address"),
    ([{'kind': 'disk', 'target': 'vdb'}, {'kind': 'disk', 'target': 'vdb', 'bus': 'sata'}],
     'config[1]: declares the same device as config[0] (disk target vdb)'),
    ([{'kind': 'xml', 'xml': '<disk/><disk/>'}], 'config[0].xml: not well-formed XML'),
    ([{'kind': 'xml', 'xml': '<domain/>'}], 'config[0].xml: <domain> is not a libvirt device element'),
    ([{'kind': 'xml', 'xml': 'hello'}], 'config[0].xml: not well-formed XML'),
    ([{'kind': 'interface', 'source': {'network': 'default'}, 'target': 'vdb'}],
     'config[0]: option(s) target do not belong to interface'),
    ([{'kind': 'interface', 'source': {'network': 'a', 'bridge': 'b'}}], 'config[0].source: '),
    ([{'kind': 'interface', 'model': 'virtio'}], 'config[0]: interface requires option source'),
    ([{'kind': 'disk', 'target': 'vdb', 'source': {'volume': 'v1'}}], 'a volume source also needs: pool'),
    ([{'kind': 'disk', 'target': 'nvme0'}], "config[0].target: 'nvme0' is not valid"),
    ([{'kind': 'rng', 'backend': '/etc/passwd'}], "config[0].backend: '/etc/passwd' is not one of"),
]


@pytest.mark.parametrize('config, message', BAD_INPUT)
def test_bad_input_names_field_and_value(config, message):
    with pytest.raises(SpecError) as info:
        engine.declare(config, 'web01')
    assert message in str(info.value)


def test_xml_with_entities_is_not_expanded():
    evil = '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><watchdog model="&e;"/>'
    with pytest.raises(SpecError):
        engine.declare([{'kind': 'xml', 'xml': evil}], 'g')


def test_upper_case_macs_and_uuids_are_accepted_and_stored_as_libvirt_stores_them():
    typed, raw, mdev = engine.declare([
        {'kind': 'interface', 'source': {'network': 'default'}, 'mac': '52:54:00:AA:BB:0C'},
        {'kind': 'xml', 'xml': "<interface type='bridge'><mac address='52:54:00:AA:BB:D'/><source bridge='br0'/>"
                               "</interface>"},
        {'kind': 'hostdev', 'type': 'mdev', 'model': 'vfio-pci', 'uuid': 'C2177883F1BB47F0914D32A22E3A8804'}], 'g')
    assert typed.spec['mac'] == '52:54:00:aa:bb:0c' and typed.key == ('interface', 'mac', '52:54:00:aa:bb:0c')
    assert raw.element.find('mac').get('address') == '52:54:00:aa:bb:0d'
    assert raw.key == ('interface', 'mac', '52:54:00:aa:bb:0d')
    assert mdev.spec['uuid'] == 'c2177883-f1bb-47f0-914d-32a22e3a8804'


def test_a_raw_xml_nic_without_mac_is_refused_up_front():
    with pytest.raises(SpecError, match=r"config\[0\]\.xml: an <interface> given as XML needs <mac address"):
        engine.declare([{'kind': 'xml', 'xml': "<interface type='network'><source network='default'/></interface>"}],
                       'g')


def test_raw_xml_hostdev_in_another_notation_is_the_same_device():
    with pytest.raises(SpecError, match=r'config\[1\]: declares the same device as config\[0\]'):
        engine.declare([{'kind': 'hostdev', 'address': '0000:00:1f.6'},
                        {'kind': 'xml', 'xml': "<hostdev mode='subsystem' type='pci'><source>"
                                               "<address slot='037' function='6'/></source></hostdev>"}], 'g')


def test_a_vnc_password_longer_than_libvirt_takes_is_refused_naming_the_option_not_the_value():
    ten = 'abcdefghij'
    with pytest.raises(SpecError, match=r'config\[1\]\.password: a VNC password has at most 8 characters') as err:
        engine.declare([{'kind': 'rng', 'backend': 'builtin'}, {'kind': 'graphics', 'type': 'vnc', 'password': ten}],
                       'web01')
    assert ten not in str(err.value)
    assert engine.declare([{'kind': 'graphics', 'type': 'vnc', 'password': ten[:8]}], 'web01')
    assert engine.declare([{'kind': 'graphics', 'type': 'spice', 'password': ten}], 'web01')   # SPICE: no limit


def test_any_nic_model_libvirt_passes_to_qemu_round_trips_classified_and_pcspk_too():
    xml = ("<domain type='qemu'><name>web01</name><devices>%s<sound model='pcspk'/></devices></domain>" % ''.join(
        "<interface type='network'><mac address='52:54:00:00:00:%02x'/><source network='default'/>"
        "<model type='%s'/></interface>" % (n, model)
        for n, model in enumerate(('virtio', 'e1000', 'pcnet', 'ne2k_pci', 'rtl8139', 'virtio-transitional'))))
    gathered = engine.gather(xml)
    assert [item['class'] for item in gathered if item['kind'] == 'interface'] == [
        'virtio', 'emulated', 'emulated', 'emulated', 'emulated', 'virtio']
    assert all(item['kind'] != 'xml' for item in gathered)          # all typed, the pcspk sound too
    for state in ('merged', 'replaced', 'overridden'):
        assert not engine.plan(xml, engine.declare(gathered, 'web01'), state).changed


def test_a_raw_device_meets_the_limits_of_its_kind_before_anything_is_read():
    """Trial 7: a 10-character VNC password in raw XML was refused only by libvirt's define."""
    with pytest.raises(SpecError) as caught:
        engine.declare([{'kind': 'xml', 'xml': "<graphics type='vnc' autoport='yes' passwd='0123456789'/>"}], 'g')
    assert caught.value.where == 'config[0].xml' and 'at most 8 characters' in str(caught.value)
    assert '0123456789' not in str(caught.value)


def test_a_raw_device_leaves_what_libvirt_fills_in_to_libvirt():
    """Trial 7: a raw <graphics> without port was written again on every run (libvirt stores port -1)."""
    stored = ("<domain type='qemu'><name>g</name><devices><graphics type='vnc' port='-1' autoport='yes'>"
              "<listen type='address'/></graphics></devices></domain>")
    for state in ('merged', 'replaced', 'overridden'):
        assert not run([{'kind': 'xml', 'xml': "<graphics type='vnc' autoport='yes'/>"}], state, xml=stored).changed


def test_a_character_device_log_is_typed_and_round_trips():
    """Trial 7: OpenStack's consoles log to a file (<log file append>): typed, not raw XML, and fed back a no-op."""
    xml = ("<domain type='qemu'><name>g</name><devices><serial type='pty'>"
           "<log file='/var/lib/nova/instances/x/console.log' append='off'/><target type='isa-serial' port='0'/>"
           "</serial></devices></domain>")
    (serial,) = engine.gather(xml)
    assert serial['kind'] == 'serial' and serial['log_file'].endswith('console.log') and serial['log_append'] is False
    assert not run([serial], 'replaced', xml=xml).changed


def test_a_plan_takes_the_declared_elements_it_adds_and_planning_again_gives_the_same_definition():
    # docs/performance.md: a declared device is rendered only for a plan that adds it, moved into that plan (not
    # copied), and rendered again for the next plan; the guest's devices that already agree are never rendered
    config = [CASES['disk']['same'], CASES['disk']['new'], CASES['interface']['new'], CASES['xml']['new']]
    declared = engine.declare(config, 'web01')
    assert [item._element is None for item in declared] == [True, True, True, False]  # pylint: disable=protected-access
    first = engine.plan(DOMAIN, declared, 'merged')
    added = [change.new for change in first.changes]
    assert [change.op for change in first.changes] == ['attach', 'attach', 'attach']
    assert [item._element is None for item in declared] == [True, True, True, False]  # pylint: disable=protected-access
    assert all(new.getroottree().getroot() is first.tree for new in added)
    assert declared[3]._element.getroottree().getroot() is not first.tree  # pylint: disable=protected-access
    for item in declared:
        item.forget_element()
    assert declared[3]._element is not None  # pylint: disable=protected-access
    again = engine.plan(DOMAIN, declared, 'merged')
    assert again.new_xml == first.new_xml
    assert all(change.new.getroottree().getroot() is again.tree for change in again.changes)


def test_reading_an_element_on_demand_gives_what_a_full_parse_gives():
    typed = [(kind_of_element(el), el) for el in engine.device_elements(devices(DOMAIN))]
    typed = [(kind, el) for kind, el in typed if kind is not None and hasattr(kind, 'fields')]
    assert len(typed) >= 4
    for kind, element in typed:
        parsed, reading = kind.parse(element), Reading(kind, element)
        assert dict(reading) == parsed
        for option in ['kind', 'no_such_option'] + list(kind.fields):
            assert (option in reading) == (option in parsed)
            assert reading.get(option, 'absent') == parsed.get(option, 'absent')
