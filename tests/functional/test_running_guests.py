# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Running guests that do not cooperate (docs/domain_devices.md, "Running guests").

Real TCG guests under the private libvirtd, one at a time: a guest that never releases a device
(``acpiphp.disable=1``), one that honours the power button slowly, a paused guest, a guest shutting down,
and a manifest with one guest that ignores the power button (stuck) and one that is off. For each: the persistent definition, the
live devices, the result keys and check mode agree; a cold boot gives the declared devices at their
previous addresses; a re-run converges; no guest the module shut down is left off.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml

import live_guest  # noqa: E402  pylint: disable=wrong-import-order,import-error

NIC_A = '52:54:00:21:00:0a'
NIC_B = '52:54:00:21:00:0b'
OLD_NIC = "<interface type='user'><mac address='%s'/><model type='virtio'/></interface>" % NIC_A
NEW_NICS = [{'kind': 'interface', 'mac': NIC_B, 'source': {'user': True}, 'model': 'virtio'}]
SOUND = [{'kind': 'sound', 'model': 'ich9'}]


def boot_guest(uri, boot_files, directory, name, cmdline='', devices='', machine='pc', **options):
    """Define and boot one guest (pc unless ``machine`` says otherwise; ``options`` go to live_guest.domain_xml);
    returns what the tests need to know of it."""
    console = str(directory / (name + '.console'))
    xml = directory / (name + '.xml')
    xml.write_text(live_guest.domain_xml(name, machine, boot_files[0], boot_files[1], console, cmdline=cmdline,
                                         devices=devices, **options), encoding='utf-8')
    virsh_out(uri, 'define', str(xml))
    virsh_out(uri, 'start', name)
    if not live_guest.wait_for(console, live_guest.READY):
        pytest.fail('guest %s did not boot: %s' % (name, open(console, errors='replace').read()[-2000:]))
    return {'name': name, 'console': console, 'uri': uri}


def remove_guest(uri, name):
    for command in ('destroy', 'undefine'):
        subprocess.run(['virsh', '-q', '-c', uri, command, name], capture_output=True, check=False)


@pytest.fixture
def guest(boot_files, libvirtd_uri, tmp_path):
    """guest(name, cmdline='', devices='', machine='pc', **options) boots one guest for this test; it is removed at
    the end."""
    made = []

    def boot(name, cmdline='', devices='', machine='pc', **options):
        made.append(name)
        return boot_guest(libvirtd_uri, boot_files, tmp_path, name, cmdline, devices, machine, **options)

    yield boot
    for name in made:
        remove_guest(libvirtd_uri, name)


@pytest.fixture(scope='module')
def cooperative(boot_files, libvirtd_uri, tmp_path_factory):
    """A guest that releases devices and honours the power button, with NIC A and a data disk vdb (each test
    that uses it changes only its own devices)."""
    directory = tmp_path_factory.mktemp('cooperative')
    image = str(directory / 'data.qcow2')
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', image, '16M'], check=True)
    disk = ("<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/>"
            "<target dev='vdb' bus='virtio'/></disk>" % image)
    yield boot_guest(libvirtd_uri, boot_files, directory, 'cooperative', devices=OLD_NIC + disk)
    remove_guest(libvirtd_uri, 'cooperative')


def virsh_out(uri, *args):
    return subprocess.run(['virsh', '-q', '-c', uri] + list(args), check=True, capture_output=True,
                          text=True).stdout.strip()


def domain(guest_info, inactive):
    args = ['dumpxml'] + (['--inactive'] if inactive else []) + [guest_info['name']]
    return _xml.parse(virsh_out(guest_info['uri'], *args))


def nics(guest_info, inactive):
    """MAC -> PCI address of the guest's NICs (live or persistent)."""
    found = {}
    for element in domain(guest_info, inactive).iter('interface'):
        address = element.find('address')
        found[element.find('mac').get('address')] = dict(address.attrib) if address is not None else None
    return found


def state(guest_info):
    return virsh_out(guest_info['uri'], 'domstate', guest_info['name'])


