# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Hot-plug and hot-unplug on real running guests (Debian kernel under TCG, private libvirtd)."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml

import live_guest  # noqa: E402  pylint: disable=wrong-import-order,import-error

HOTPLUG = [
    {'kind': 'interface', 'mac': '52:54:00:10:00:01', 'source': {'user': True}, 'model': 'virtio'},
    {'kind': 'interface', 'mac': '52:54:00:10:00:02', 'source': {'user': True}, 'model': 'e1000'},
    {'kind': 'disk', 'target': 'vdb', 'source': {'file': '{image}'}, 'format': 'qcow2'},
    {'kind': 'rng', 'backend': '/dev/urandom'},
    {'kind': 'channel', 'type': 'unix', 'target_type': 'virtio', 'target_name': 'org.qemu.guest_agent.0'},
]


@pytest.fixture(scope='module', params=['pc', 'q35'])
def running_guest(request, boot_files, libvirtd_uri, tmp_path_factory):
    machine = request.param
    workdir = tmp_path_factory.mktemp('live-' + machine)
    name = 'live-' + machine
    console = str(workdir / 'console.log')
    image = str(workdir / 'data.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', image, '16M'], check=True)
    xml = workdir / 'domain.xml'
    xml.write_text(live_guest.domain_xml(name, machine, boot_files[0], boot_files[1], console), encoding='utf-8')
    virsh = ['virsh', '-q', '-c', libvirtd_uri]
    subprocess.run(virsh + ['define', str(xml)], check=True, capture_output=True)
    subprocess.run(virsh + ['start', name], check=True, capture_output=True)
    if not live_guest.wait_for(console, live_guest.READY):
        pytest.fail('guest %s did not boot: %s' % (name, open(console, errors='replace').read()[-2000:]))
    yield {'name': name, 'machine': machine, 'console': console, 'image': image}
    subprocess.run(virsh + ['destroy', name], capture_output=True, check=False)
    subprocess.run(virsh + ['undefine', name], capture_output=True, check=False)


def devices(uri, name, inactive):
    args = ['virsh', '-q', '-c', uri, 'dumpxml'] + (['--inactive'] if inactive else []) + [name]
    return _xml.parse(subprocess.run(args, check=True, capture_output=True, text=True).stdout).find('devices')


def hotplug_config(guest):
    return [dict(spec, source={'file': guest['image']}) if spec['kind'] == 'disk' else spec for spec in HOTPLUG]


def addresses(devs):
    """(tag, identity) -> PCI address, for the devices we hot-plug."""
    found = {}
    for element in devs:
        ident = None
        if element.tag == 'interface':
            ident = element.find('mac').get('address')
        elif element.tag == 'disk':
            ident = element.find('target').get('dev')
        elif element.tag == 'rng':
            ident = 'rng'
        elif element.tag == 'channel':
            ident = element.find('target').get('name')
        if ident is not None:
            address = element.find('address')
            found[(element.tag, ident)] = dict(address.attrib) if address is not None else None
    return found


def test_hotplug_and_unplug_keep_live_and_config_in_step(running_guest, libvirtd_uri, run_module):
    name, config = running_guest['name'], hotplug_config(running_guest)
    args = {'uri': libvirtd_uri, 'domain': name, 'config': config}

    check = run_module('domain_devices', args, check_mode=True)
    assert check['changed'] is True and all(c['live'] and c['config'] for c in check['commands']), check
    plugged = run_module('domain_devices', args)
    assert plugged.get('failed') is not True, plugged['msg']
    assert [c['op'] for c in plugged['commands']] == ['attach'] * 5
    assert all(c['live'] and c['config'] for c in plugged['commands'])
    assert plugged['restart_required'] is False and plugged['waiting_for_restart'] == []

    live, persistent = addresses(devices(libvirtd_uri, name, False)), addresses(devices(libvirtd_uri, name, True))
    assert len(live) == 5 and live == persistent   # same MACs, same PCI (and virtio-serial) addresses

    again = run_module('domain_devices', args)
    assert again['changed'] is False and again['commands'] == []

    # removing a disk from a running guest needs consent (docs/domain_devices.md, "Running guests")
    unplugged = run_module('domain_devices', dict(args, state='deleted', allow_live_removal=['disk']))
    assert unplugged.get('failed') is not True, unplugged
    assert [c['op'] for c in unplugged['commands']] == ['detach'] * 5
    assert addresses(devices(libvirtd_uri, name, False)) == {} == addresses(devices(libvirtd_uri, name, True))
    assert run_module('domain_devices', dict(args, state='deleted'))['changed'] is False


