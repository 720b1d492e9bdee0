# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""DomainRun on running guests that do not cooperate, against an in-memory libvirt (only the data source is
replaced; docs/domain_devices.md, "Running guests"). The same rules on real TCG guests:
tests/functional/test_running_guests.py."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_apply as apply
from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine as engine
from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import removal_consent
from ansible_collections.virtdev.libvirt.tests.unit.plugins.module_utils.handles import ReadsHandles

UUID = '6c1f3c3e-8a55-4e59-9a3c-0d6a2f1b7e02'
OLD_NIC = ("<interface type='user'><mac address='52:54:00:00:00:0a'/><model type='virtio'/>%s"
           "<address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/></interface>")
DISK = ("<disk type='file' device='disk'><source file='/var/lib/d.qcow2'/><target dev='vdb' bus='virtio'/>%s"
        "<address type='pci' domain='0x0000' bus='0x00' slot='0x04' function='0x0'/></disk>")
NEW_NIC = {'kind': 'interface', 'mac': '52:54:00:00:00:0b', 'source': {'user': True}, 'model': 'virtio'}


def domain(devices, metadata=''):
    return ("<domain type='qemu'><name>web01</name><uuid>%s</uuid><memory unit='KiB'>65536</memory>%s"
            "<devices>%s</devices></domain>" % (UUID, metadata, devices))


class Dom:
    def name(self):
        return 'web01'

    def UUIDString(self):  # noqa: N802 (libvirt's name)
        return UUID


class RunningGuest(ReadsHandles):
    """A guest with a definition and a live XML; ``unplug`` is what the guest does with unplug requests
    ('released' or 'pending'), ``powers_off`` whether it honours the power button."""

    def __init__(self, state='running', unplug='released', powers_off=True, metadata=''):
        self.inactive = domain(OLD_NIC % '' + DISK % '', metadata)
        self.live = domain(OLD_NIC % "<alias name='net0'/>" + DISK % "<alias name='virtio-disk1'/>")
        self.state_name, self.unplug, self.powers_off = state, unplug, powers_off
        self.active = state != 'shutoff'
        self.lost = False
        self.calls = []
        self.metadata = None

    def lookup(self, _name):
        return Dom()

    def find_uuid(self, _uuid):
        return Dom()

    def is_active(self, _dom):
        return self.active

    def state(self, _dom):
        return self.state_name if self.active else 'shutoff'

    def xml(self, _dom, inactive=True):
        return self.inactive if inactive else self.live

    def same_libvirt(self):
        return False

    def define(self, text, _devices_checked=False):
        self.calls.append('define')
        self.inactive = text

    def attach_live(self, _dom, device_xml):
        self.calls.append('attach')
        element = _xml.parse(device_xml)
        if element.find('address') is None:
            element.append(_xml.parse("<address type='pci' domain='0x0000' bus='0x00' slot='0x07' function='0x0'/>"))
        self.live = self.live.replace('</devices>', _xml.to_string(element) + '</devices>')

    def detach_live(self, _dom, _device_xml, alias, _timeout, _attempts):
        self.calls.append('detach ' + alias)
        return self.unplug

    def request_shutdown(self, _dom):
        self.calls.append('shutdown')

    def wait_shutoff(self, _dom, _timeout):
        if self.powers_off:
            self.active = False
        return self.powers_off

    def start(self, _dom):
        self.calls.append('start')
        self.active, self.state_name = True, 'running'

    def set_metadata(self, _dom, _key, _namespace, element, live):
        self.calls.append('metadata %s' % ('set' if element else 'remove'))
        self.metadata = element


def run(guest, config, state='overridden', check_mode=False, **options):
    declared = engine.declare(config, 'web01')
    return apply.DomainRun(guest, 'web01', declared, state, options.pop('apply_mode', 'auto'), check_mode,
                           **options).prepare()


def test_addresses_compare_as_libvirt_reads_them():
    hexa = _xml.parse("<address type='pci' domain='0x0000' bus='0x00' slot='0x0a' function='0x0'/>")
    decimal = _xml.parse("<address type='pci' domain='0' bus='0' slot='10' function='0' multifunction='on'/>")
    octal = _xml.parse("<address type='pci' domain='0' bus='0' slot='012' function='0'/>")
    other = _xml.parse("<address type='pci' domain='0' bus='0' slot='11' function='0'/>")
    assert apply.address_id(hexa) == apply.address_id(decimal) == apply.address_id(octal) != apply.address_id(other)
    holder = _xml.parse("<rng model='virtio'><address type='pci' domain='0' bus='0' slot='10' function='0'/></rng>")
    assert apply.holder_of(hexa, [holder]) is holder and apply.holder_of(other, [holder]) is None
    assert apply.holder_of(hexa, [holder], besides=holder) is None