def wait_state(guest_info, wanted, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and state(guest_info) != wanted:
        time.sleep(0.5)
    return state(guest_info)


def restart_recorded(guest_info):
    """Whether the definition carries the module's record of a shutdown it requested."""
    return 'urn:virtdev:libvirt:restart' in virsh_out(guest_info['uri'], 'dumpxml', '--inactive', guest_info['name'])


def ok(result):
    assert result.get('failed') is not True, result.get('msg')
    return result


def test_a_guest_that_vetoes_an_unplug_gets_the_declared_definition(guest, run_module):
    """overridden swaps a NIC on a guest that never releases devices: the definition is written anyway, the
    stuck NIC is named, a restart brings the guest in line at the addresses it had."""
    vm = guest('veto', cmdline='acpiphp.disable=1', devices=OLD_NIC)
    args = {'uri': vm['uri'], 'domain': vm['name'], 'state': 'overridden', 'config': NEW_NICS, 'overridden_kinds': ['interface'],
            'detach_timeout': 3}

    predicted = ok(run_module('domain_devices', args, check_mode=True))
    assert [(c['op'], c['live'], c['config']) for c in predicted['commands']] == [
        ('attach', True, True), ('detach', True, True)]   # check mode cannot know the guest will refuse

    swapped = ok(run_module('domain_devices', args))
    assert swapped['changed'] is True
    assert [(c['op'], c['live'], c['config']) for c in swapped['commands']] == [
        ('attach', True, True), ('detach', False, True)]
    assert swapped['pending_unplug'] == ['interface mac ' + NIC_A]
    assert swapped['waiting_for_restart'] == ['interface mac ' + NIC_A] and swapped['restart_required'] is True
    assert swapped['guest_state'] == 'running' and swapped['restarted'] is False
    assert [nic['mac'] for nic in swapped['after'] if nic['kind'] == 'interface'] == [NIC_B]
    live, persistent = nics(vm, False), nics(vm, True)
    assert set(live) == {NIC_A, NIC_B} and set(persistent) == {NIC_B}
    assert live[NIC_B] == persistent[NIC_B]          # hot-plugged where it is defined

    again = ok(run_module('domain_devices', args))   # the definition is right; the guest still holds NIC A
    assert again['changed'] is False and again['pending_unplug'] == ['interface mac ' + NIC_A]
    assert again['libvirt_calls'].get('define') is None

    restarted = ok(run_module('domain_devices', dict(args, restart='if_required', restart_timeout=90)))
    assert restarted['restarted'] is True and restarted['restart_required'] is False
    assert restarted['pending_unplug'] == [] and restarted['guest_state'] == 'running'
    assert live_guest.wait_for(vm['console'], live_guest.POWEROFF) and state(vm) == 'running'
    assert nics(vm, False) == {NIC_B: persistent[NIC_B]}   # cold boot: declared NIC at its address

    converged = ok(run_module('domain_devices', args))
    assert converged['changed'] is False and converged['restart_required'] is False
    assert converged['pending_unplug'] == []


def test_a_guest_that_powers_off_slowly_is_restarted_by_the_next_run(guest, run_module):
    vm = guest('slow', cmdline='virtdev_power=slow:8')
    args = {'uri': vm['uri'], 'domain': vm['name'], 'config': SOUND, 'restart': 'if_required',
            'restart_timeout': 2}

    late = run_module('domain_devices', args)
    assert late['failed'] is True and late['shutdown_pending'] is True, late.get('msg')
    assert live_guest.wait_for(vm['console'], live_guest.BUTTON)   # it is shutting down, slowly

    # the next run finds the shutdown still under way, waits for it and starts the guest again
    finished = ok(run_module('domain_devices', dict(args, restart_timeout=60)))
    assert finished['restarted'] is True and finished['changed'] is True
    assert finished['shutdown_pending'] is False and finished['restart_required'] is False
    assert state(vm) == 'running'
    assert live_guest.wait_for(vm['console'], live_guest.POWEROFF)   # it was the graceful shutdown
    assert domain(vm, False).find('devices/sound').get('model') == 'ich9'

    converged = ok(run_module('domain_devices', args))
    assert converged['changed'] is False and converged['restart_required'] is False


def test_a_paused_guest_gets_its_definition_and_no_live_step(cooperative, run_module):
    vm = cooperative
    virsh_out(vm['uri'], 'suspend', vm['name'])
    args = {'uri': vm['uri'], 'domain': vm['name'], 'state': 'overridden', 'config': NEW_NICS, 'overridden_kinds': ['interface'],
            'restart': 'if_required', 'restart_timeout': 30}
    waiting = ['interface mac ' + NIC_B, 'interface mac ' + NIC_A]

    refused = run_module('domain_devices', dict(args, apply='both'))
    assert refused['failed'] is True and 'domain cooperative is paused' in refused['msg'], refused['msg']
    assert set(nics(vm, True)) == {NIC_A}

    predicted = ok(run_module('domain_devices', args, check_mode=True))
    real = ok(run_module('domain_devices', args))
    for result in (predicted, real):
        assert result['changed'] is True and result['guest_state'] == 'paused'
        assert [(c['op'], c['live'], c['config']) for c in result['commands']] == [
            ('attach', False, True), ('detach', False, True)]
        assert result['waiting_for_restart'] == waiting and result['restart_required'] is True
        assert result['restarted'] is False and result['pending_unplug'] == []
    assert not {'attach', 'detach', 'shutdown'} & set(real['libvirt_calls'])   # no live step, no wait
    assert 'is paused: only its definition is changed' in str(real.get('warnings')), real
    assert set(nics(vm, True)) == {NIC_B} and set(nics(vm, False)) == {NIC_A}
    assert state(vm) == 'paused'

    virsh_out(vm['uri'], 'resume', vm['name'])
    resumed = ok(run_module('domain_devices', dict(args, restart='never')))
    assert resumed['changed'] is True and resumed['waiting_for_restart'] == []
    assert [(c['op'], c['live'], c['config']) for c in resumed['commands']] == [
        ('attach', True, False), ('detach', True, False)]
    persistent = nics(vm, True)
    assert nics(vm, False) == persistent and set(persistent) == {NIC_B}   # the defined address, live
    assert ok(run_module('domain_devices', args))['changed'] is False


def test_removing_a_disk_from_a_running_guest_needs_consent(cooperative, run_module):
    vm = cooperative
    args = {'uri': vm['uri'], 'domain': vm['name'], 'state': 'deleted', 'config': [{'kind': 'disk', 'target': 'vdb'}]}

    refused = run_module('domain_devices', dict(args, apply='both'))
    assert refused['failed'] is True and 'needs allow_live_removal' in refused['msg'], refused['msg']

    predicted = ok(run_module('domain_devices', args, check_mode=True, diff=True))
    kept = ok(run_module('domain_devices', args, diff=True))
    for result in (predicted, kept):
        assert result['commands'] == [{'op': 'detach', 'kind': 'disk', 'key': 'target vdb', 'live': False,
                                       'config': True, 'destructive': True}]
        assert result['waiting_for_restart'] == ['disk target vdb'] and result['restart_required'] is True
        assert 'removed from the definition only' in result['diff']['after']
    assert 'detach' not in kept['libvirt_calls']
    assert domain(vm, True).find("devices/disk/target[@dev='vdb']") is None
    assert domain(vm, False).find("devices/disk/target[@dev='vdb']") is not None

    allowed = dict(args, allow_live_removal=['disk'])
    predicted = ok(run_module('domain_devices', allowed, check_mode=True, diff=True))
    removed = ok(run_module('domain_devices', allowed, diff=True))
    for result in (predicted, removed):
        assert result['commands'] == [{'op': 'detach', 'kind': 'disk', 'key': 'target vdb', 'live': True,
                                       'config': False, 'destructive': True}]
        assert result['waiting_for_restart'] == [] and 'hot-unplugged from the running guest' in result['diff']['after']
    assert domain(vm, False).find("devices/disk/target[@dev='vdb']") is None
    assert ok(run_module('domain_devices', allowed))['changed'] is False


def attach_live_only(guest_info, mac, directory):
    """Hot-plug a NIC by hand, on the running guest only (virsh attach-device --live)."""
    xml = directory / ('nic-%s.xml' % mac.replace(':', ''))
    xml.write_text("<interface type='user'><mac address='%s'/><model type='virtio'/></interface>" % mac,
                   encoding='utf-8')
    virsh_out(guest_info['uri'], 'attach-device', guest_info['name'], str(xml), '--live')


def test_addresses_stay_put_with_live_only_devices(cooperative, run_module, tmp_path):
    """A NIC hot-plugged by hand (live only) that merged persists keeps its live address; a NIC the definition
    places at the address a live-only NIC uses is not hot-plugged over it (no "Attempted double use of PCI
    Address") but waits, and takes its defined address once that is free."""
    vm = cooperative
    live_only = '52:54:00:21:00:0c'
    attach_live_only(vm, live_only, tmp_path)
    plugged_at = nics(vm, False)[live_only]
    nic_c = [{'kind': 'interface', 'mac': live_only, 'source': {'user': True}, 'model': 'virtio'}]
    persisted = ok(run_module('domain_devices', {'uri': vm['uri'], 'domain': vm['name'], 'config': nic_c}))
    assert persisted['changed'] is True and persisted['restart_required'] is False
    assert persisted['commands'] == [{'op': 'attach', 'kind': 'interface', 'key': 'mac ' + live_only,
                                      'live': False, 'config': True}]
    assert nics(vm, True)[live_only] == plugged_at          # persisted where the guest sees it

    # another live-only NIC, then a NIC added to the definition only: libvirt gives it the address the live-only
    # NIC uses on the running guest (the lowest free one in the definition)
    intruder, planned = '52:54:00:21:00:0d', '52:54:00:21:00:0e'
    attach_live_only(vm, intruder, tmp_path)
    nic_e = [{'kind': 'interface', 'mac': planned, 'source': {'user': True}, 'model': 'virtio'}]
    args = {'uri': vm['uri'], 'domain': vm['name'], 'config': nic_e}
    ok(run_module('domain_devices', dict(args, apply='config')))
    defined_at = nics(vm, True)[planned]
    assert defined_at == nics(vm, False)[intruder], 'the test needs the collision it is about'
    blocked = ok(run_module('domain_devices', args))
    assert blocked['waiting_for_restart'] == ['interface mac ' + planned] and blocked['changed'] is False
    assert 'is used on the running guest' in str(blocked.get('warnings'))
    assert planned not in nics(vm, False)

    ok(run_module('domain_devices', {'uri': vm['uri'], 'domain': vm['name'], 'state': 'deleted', 'apply': 'live',
                                     'config': [dict(nic_e[0], mac=intruder)]}))
    converged = ok(run_module('domain_devices', args))
    assert converged['changed'] is True and converged['waiting_for_restart'] == []
    assert nics(vm, False)[planned] == defined_at == nics(vm, True)[planned]
    cleanup = ok(run_module('domain_devices', {'uri': vm['uri'], 'domain': vm['name'], 'state': 'deleted',
                                               'config': nic_c + nic_e}))
    assert cleanup['waiting_for_restart'] == []


def test_a_guest_shutting_down_meanwhile_keeps_the_declared_definition(guest, run_module):
    """Someone else shut the guest down while the module waited for an unplug: the definition is written, the
    module does not start a guest it did not stop, and the next boot has the declared NIC where it was plugged."""
    # the guest powers off 20 s after the button: time enough for the module to be waiting for the unplug
    # when it goes, even on a loaded machine (with 6 s, a slow start of the module found it already off)
    vm = guest('leaving', cmdline='acpiphp.disable=1 virtdev_power=slow:20', devices=OLD_NIC)
    args = {'uri': vm['uri'], 'domain': vm['name'], 'state': 'overridden', 'config': NEW_NICS, 'overridden_kinds': ['interface'],
            'detach_timeout': 60}
    virsh_out(vm['uri'], 'shutdown', vm['name'])
    assert live_guest.wait_for(vm['console'], live_guest.BUTTON)

    result = ok(run_module('domain_devices', args))
    assert result['changed'] is True and result['guest_state'] == 'shutoff'
    assert result['waiting_for_restart'] == [] and result['pending_unplug'] == [] and result['restarted'] is False
    # the unplug is asked first (a device planned at its address may take its place); the guest went off
    # while it was pending, so nothing more was done live. Whether the pending unplug itself counts as done
    # live depends on whether libvirt saw the device leave before the guest stopped (a loaded CI machine
    # showed both): either way the result says which.
    commands = [(c['op'], c['live'], c['config']) for c in result['commands']]
    assert commands in ([('attach', False, True), ('detach', False, True)],
                        [('attach', False, True), ('detach', True, True)]), commands
    assert 'stopped while the task ran' in str(result.get('warnings'))
    assert state(vm) == 'shut off'
    persistent = nics(vm, True)
    assert set(persistent) == {NIC_B} and persistent[NIC_B] is not None

    virsh_out(vm['uri'], 'start', vm['name'])
    assert nics(vm, False) == persistent
    converged = ok(run_module('domain_devices', args))
    assert converged['changed'] is False and converged['restart_required'] is False


def test_one_stuck_guest_of_a_manifest_fails_alone(guest, run_module, libvirtd_uri, tmp_path, boot_files):
    """A manifest of a guest that ignores the power button and a guest that is off: the stuck one fails with its
    shutdown pending, the other is written, each entry says what happened; the next run starts the stuck one."""
    bystander = tmp_path / 'bystander.xml'
    bystander.write_text(live_guest.domain_xml('bystander', 'pc', boot_files[0], boot_files[1],
                                               str(tmp_path / 'bystander.console')), encoding='utf-8')
    virsh_out(libvirtd_uri, 'define', str(bystander))
    try:
        vm = guest('stuck', cmdline='virtdev_power=ignore')
        rng = [{'kind': 'rng', 'backend': '/dev/urandom'}]
        args = {'uri': libvirtd_uri, 'domains': [{'domain': 'stuck', 'config': SOUND},
                                                 {'domain': 'bystander', 'config': rng}],
                'restart': 'if_required', 'restart_timeout': 3, 'on_error': 'continue'}

        predicted = ok(run_module('domain_devices', args, check_mode=True))
        assert [entry['changed'] for entry in predicted['results']] == [True, True]
        assert predicted['results'][0]['restarted'] is True and predicted['results'][1]['restarted'] is False

        result = run_module('domain_devices', args)
        assert result['failed'] is True and result['changed'] is True
        assert 'domain stuck did not power off within 3 s' in result['msg'], result['msg']
        assert 'bystander' not in result['msg'].split('written:')[0]   # only the stuck guest failed
        stuck, other = result['results']
        assert stuck['failed'] is True and stuck['outcome'] == 'written' and stuck['shutdown_pending'] is True
        assert stuck['commands'] == [{'op': 'attach', 'kind': 'sound', 'key': 'model ich9', 'live': False,
                                      'config': True}]
        assert stuck['restart_required'] is True and stuck['restarted'] is False
        assert other.get('failed') is None and other['outcome'] == 'written' and other['changed'] is True
        # a failed guest shows what it was left with; one that changed lists its devices only with --diff
        assert [device['kind'] for device in stuck['after']].count('sound') == 1 and 'after' not in other
        assert other['commands'][0]['kind'] == 'rng'
        assert _xml.parse(virsh_out(libvirtd_uri, 'dumpxml', '--inactive', 'bystander')).find('devices/rng') is not None
        assert domain(vm, True).find('devices/sound') is not None and state(vm) == 'running'
        assert domain({'uri': libvirtd_uri, 'name': 'bystander'}, True).find('devices/rng') is not None

        assert restart_recorded(vm)   # the request cannot be withdrawn: it is on record

        # restart: never still says a shutdown of ours is pending, and does not fail
        quiet = ok(run_module('domain_devices', dict(args, restart='never')))
        pending = [(entry['changed'], entry.get('shutdown_pending', False)) for entry in quiet['results']]  # compact
        assert pending == [(False, True), (False, False)]
        assert quiet['results'][0]['restart_required'] is True

        # the guest goes off at last (here: its power is cut); the next run starts it, whatever restart says
        virsh_out(libvirtd_uri, 'destroy', 'stuck')
        predicted = ok(run_module('domain_devices', dict(args, restart='never'), check_mode=True))
        assert [(entry['changed'], entry.get('restarted', False)) for entry in predicted['results']] == \
            [(True, True), (False, False)]
        started = ok(run_module('domain_devices', dict(args, restart='never')))
        assert [(entry['changed'], entry.get('restarted', False)) for entry in started['results']] == \
            [(True, True), (False, False)]
        assert started['results'][0]['guest_state'] == 'running' and started['results'][0]['shutdown_pending'] is False
        assert state(vm) == 'running' and not restart_recorded(vm)
        assert domain(vm, False).find('devices/sound') is not None   # the new definition is live
        converged = ok(run_module('domain_devices', args))
        assert not any(entry['changed'] or entry.get('restart_required') for entry in converged['results'])
    finally:
        remove_guest(libvirtd_uri, 'bystander')


@pytest.mark.parametrize('machine, options, reason', [
    ('pc', {'acpi': False}, 'has no ACPI'),
    ('q35', {'root_ports': 0, 'bridge': False}, 'has no free pcie-root-port'),
])
def test_a_guest_that_cannot_take_a_pci_device_gets_it_at_its_next_start(guest, run_module, machine, options, reason):
    """An i440fx guest without ACPI, a q35 guest without a free root port: QEMU (or libvirt) refuses a PCI hot-plug
    there, so the new NIC is planned for the next start in check mode as on the real run, and never tried live."""
    vm = guest('nohotplug-' + machine, devices=OLD_NIC, machine=machine, **options)
    if machine == 'q35':
        # libvirt adds a spare root port to those its devices take at define time: a device hot-plugged by hand
        # takes it
        rng = vm['console'] + '.rng.xml'
        with open(rng, 'w', encoding='utf-8') as handle:
            handle.write("<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>")
        virsh_out(vm['uri'], 'attach-device', vm['name'], rng, '--live')
    args = {'uri': vm['uri'], 'domain': vm['name'], 'state': 'merged', 'config': NEW_NICS}
    waiting = ['interface mac ' + NIC_B]

    refused = run_module('domain_devices', dict(args, apply='both'))
    assert refused['failed'] is True and reason in refused['msg'], refused['msg']

    predicted = ok(run_module('domain_devices', args, check_mode=True))
    real = ok(run_module('domain_devices', args))
    for result in (predicted, real):
        assert result['changed'] is True
        assert [(c['op'], c['live'], c['config']) for c in result['commands']] == [('attach', False, True)], result
        assert result['waiting_for_restart'] == waiting and result['restart_required'] is True
        assert reason in str(result.get('warnings')), result.get('warnings')
    assert 'attach' not in real['libvirt_calls']
    assert set(nics(vm, True)) == {NIC_A, NIC_B} and set(nics(vm, False)) == {NIC_A}
    again = ok(run_module('domain_devices', args, check_mode=True))
    assert again['changed'] is False and again['waiting_for_restart'] == waiting

    # the same NIC, hot-plugged by hand where the module would not: QEMU refuses it, as predicted
    attach = subprocess.run(['virsh', '-q', '-c', vm['uri'], 'attach-interface', vm['name'], 'user', '--model',
                             'virtio', '--mac', '52:54:00:21:00:0c', '--live'],
                            capture_output=True, text=True, check=False)
    assert attach.returncode != 0, attach.stdout
