# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""vfio_bind on a real kernel: Debian's kernel under QEMU TCG with an emulated Intel IOMMU (testbed.py).

All module runs of this file happen in one Python process in the guest (``prepare_driver.py``: a Python
start costs seconds under TCG), with ``root: /`` — the guest's own sysfs. After every step the driver
records what the guest kernel says: the driver link, ``driver_override``, ``/dev/vfio/<group>`` and the
kernel's own viability verdict for the group (``VFIO_GROUP_GET_STATUS``). The tests assert on that view,
not only on what the module returned. One short ``ansible-playbook -c local`` run checks the module
through Ansible's real execution path.

The udev rule written by ``persistent: true`` is replayed with the real udev rule engine: ``udevadm test
--action=add`` (systemd 252 applies the rule's ``ATTR{driver_override}`` write) followed by the ``RUN``
programs it lists, as udevd would run them at boot. What is not tested here: a real reboot, and a real
initramfs regeneration (a stand-in command records that it ran).
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from testbed import ANSIBLE_PLAYBOOK, COLLECTION_LINK, REPO_ROOT, Guest, ansible_playbook_lines

LONE = Guest.LONE_NIC
BRIDGE = Guest.BRIDGE
SHARED0, SHARED1 = Guest.BRIDGED_NICS
ISA, AHCI, SMBUS = Guest.HOST_CRITICAL
WATCH = [LONE, SHARED0, SHARED1, AHCI]
RULES = '/etc/udev/rules.d/40-virtdev-vfio-pci.rules'
HOOK = '/etc/initramfs-tools/hooks/virtdev-vfio'
STANDIN = ['/bin/sh', '-c', 'echo ran >> /run/testbed/initramfs.log']

# the boot of a device, replayed: udev's rule engine applies ATTR{} (driver_override) and lists the RUN
# programs, which are then run in order as udevd would
BOOT_REPLAY = r'''
set -e
out=$(udevadm test --action=add /sys/bus/pci/devices/{address} 2>&1)
echo "$out" | grep -F "{rules}" | grep -F "ATTR '" || {{ echo "our rule was not applied"; echo "$out"; exit 3; }}
echo "override after udev: $(cat /sys/bus/pci/devices/{address}/driver_override)"
echo "$out" | sed -n "s/^run: '\(.*\)'$/\1/p" > /tmp/runs
while read -r cmd; do
    case "$cmd" in
    "kmod load "?*) modprobe -b ${{cmd#kmod load }} ;;
    "kmod load") ;;
    *) sh -c "$cmd" ;;
    esac
done < /tmp/runs
cat /tmp/runs
'''


def module(name, args, **step):
    return dict(step, name=name, module='vfio_bind', args=args)


def steps():
    replay = BOOT_REPLAY.format(address=LONE, rules=RULES)
    return [
        # refusals: nothing may change
        module('shared_member_alone', {'addresses': [SHARED0]}),
        module('ahci', {'addresses': [AHCI]}),
        module('bridge', {'addresses': [BRIDGE], 'force': True}),
        module('missing_second', {'addresses': [LONE, '0000:00:09.0']}),
        module('malformed', {'addresses': ['00:03.9']}),
        # the lone NIC: check mode, bind, bind again
        module('check', {'addresses': [LONE], '_ansible_check_mode': True, '_ansible_diff': True}),
        module('bind', {'addresses': [LONE]}),
        module('bind_again', {'addresses': [LONE]}),
        # the shared group: forced alone (the kernel says: not viable), then the whole group (viable)
        module('shared_forced', {'addresses': [SHARED0], 'force': True}),
        module('shared_whole_group', {'addresses': [SHARED0], 'whole_group': True}),
        # a "guest" holds the shared group open: unbinding is refused
        {'name': 'hold', 'hold': SHARED1},
        module('unbind_held', {'addresses': [SHARED1], 'state': 'unbound'}),
        {'name': 'release', 'release': SHARED1},
        # everything back to e1000e
        module('unbind_all', {'addresses': [LONE, SHARED0], 'whole_group': True, 'state': 'unbound'}),
        # a group peer without a driver keeps the group viable (the kernel's rule): no force, no whole_group
        {'name': 'peer_unbound', 'sh': 'echo %s > /sys/bus/pci/drivers/e1000e/unbind' % SHARED1},
        module('unbound_peer', {'addresses': [SHARED0]}),
        module('unbound_peer_release', {'addresses': [SHARED0], 'state': 'unbound'}),
        {'name': 'peer_back', 'sh': 'echo %s > /sys/bus/pci/drivers_probe' % SHARED1},
        # a list where the third device's probe binds nothing: the first two are rolled back
        module('rollback', {'addresses': [LONE, SHARED0, SHARED1]}, swallow_probe=[SHARED1]),
        # persistence: the rule and the initramfs hook, the (stand-in) initramfs update, a boot replay
        module('persist', {'addresses': [LONE], 'persistent': True, 'initramfs_command': STANDIN}),
        module('persist_again', {'addresses': [LONE], 'persistent': True, 'initramfs_command': STANDIN}),
        {'name': 'files', 'sh': 'cat %s; echo ----; cat %s; echo ----; ls -l %s' % (RULES, HOOK, HOOK)},
        module('release_keep_rule', {'addresses': [LONE], 'state': 'unbound'}),
        {'name': 'boot_replay', 'sh': replay},
        module('cleanup', {'addresses': [LONE], 'state': 'unbound', 'persistent': True,
                           'initramfs_command': STANDIN}),
        {'name': 'files_gone', 'sh': 'ls %s %s 2>&1; cat /run/testbed/initramfs.log' % (RULES, HOOK)},
    ]


@pytest.fixture(scope='module')
def records(guest):
    plan = guest.put('vfio-plan.json', json.dumps({'watch': WATCH, 'steps': steps()}))
    script = '\n'.join([
        ': vfio_bind steps in one Python process',
        'set -e',
    ] + list(COLLECTION_LINK) + [
        'export PYTHONPATH=/tmp/ac',
        '%s %s %s /run/testbed/vfio-records.json'
        % (sys.executable, os.path.join(REPO_ROOT, 'tests', 'kernel', 'prepare_driver.py'), plan),
    ])
    result = guest.run(script, timeout=900)
    assert result.rc == 0, result.output
    data = json.loads(guest.get('vfio-records.json'))
    by_name = {record['name']: record for record in data['steps']}
    by_name['_initial'] = data['initial']
    by_name['_pid'] = data['pid']
    return by_name


def _ships_virqfd(release):
    with open('/lib/modules/%s/modules.dep' % release, encoding='utf-8') as handle:
        return any(line.split(':')[0].endswith(('/vfio_virqfd.ko', '/vfio_virqfd.ko.xz', '/vfio_virqfd.ko.zst'))
                   for line in handle)


def errors(record):
    return record['result'].get('errors', [])


def test_initial_state(records):
    initial = records['_initial']
    assert [initial[address]['driver'] for address in (LONE, SHARED0, SHARED1)] == ['e1000e'] * 3
    assert initial[SHARED0]['group'] == initial[SHARED1]['group'] != initial[LONE]['group']
    assert not any(state['vfio_node'] for state in initial.values())


def test_refusals_change_nothing(records):
    initial = records['_initial']
    for name in ('shared_member_alone', 'ahci', 'bridge', 'missing_second', 'malformed'):
        record = records[name]
        assert record['result']['failed'] is True, record
        assert record['view'] == initial, name
        assert record['result'].get('changed', False) is False
    assert errors(records['shared_member_alone']) == [
        'addresses[0] (%s): shares IOMMU group %s with %s (network controller, driver e1000e), which is still bound '
        'to a host driver [guard group] (force: true overrides it)' % (SHARED0, initial[SHARED0]['group'], SHARED1)]
    ahci = errors(records['ahci'])
    assert {error.split('[guard ')[1].split(']')[0] for error in ahci} == {'group_critical'}
    assert any(ISA in error and 'ISA bridge' in error for error in ahci)
    assert any(SMBUS in error and 'SMBus' in error for error in ahci)
    assert any('[guard endpoint]' in error for error in errors(records['bridge']))
    assert errors(records['missing_second']) == [
        'addresses[1] (0000:00:09.0): there is no PCI device 0000:00:09.0 on this host (not under '
        '/sys/bus/pci/devices) [guard exists]']
    assert "addresses[0]: '00:03.9' is not a PCI address" in records['malformed']['result']['msg']


def test_check_mode_then_bind_verified_by_the_kernel(records):
    check, bind, again = records['check'], records['bind'], records['bind_again']
    assert check['result']['changed'] is True and check['result']['diff']
    assert check['view'][LONE]['driver'] == 'e1000e' and not check['view'][LONE]['vfio_node']
    assert bind['result']['changed'] is True
    lone = bind['view'][LONE]
    assert (lone['driver'], lone['driver_override'], lone['vfio_node'], lone['viable']) == \
        ('vfio-pci', 'vfio-pci', True, True)
    assert bind['result']['iommu_groups'] == [{'group': int(lone['group']), 'node': '/dev/vfio/%s' % lone['group'],
                                               'exists': True}]
    assert [(w['path'], w['value']) for w in bind['result']['writes']] == \
        [(w['path'], w['value']) for w in check['result']['writes']]
    assert again['result']['changed'] is False and again['result']['writes'] == []
    # the neighbours were not touched
    assert bind['view'][SHARED0]['driver'] == bind['view'][SHARED1]['driver'] == 'e1000e'


def test_group_viability_from_the_kernel(records):
    forced, whole = records['shared_forced'], records['shared_whole_group']
    assert forced['result']['changed'] is True
    # forced past the group guard: bound, but the kernel itself says the group is not viable
    assert (forced['view'][SHARED0]['driver'], forced['view'][SHARED1]['driver']) == ('vfio-pci', 'e1000e')
    assert forced['view'][SHARED0]['vfio_node'] is True and forced['view'][SHARED0]['viable'] is False
    assert whole['result']['changed'] is True
    assert [(d['address'], d['requested']) for d in whole['result']['devices']] == [(SHARED0, True), (SHARED1, False)]
    assert (whole['view'][SHARED0]['driver'], whole['view'][SHARED1]['driver']) == ('vfio-pci', 'vfio-pci')
    assert whole['view'][SHARED1]['viable'] is True


def test_unbound_group_peer_is_viable(records):
    """The peer has no driver: vfio_bind binds the device alone, and the kernel agrees the group is viable;
    the PCI bridge in the group (no driver) is never touched."""
    record = records['unbound_peer']
    assert record['result']['changed'] is True and errors(record) == []
    assert [d['address'] for d in record['result']['devices']] == [SHARED0]
    assert (record['view'][SHARED0]['driver'], record['view'][SHARED1]['driver']) == ('vfio-pci', None)
    assert record['view'][SHARED0]['viable'] is True
    assert records['peer_back']['view'][SHARED1]['driver'] == 'e1000e'
    assert records['peer_back']['view'][SHARED0]['driver'] == 'e1000e'


def test_group_in_use_is_not_unbound(records):
    held = records['unbind_held']
    assert held['result']['failed'] is True
    [error] = errors(held)
    assert 'is held open by pid %d' % records['_pid'] in error and error.endswith('[guard group_open]')
    assert held['view'][SHARED1]['driver'] == 'vfio-pci'


def test_unbound_gives_the_devices_back(records):
    record = records['unbind_all']
    assert record['result']['changed'] is True
    for address in (LONE, SHARED0, SHARED1):
        state = record['view'][address]
        assert (state['driver'], state['driver_override'], state['vfio_node']) == ('e1000e', None, False), address
    assert sorted(d['address'] for d in record['result']['devices']) == [LONE, SHARED0, SHARED1]


def test_rollback_after_a_probe_that_bound_nothing(records):
    record = records['rollback']
    result = record['result']
    assert result['failed'] is True
    assert result['msg'].startswith('addresses[2] (%s): after driver_override=vfio-pci and drivers_probe the device '
                                    'has no driver at all' % SHARED1)
    assert result['rolled_back'] == [SHARED1, SHARED0, LONE]
    # the first two had really been bound (their writes were made) and are back on e1000e
    written = [w['value'] for w in result['writes'] if w['path'] == '/sys/bus/pci/drivers_probe']
    assert written == [LONE, SHARED0, SHARED1]
    for address in (LONE, SHARED0, SHARED1):
        state = record['view'][address]
        assert (state['driver'], state['driver_override'], state['vfio_node']) == ('e1000e', None, False), address


def test_persistent_rule_binds_at_boot(records):
    persist, again = records['persist'], records['persist_again']
    assert persist['result']['changed'] is True and persist['view'][LONE]['driver'] == 'vfio-pci'
    assert persist['result']['files'] == [RULES, HOOK]
    assert persist['result']['commands'] == [STANDIN]
    assert again['result']['changed'] is False and again['result']['commands'] == []
    files = records['files']['output']
    assert 'KERNEL=="%s", ATTR{vendor}=="0x8086", ATTR{device}=="0x10d3"' % LONE in files
    # vfio_virqfd is listed when every kernel installed here (the guest's / is this host's) ships it: 6.1 does
    virqfd = [_ships_virqfd(release) for release in os.listdir('/lib/modules')
              if os.path.exists('/lib/modules/%s/modules.dep' % release)]
    expected = 'vfio vfio_iommu_type1 vfio_virqfd vfio_pci' if virqfd and all(virqfd) else 'vfio vfio_iommu_type1 vfio_pci'
    assert 'manual_add_modules %s\n' % expected in files
    assert '-rwxr-xr-x' in files
    # the device given back without touching the boot configuration, then "booted" through udev
    assert records['release_keep_rule']['view'][LONE]['driver'] == 'e1000e'
    replay = records['boot_replay']
    assert replay['rc'] == 0, replay['output']
    assert 'override after udev: vfio-pci' in replay['output']
    state = replay['view'][LONE]
    assert (state['driver'], state['driver_override'], state['vfio_node'], state['viable']) == \
        ('vfio-pci', 'vfio-pci', True, True)


def test_cleanup_removes_the_boot_configuration(records):
    cleanup = records['cleanup']
    assert cleanup['result']['changed'] is True and cleanup['view'][LONE]['driver'] == 'e1000e'
    assert sorted(cleanup['result']['files']) == sorted([RULES, HOOK])
    gone = records['files_gone']['output']
    assert 'No such file' in gone and gone.split().count('ran') == 2  # the update ran on both real changes


# -- through ansible-playbook: AnsiballZ, argument spec, module_defaults of the action group ---------------

PLAYBOOK = '''\
- hosts: localhost
  gather_facts: false
  module_defaults:
    group/virtdev.libvirt.libvirt:
      uri: qemu:///system
  tasks:
    - name: Bind the shared IOMMU group
      virtdev.libvirt.vfio_bind:
        addresses: ["%(shared)s"]
        whole_group: true
    - name: Give it back
      virtdev.libvirt.vfio_bind:
        addresses: ["%(shared)s"]
        whole_group: true
        state: unbound
'''


@pytest.fixture(scope='module')
def playbook_run(guest, records):  # pylint: disable=redefined-outer-name,unused-argument
    if not os.path.exists(ANSIBLE_PLAYBOOK):
        pytest.skip('ansible-playbook not found next to %s' % sys.executable)
    playbook = guest.put('vfio-playbook.yml', PLAYBOOK % {'shared': SHARED0})
    script = '\n'.join([
        ': ansible-playbook -c local, vfio_bind x2',
        'set -e',
    ] + ansible_playbook_lines(playbook, 'ANSIBLE_STDOUT_CALLBACK=ansible.builtin.minimal') + [
        'for a in %s %s; do basename "$(readlink /sys/bus/pci/devices/$a/driver)"; done' % (SHARED0, SHARED1),
    ])
    result = guest.run(script, timeout=900)
    assert result.rc == 0, result.output
    return result.output


def _minimal_results(output):
    """The JSON of each task result printed by the minimal callback (``localhost | CHANGED => {...}``)."""
    results, current = [], None
    for line in output.splitlines():
        if line.startswith('localhost | '):
            current = [line.split('=> ', 1)[1]]
        elif current is not None:
            current.append(line)
            if line == '}':
                results.append(json.loads('\n'.join(current)))
                current = None
    return results


def test_through_ansible_playbook(playbook_run):
    bound, unbound = _minimal_results(playbook_run)
    assert bound['changed'] is True and unbound['changed'] is True
    assert [(d['address'], d['after']['driver']) for d in bound['devices']] == \
        [(SHARED0, 'vfio-pci'), (SHARED1, 'vfio-pci')]
    assert bound['iommu_groups'][0]['exists'] is True
    assert [(d['address'], d['after']['driver']) for d in unbound['devices']] == \
        [(SHARED0, 'e1000e'), (SHARED1, 'e1000e')]
    # the guest kernel's own view after the play
    assert playbook_run.split()[-2:] == ['e1000e', 'e1000e']