def test_video_and_sound_wait_for_a_restart(running_guest, libvirtd_uri, run_module):
    name = running_guest['name']
    cold = [{'kind': 'sound', 'model': 'ich9'}, {'kind': 'video', 'model': 'bochs'}]
    args = {'uri': libvirtd_uri, 'domain': name, 'config': cold}

    for apply_mode in ('live', 'both'):
        refused = run_module('domain_devices', dict(args, apply=apply_mode))
        assert refused['failed'] is True and 'cannot be changed on the running guest' in refused['msg']
        assert 'sound model ich9' in refused['msg']

    result = run_module('domain_devices', args)
    assert result['changed'] is True and result['restart_required'] is True
    assert len(result['waiting_for_restart']) == 2 and 'sound model ich9' in result['waiting_for_restart']
    assert all(c['config'] and not c['live'] for c in result['commands'])
    assert devices(libvirtd_uri, name, False).find('sound') is None
    assert devices(libvirtd_uri, name, True).find('sound') is not None

    # nothing left to write, but the guest still waits for its restart: say so, report no change
    again = run_module('domain_devices', args)
    assert again['changed'] is False and again['restart_required'] is True

    restarted = run_module('domain_devices', dict(args, restart='if_required', restart_timeout=90))
    assert restarted.get('failed') is not True, restarted
    assert restarted['restarted'] is True and restarted['restart_required'] is False
    assert live_guest.wait_for(running_guest['console'], live_guest.POWEROFF)  # it was a graceful shutdown
    assert devices(libvirtd_uri, name, False).find('sound').get('model') == 'ich9'
    assert live_guest.wait_for(running_guest['console'], live_guest.READY, count=2)  # booted again
    # leave the guest as the other tests expect it
    assert run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'state': 'deleted',
                                         'config': [{'kind': 'sound', 'model': 'ich9'}]})['changed'] is True


def test_a_paused_guest_gets_its_definition_now_and_its_devices_later(running_guest, libvirtd_uri, run_module):
    """A paused guest cannot answer an unplug request: the definition changes, the guest keeps the device and
    the result says so (waiting_for_restart); once it runs again, the next run removes it live."""
    name = running_guest['name']
    nic = [{'kind': 'interface', 'mac': '52:54:00:10:00:09', 'source': {'user': True}, 'model': 'virtio'}]
    args = {'uri': libvirtd_uri, 'domain': name, 'config': nic, 'detach_timeout': 6}
    plugged = run_module('domain_devices', args)
    assert plugged.get('changed') is True, plugged.get('msg')
    virsh = ['virsh', '-q', '-c', libvirtd_uri]
    subprocess.run(virsh + ['suspend', name], check=True, capture_output=True)
    try:
        paused = run_module('domain_devices', dict(args, state='deleted'))
        assert paused.get('failed') is not True, paused.get('msg')
        assert paused['guest_state'] == 'paused' and 'detach' not in paused['libvirt_calls']
        assert paused['waiting_for_restart'] == ['interface mac 52:54:00:10:00:09']
        assert '52:54:00:10:00:09' not in _xml.to_string(devices(libvirtd_uri, name, True))
        assert '52:54:00:10:00:09' in _xml.to_string(devices(libvirtd_uri, name, False))
    finally:
        subprocess.run(virsh + ['resume', name], check=True, capture_output=True)
    released = run_module('domain_devices', dict(args, state='deleted', detach_timeout=60))
    assert released.get('changed') is True and released['waiting_for_restart'] == [], released.get('msg')
    assert '52:54:00:10:00:09' not in _xml.to_string(devices(libvirtd_uri, name, False))


def test_q35_without_a_free_slot_says_how_to_fix_it(running_guest, libvirtd_uri, run_module):
    if running_guest['machine'] != 'q35':
        pytest.skip('PCIe root ports are a q35 matter')
    name = running_guest['name']
    nics = [{'kind': 'interface', 'mac': '52:54:00:20:00:%02x' % index, 'source': {'user': True}, 'model': 'virtio'}
            for index in range(12)]
    args = {'uri': libvirtd_uri, 'domain': name, 'config': nics}
    try:
        both = run_module('domain_devices', dict(args, apply='both'))
        assert both['failed'] is True and 'did not take effect on the running guest' in both['msg'], both['msg']
        warnings = str(both.get('warnings'))
        assert 'has no free hot-plug slot' in warnings and 'pcie-root-port' in warnings
        full = run_module('domain_devices', args)
        assert full.get('failed') is not True, full.get('msg')
        # the definition has every NIC (for the next boot); the ones QEMU had no slot for are named
        defined = [el for el in devices(libvirtd_uri, name, True).iter('mac') if '52:54:00:20' in el.get('address')]
        live = [el for el in devices(libvirtd_uri, name, False).iter('mac') if '52:54:00:20' in el.get('address')]
        assert len(defined) == 12 and 0 < len(live) < 12
        assert full['restart_required'] is True and len(full['waiting_for_restart']) == 12 - len(live)
    finally:
        cleanup = run_module('domain_devices', dict(args, state='deleted'))
        assert cleanup.get('failed') is not True, cleanup.get('msg')
