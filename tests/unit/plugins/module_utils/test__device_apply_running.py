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
from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_kinds as kinds
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


# --- guests whose PCI topology keeps hot-plugged devices out (the kind table's PCI_HOTPLUG_LIMITS) ---------------

NO_ACPI = ''
ACPI = '<features><acpi/><apic/></features>'
TABLET = {'kind': 'input', 'type': 'tablet', 'bus': 'usb'}
ROOT_PORT = ("<controller type='pci' index='%d' model='pcie-root-port'>%s"
             "<address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x%d'/></controller>")
Q35_NIC = ("<interface type='user'><mac address='52:54:00:00:00:0a'/><model type='virtio'/>%s"
           "<address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/></interface>")


def machine_domain(machine, features, devices, live):
    """A guest of a machine type; ``live``: as a running guest's XML reads (libvirt gives it an id)."""
    return ("<domain type='qemu'%s><name>web01</name><uuid>%s</uuid><memory unit='KiB'>65536</memory>"
            "<os><type arch='x86_64' machine='%s'>hvm</type></os>%s<devices>%s</devices></domain>"
            % (" id='7'" if live else '', UUID, machine, features, devices))


class MachineGuest(RunningGuest):
    """A running guest of a machine type; ``refuses``: QEMU refuses every hot-plug (as it does where the plan
    did not foresee it), which the real run must report as it happened."""

    def __init__(self, machine='pc-i440fx-7.2', features=NO_ACPI, devices=None, refuses=False):
        super().__init__()
        devices = OLD_NIC % '' if devices is None else devices
        self.inactive = machine_domain(machine, features, devices.replace("<alias name='net0'/>", ''), False)
        self.live = machine_domain(machine, features, devices, True)
        self.refuses = refuses

    def attach_live(self, dom, device_xml):
        if self.refuses:
            self.calls.append('attach refused')
            raise apply.LibvirtFailure("internal error: unable to execute QEMU command 'device_add': Bus 'pci.0' "
                                       "does not support hotplugging")
        super().attach_live(dom, device_xml)


def q35_devices(ports):
    """A q35 guest's devices: NIC A in the first root port, ``ports`` more root ports (free)."""
    return (''.join(ROOT_PORT % (index, '', index - 1) for index in range(1, ports + 2))
            + Q35_NIC % "<alias name='net0'/>")


def outcome(run_result):
    return ([(c['op'], c['live'], c['config']) for c in run_result.commands()], run_result.waiting)


@pytest.mark.parametrize('check_mode', [True, False])
def test_a_pc_guest_without_acpi_gets_pci_devices_at_its_next_start(check_mode):
    guest = MachineGuest()
    planned = run(guest, [NEW_NIC], state='merged', check_mode=check_mode)
    planned.apply()
    assert outcome(planned) == ([('attach', False, True)], ['interface mac 52:54:00:00:00:0b'])
    assert guest.calls == ([] if check_mode else ['define'])   # no hot-plug is tried
    assert planned.reported_changed is True
    assert len(planned.plan_warnings) == 1
    assert 'interface mac 52:54:00:00:00:0b cannot be plugged into or out of the running guest' \
        in planned.plan_warnings[0]
    assert 'machine type pc-i440fx-7.2 has no ACPI' in planned.plan_warnings[0]
    assert '(waiting_for_restart)' in planned.plan_warnings[0]


def test_a_pc_guest_without_acpi_keeps_its_pci_devices_until_its_next_start():
    guest = MachineGuest()
    removal = run(guest, [], overridden_kinds=['interface'])
    removal.apply()
    assert guest.calls == ['define'] and removal.waiting == ['interface mac 52:54:00:00:00:0a']
    assert removal.pending_unplug == []
    with pytest.raises(apply.ApplyError, match=r'interface mac 52:54:00:00:00:0b \(its machine type pc-i440fx-7.2 '
                                               r'has no ACPI.*use apply=auto'):
        run(MachineGuest(), [NEW_NIC], state='merged', apply_mode='both')


@pytest.mark.parametrize('machine, features, devices, config, live', [
    # the same NIC where PCI hot-plug works: ACPI on i440fx, a free root port (or a PCI bridge) on q35
    ('pc-i440fx-7.2', ACPI, None, [NEW_NIC], True),
    ('pc', ACPI, None, [NEW_NIC], True),
    ('pc-q35-7.2', ACPI, q35_devices(1), [NEW_NIC], True),
    ('pc-q35-7.2', ACPI, q35_devices(0) + "<controller type='pci' index='2' model='pcie-to-pci-bridge'/>",
     [NEW_NIC], True),
    # a USB device, or a disk on a SCSI controller, takes no PCI slot: no ACPI does not keep them out
    ('pc-i440fx-7.2', NO_ACPI, None, [TABLET], True),
    # a NIC given an address on a bus other than the root bus (behind a bridge) is left to QEMU
    ('pc-i440fx-7.2', NO_ACPI, None, [dict(kind='xml', xml=(
        "<interface type='user'><mac address='52:54:00:00:00:0b'/><model type='virtio'/>"
        "<address type='pci' domain='0x0000' bus='0x01' slot='0x01' function='0x0'/></interface>"))], True),
    # where it does not
    ('pc', NO_ACPI, None, [NEW_NIC], False),
    ('pc-i440fx-7.2', NO_ACPI, None, [{'kind': 'disk', 'target': 'vdc', 'source': {'file': '/var/lib/c.qcow2'}}],
     False),
    ('pc-i440fx-7.2', NO_ACPI, None, [{'kind': 'rng', 'backend': '/dev/urandom'}], False),
    ('pc-i440fx-7.2', ACPI, "<controller type='pci' index='0' model='pci-root'><target hotplug='off'/></controller>"
     + OLD_NIC % '', [NEW_NIC], False),
    ('pc-q35-7.2', ACPI, q35_devices(0), [NEW_NIC], False),
    ('q35', NO_ACPI, q35_devices(0), [NEW_NIC], False),
    # a root port with hotplug off is no free slot
    ('pc-q35-7.2', ACPI, q35_devices(0) + ROOT_PORT % (2, "<target hotplug='off'/>", 1), [NEW_NIC], False),
])
def test_what_the_guest_pci_topology_takes_live(machine, features, devices, config, live):
    for check_mode in (True, False):
        guest = MachineGuest(machine, features, devices)
        planned = run(guest, [dict(item) for item in config], state='merged', check_mode=check_mode)
        planned.apply()
        assert [c['live'] for c in planned.commands()] == [live], (machine, check_mode)
        assert bool(planned.waiting) is not live
        assert ('attach' in guest.calls) is (live and not check_mode)