def test_removals_that_need_consent():
    assert removal_consent(_xml.parse(DISK % '')) == 'disk'
    assert removal_consent(_xml.parse(
        "<hostdev mode='subsystem' type='pci'><source><address domain='0' bus='1' slot='0' function='0'/>"
        "</source></hostdev>")) == 'passthrough'
    assert removal_consent(_xml.parse(
        "<interface type='hostdev'><mac address='52:54:00:00:00:01'/><source><address type='pci' domain='0' "
        "bus='1' slot='0' function='1'/></source></interface>")) == 'passthrough'
    assert removal_consent(_xml.parse(OLD_NIC % '')) is None


def test_restart_record_is_read_from_the_metadata():
    record = "<metadata><virtdev:restart xmlns:virtdev='%s' requested='T' timeout='9'/></metadata>" % apply.RESTART_NS
    assert apply.restart_record(domain('', record)) == {'requested': 'T', 'timeout': '9'}
    assert apply.restart_record(domain('')) is None


def test_a_guest_that_keeps_a_device_gets_the_definition_and_the_device_is_named():
    guest = RunningGuest(unplug='pending')
    swap = run(guest, [NEW_NIC], overridden_kinds=['interface'])
    swap.apply()
    assert guest.calls == ['detach net0', 'attach', 'define']   # removals first, the definition always
    assert swap.pending_unplug == swap.waiting == ['interface mac 52:54:00:00:00:0a']
    done = [(c['op'], c['live'], c['config']) for c in swap.commands()]
    assert done == [('attach', True, True), ('detach', False, True)]
    assert '52:54:00:00:00:0a' not in guest.inactive
    new_nic = _xml.parse(guest.inactive).find("devices/interface/mac[@address='52:54:00:00:00:0b']/..")
    assert new_nic.find('address').get('slot') == '0x07'   # where QEMU plugged it


@pytest.mark.parametrize('check_mode', [True, False])
def test_a_paused_guest_gets_no_live_step_and_no_restart(check_mode):
    guest = RunningGuest(state='paused')
    swap = run(guest, [NEW_NIC], check_mode=check_mode, overridden_kinds=['interface'])
    swap.apply()
    swap.restart(True, 5)
    assert guest.calls == ([] if check_mode else ['define'])
    assert swap.waiting == ['interface mac 52:54:00:00:00:0b', 'interface mac 52:54:00:00:00:0a']
    assert swap.restarted is False and swap.guest_state == 'paused'
    assert [(c['live'], c['config']) for c in swap.commands()] == [(False, True), (False, True)]
    assert 'is paused' in swap.plan_warnings[0]
    with pytest.raises(apply.ApplyError, match='domain web01 is paused: apply=both'):
        run(RunningGuest(state='paused'), [NEW_NIC], apply_mode='both')


def test_a_disk_leaves_a_running_guest_only_with_consent():
    disk = [{'kind': 'disk', 'target': 'vdb'}]
    guest = RunningGuest()
    withheld = run(guest, disk, state='deleted')
    withheld.apply()
    assert guest.calls == ['define'] and withheld.waiting == ['disk target vdb']
    assert withheld.commands() == [{'op': 'detach', 'kind': 'disk', 'key': 'target vdb', 'live': False,
                                    'config': True, 'destructive': True}]
    assert 'removed from the definition only' in withheld.diff()['after']
    allowed = run(RunningGuest(), disk, state='deleted', allow_live_removal=['disk'])
    allowed.apply()
    assert allowed.connection.calls == ['detach virtio-disk1', 'define'] and allowed.waiting == []
    with pytest.raises(apply.ApplyError, match='needs allow_live_removal'):
        run(RunningGuest(), disk, state='deleted', apply_mode='both')


def test_a_shutdown_the_guest_does_not_honour_is_recorded_and_finished_by_the_next_run():
    sound = [{'kind': 'sound', 'model': 'ich9'}]
    guest = RunningGuest(powers_off=False)
    first = run(guest, sound, state='merged')
    first.apply()
    with pytest.raises(apply.ApplyError, match='shutdown stays pending'):
        first.restart(True, 3)
    assert guest.calls == ['define', 'metadata set', 'shutdown'] and first.shutdown_pending
    assert 'restart' in guest.metadata

    # the guest went off later; the record is in its definition: the next run starts it, restart or not
    guest.active = False
    guest.inactive = guest.inactive.replace('<devices>', "<metadata><virtdev:restart xmlns:virtdev='%s' "
                                            "requested='T' timeout='3'/></metadata><devices>" % apply.RESTART_NS, 1)
    predicted = run(guest, sound, state='merged', check_mode=True)
    predicted.restart(False, 3)
    assert predicted.restarted is True and predicted.reported_changed is True
    finished = run(guest, sound, state='merged')
    finished.apply()
    finished.restart(False, 3)
    assert guest.calls[-2:] == ['start', 'metadata remove']
    assert finished.restarted and not finished.shutdown_pending and finished.guest_state == 'running'