def test_a_q35_guest_without_a_free_port_still_releases_devices():
    guest = MachineGuest('pc-q35-7.2', ACPI, q35_devices(0))
    removal = run(guest, [], overridden_kinds=['interface'])
    removal.apply()
    assert guest.calls == ['detach net0', 'define'] and removal.waiting == []


def test_a_hot_plug_qemu_refuses_anyway_is_reported_as_it_happened():
    guest = MachineGuest(features=ACPI, refuses=True)
    predicted = run(guest, [NEW_NIC], state='merged', check_mode=True)
    real = run(guest, [NEW_NIC], state='merged')
    real.apply()
    assert outcome(predicted) == ([('attach', True, True)], [])
    assert guest.calls == ['attach refused', 'define']
    assert outcome(real) == ([('attach', False, True)], ['interface mac 52:54:00:00:00:0b'])
    assert "does not support hotplugging" in real.warnings[0]


def test_pci_hotplug_limits_read_from_the_live_xml():
    def limits(machine, features, devices, arch='x86_64'):
        domain = _xml.parse(machine_domain(machine, features, devices, True).replace('x86_64', arch))
        return [row.name for row, _reason in kinds.pci_hotplug_limits(domain, engine.device_elements(
            engine.devices_of(domain)))]
    assert limits('pc-i440fx-7.2', NO_ACPI, '') == ['i440fx-no-acpi']
    assert limits('pc-1.3', NO_ACPI, '') == ['i440fx-no-acpi']
    assert limits('pc-i440fx-7.2', ACPI, '') == []
    assert limits('pc-i440fx-7.2', NO_ACPI, '', arch='aarch64') == []   # the rows are x86's
    assert limits('virt', NO_ACPI, '', arch='aarch64') == []
    off = "<controller type='pci' index='0' model='pci-root'><target hotplug='off'/></controller>"
    assert limits('pc', ACPI, off) == ['i440fx-root-hotplug-off']
    assert limits('pc', ACPI, off + "<controller type='pci' index='1' model='pci-bridge'/>") == []
    assert limits('pc-q35-7.2', ACPI, q35_devices(0)) == ['q35-no-free-port']
    assert limits('pc-q35-7.2', ACPI, q35_devices(2)) == []
    # a port counts as used by any device on its bus, the address read as libvirt reads it (decimal here)
    used = ROOT_PORT % (2, '', 1) + ("<rng model='virtio'><backend model='random'>/dev/urandom</backend>"
                                     "<address type='pci' domain='0' bus='2' slot='0' function='0'/></rng>")
    assert limits('pc-q35-7.2', ACPI, q35_devices(0) + used) == ['q35-no-free-port']


@pytest.mark.parametrize('xml, takes', [
    ("<interface type='network'><source network='default'/><model type='virtio'/></interface>", True),
    ("<interface type='network'><source network='default'/><model type='usb-net'/></interface>", False),
    ("<disk type='file' device='disk'><source file='/d'/><target dev='vdb' bus='virtio'/></disk>", True),
    ("<disk type='file' device='disk'><source file='/d'/><target dev='vdb'/></disk>", True),
    ("<disk type='file' device='disk'><source file='/d'/><target dev='sdb' bus='scsi'/></disk>", False),
    ("<disk type='file' device='disk'><source file='/d'/><target dev='sdb' bus='usb'/></disk>", False),
    ("<controller type='scsi' model='virtio-scsi'/>", True),
    ("<input type='tablet' bus='virtio'/>", True),
    ("<input type='tablet' bus='usb'/>", False),
    ("<serial type='pty'><target type='pci-serial'/></serial>", True),
    ("<serial type='pty'><target type='usb-serial'/></serial>", False),
    ("<redirdev bus='usb' type='spicevmc'/>", False),
    ("<hostdev mode='subsystem' type='pci' managed='yes'><source><address domain='0' bus='1' slot='0' "
     "function='0'/></source></hostdev>", True),
    ("<hostdev mode='subsystem' type='usb'><source><vendor id='0x1'/><product id='0x2'/></source></hostdev>", False),
    ("<hostdev mode='subsystem' type='mdev' model='vfio-pci'><source><address "
     "uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev>", True),
    ("<memory model='virtio-mem'><target><size unit='MiB'>128</size></target></memory>", True),
    ("<memory model='dimm'><target><size unit='MiB'>128</size></target></memory>", False),
    # an address says where the device goes, whatever its kind
    ("<interface type='user'><model type='virtio'/><address type='ccw' cssid='0xfe' ssid='0' devno='1'/>"
     "</interface>", False),
    ("<input type='tablet' bus='usb'><address type='pci' domain='0' bus='0' slot='9' function='0'/></input>", True),
])
def test_which_devices_take_a_pci_slot(xml, takes):
    assert kinds.takes_pci_slot(_xml.parse(xml)) is takes
