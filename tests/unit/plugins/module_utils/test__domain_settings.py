# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The domain settings table: validation, minimal edits, refused combinations, gathered round trips."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine, _domain_settings as S, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError

HAND_MADE = """<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>hand</name>
  <uuid>2079ac08-66b4-4eab-9f86-70b33efa00ff</uuid>
  <metadata><app:tag xmlns:app='http://example.org/app'>keep me</app:tag></metadata>
  <memory unit='KiB'>1048576</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static'>4</vcpu>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os>
  <features><acpi/><apic/><hyperv mode='custom'><relaxed state='on'/></hyperv><vmcoreinfo state='on'/></features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'><timer name='rtc' tickpolicy='catchup'/></clock>
  <pm><suspend-to-mem enabled='no'/></pm>
  <devices><disk type='file' device='disk'><target dev='vda' bus='virtio'/></disk></devices>
  <qemu:commandline><qemu:arg value='-no-hpet'/></qemu:commandline>
</domain>"""


def settings(**given):
    return S.normalize(given)


def plan(xml, **given):
    return S.plan(xml, settings(**given))


@pytest.mark.parametrize('given, where, value', [
    ({'features': {'hyperv': {'vendor_id': 'thirteen-char'}}}, 'features.hyperv.vendor_id', "'thirteen-char'"),
    ({'cpu': {'topology': {'cores': 'two'}}}, 'cpu.topology.cores', "'two'"),
    ({'cpu': {'topology': {'cores': 0}}}, 'cpu.topology.cores', '0'),
    ({'memory': 8}, 'memory', '8'),
    ({'vcpus': 5000}, 'vcpus', '5000'),
    ({'features': {'hyperv': {'spinlocks_retries': 100}}}, 'features.hyperv.spinlocks_retries', '100'),
    ({'features': {'smm': 'yes'}}, 'features.smm', "'yes'"),
    ({'clock': {'timers': [{'name': 'sundial'}]}}, 'clock.timers[0].name', "'sundial'"),
    ({'clock': {'timers': [{'name': 'rtc'}, {'name': 'rtc'}]}}, 'clock.timers[1]', "'rtc'"),
    ({'clock': {'offset': 'mars'}}, 'clock.offset', "'mars'"),
    ({'boot': {'order': ['hd', 'usb']}}, 'boot.order', "'usb'"),
    ({'cputune': {'vcpupin': [{'vcpu': 0, 'cpuset': 'all'}]}}, 'cputune.vcpupin[0].cpuset', "'all'"),
    ({'features': {'kvm': {'stealth': True}}}, 'features.kvm', 'stealth'),
    ({'memory_backing': {'access': 'public'}}, 'memory_backing.access', "'public'"),
    ({'on_crash': 'explode'}, 'on_crash', "'explode'"),
    ({'title': 'two\nlines'}, 'title', "'two\\nlines'"),
])
def test_bad_input_names_the_option_and_the_value(given, where, value):
    with pytest.raises(SpecError) as error:
        S.normalize(given)
    assert str(error.value).startswith(where + ':'), str(error.value)
    assert value in str(error.value)


def test_one_setting_changes_one_line_and_everything_else_is_kept():
    result = plan(HAND_MADE, features={'hyperv': {'vendor_id': 'KVMKVMKVM'}})
    assert result.changed_settings == ['features.hyperv.vendor_id']
    new = result.new_xml
    for kept in ('keep me', 'qemu:commandline', "<qemu:arg value=\"-no-hpet\"/>", 'vmcoreinfo', 'suspend-to-mem'):
        assert kept in new
    again = S.plan(new, settings(features={'hyperv': {'vendor_id': 'KVMKVMKVM'}}))
    assert not again.changed


def test_gathered_fed_back_is_a_no_op_and_reports_what_no_option_describes():
    gathered, unmanaged = S.gather(HAND_MADE)
    assert gathered['features']['hyperv'] == {'mode': 'custom', 'relaxed': True}
    assert gathered['clock'] == {'offset': 'utc', 'timers': [{'name': 'rtc', 'tickpolicy': 'catchup'}]}
    assert not S.plan(HAND_MADE, S.normalize(gathered)).changed
    assert set(unmanaged) == {'metadata', 'features/vmcoreinfo', 'pm', 'qemu:commandline'}


def test_flags_and_switches_turn_off_without_leaving_empty_elements():
    result = plan(HAND_MADE, features={'hyperv': {'relaxed': False}, 'apic': False})
    tree = _xml.parse(result.new_xml)
    assert tree.find('features/apic') is None
    assert tree.find('features/hyperv/relaxed').get('state') == 'off'
    assert result.changed_settings == ['features.apic', 'features.hyperv.relaxed']


def test_keyed_entries_merge_into_their_own_element():
    result = plan(HAND_MADE, clock={'timers': [{'name': 'rtc', 'tickpolicy': 'delay'}, {'name': 'hpet', 'present': False}]})
    tree = _xml.parse(result.new_xml)
    assert [(t.get('name'), t.get('tickpolicy'), t.get('present')) for t in tree.iterfind('clock/timer')] == [
        ('rtc', 'delay', None), ('hpet', None, 'no')]
    assert result.changed_settings == ['clock.timers[name=hpet].present', 'clock.timers[name=rtc].tickpolicy']


def test_memory_also_moves_the_current_memory_unless_given():
    assert plan(HAND_MADE, memory=2048).after['current_memory'] == 2048
    both = plan(HAND_MADE, memory=2048, current_memory=1024)
    assert both.after['memory'] == 2048 and both.after['current_memory'] == 1024
    assert both.changed_options == ['memory']


def test_firmware_and_machine_are_not_changed_in_place_unless_asked():
    with pytest.raises(SpecError, match="firmware: 'efi' differs .* change_firmware: true"):
        plan(HAND_MADE, firmware='efi')
    assert S.plan(HAND_MADE, settings(firmware='efi'), change_firmware=True).after['firmware'] == 'efi'
    with pytest.raises(SpecError, match="machine: 'pc' differs"):
        S.plan(HAND_MADE, settings(machine='pc'), {'pc': 'pc-i440fx-7.2'})
    assert not S.plan(HAND_MADE, settings(machine='q35'), {'q35': 'pc-q35-7.2'}).changed


def refusals(xml, host=None, will_run=False, domain_type='kvm', **given):
    result = plan(xml, **given)
    return S.check(result.tree, set(given), host, will_run, domain_type)


EFI_Q35 = HAND_MADE.replace("<os>", "<os firmware='efi'>")


@pytest.mark.parametrize('xml, given, expected', [
    (HAND_MADE, {'secure_boot': True}, 'secure_boot: true needs firmware: efi'),
    (EFI_Q35, {'secure_boot': True}, 'secure_boot: true on a q35 guest needs features.smm: true'),
    (EFI_Q35, {'enrolled_keys': True}, 'enrolled_keys: true needs secure_boot: true'),
    (HAND_MADE, {'cpu': {'topology': {'sockets': 1, 'cores': 3, 'threads': 1}}},
     'cpu.topology: {\'sockets\': 1, \'cores\': 3, \'threads\': 1} gives 3 vCPUs but vcpus is 4'),
    (HAND_MADE.replace("<target dev='vda' bus='virtio'/>", "<target dev='vda' bus='virtio'/><boot order='1'/>")
     .replace("<boot dev='hd'/>", ''), {'boot': {'order': ['cdrom']}},
     "boot.order: ['cdrom'] cannot be used together with per-device boot_order"),
    (HAND_MADE.replace('</devices>', "<filesystem type='mount'><driver type='virtiofs'/><source dir='/srv'/>"
                                     "<target dir='share'/></filesystem></devices>"),
     {'memory_backing': {'source': 'memfd'}}, 'memory_backing.access: virtiofs (filesystem share) needs shared memory'),
    (EFI_Q35, {'nvram_template': '/usr/share/OVMF/OVMF_VARS_4M.fd'}, 'nvram_template: libvirt refuses'),
])
def test_combinations_that_cannot_work_are_refused_naming_the_options(xml, given, expected):
    problems = refusals(xml, **given)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_secure_boot_with_everything_it_needs_is_accepted():
    assert refusals(EFI_Q35, secure_boot=True, enrolled_keys=True, features={'smm': True}) == []


def test_hugepages_are_checked_against_the_local_host():
    host = {'hugepage_sizes': {2048: 0, 1048576: 0}, 'default_hugepage_size': 2048}
    given = {'memory_backing': {'hugepages': True, 'hugepage_size': 4096}}
    assert refusals(HAND_MADE, host, **given)[0].startswith('memory_backing.hugepage_size: 4096 KiB pages are not offered')
    given = {'memory_backing': {'hugepages': True}}
    assert refusals(HAND_MADE, host, **given) == []          # defining is fine: pages may be reserved later
    assert refusals(HAND_MADE, host, will_run=True, **given)[0].startswith(
        'memory_backing.hugepages: the guest needs 512 free 2048 KiB pages')
    assert refusals(HAND_MADE, None, will_run=True, **given) == []   # a remote host: not ours to judge


def test_what_qemu_refuses_under_tcg_is_refused_when_the_guest_is_to_run():
    given = {'cpu': {'mode': 'host-passthrough'}, 'features': {'hyperv': {'vpindex': True}}}
    problems = refusals(HAND_MADE, will_run=True, domain_type='qemu', **given)
    assert [p.split(':')[0] for p in problems] == ['cpu.mode', 'features.hyperv.vpindex']
    assert refusals(HAND_MADE, will_run=False, domain_type='qemu', **given) == []
    assert refusals(HAND_MADE, will_run=True, domain_type='kvm', **given) == []


def test_boot_order_empty_leaves_booting_to_devices():
    result = plan(HAND_MADE.replace("<boot dev='hd'/>", "<boot dev='cdrom'/><boot dev='hd'/>"), boot={'order': []})
    assert _xml.parse(result.new_xml).find('os/boot') is None
    assert not plan(HAND_MADE, boot={'order': []}).changed    # libvirt's default hd stays: it writes it back


def test_keyed_paths_create_and_prune_their_selected_element():
    domain = _xml.parse('<domain/>')
    S.TABLE['sysinfo'].field.write(domain, {'system': {'manufacturer': 'ACME'}})
    assert _xml.to_string(domain, pretty=False) == (
        '<domain><sysinfo type="smbios"><system><entry name="manufacturer">ACME</entry></system></sysinfo></domain>')
    S.TABLE['features'].field.write(domain, {'hyperv': {'relaxed': True}})
    S.TABLE['features'].field.write(domain, {'hyperv': {'relaxed': None}})
    assert S.read(domain)['sysinfo'] == {'system': {'manufacturer': 'ACME'}}


def test_cpumap_and_flatten():
    assert S.cpumap('0-2,^1', 4) == (True, False, True, False)
    with pytest.raises(SpecError, match="'7' names CPUs the host does not have"):
        S.cpumap('7', 2)
    assert S.flatten({'cpu': {'topology': {'cores': 2}}, 'cputune': {'vcpupin': [{'vcpu': 0, 'cpuset': '1'}]}}) == {
        'cpu.topology.cores': 2, 'cputune.vcpupin[vcpu=0].cpuset': '1'}


def test_host_hugepages_are_read_from_sysfs(tmp_path):
    for size, free in ((2048, 3), (1048576, 0)):
        directory = tmp_path / 'sys/kernel/mm/hugepages' / ('hugepages-%dkB' % size)
        directory.mkdir(parents=True)
        (directory / 'free_hugepages').write_text('%d\n' % free)
    (tmp_path / 'proc').mkdir()
    (tmp_path / 'proc/meminfo').write_text('MemTotal: 1 kB\nHugepagesize:       2048 kB\n')
    expected = {'hugepage_sizes': {2048: 3, 1048576: 0}, 'default_hugepage_size': 2048}
    assert S.read_host_hugepages(str(tmp_path)) == expected


def test_argument_spec_and_docs_come_from_the_table():
    spec = S.argument_spec()
    assert spec['features']['options']['hyperv']['options']['vendor_id'] == {'type': 'str'}
    assert spec['clock']['options']['timers']['options']['name']['required'] is True
    docs = S.documentation()
    assert set(docs) == set(spec)


# --- the device side: per-device boot order on a guest with libvirt's default <os><boot dev='hd'/> ----

def test_device_boot_order_replaces_libvirts_default_boot_device():
    declared = _device_engine.declare([{'kind': 'disk', 'target': 'vda', 'boot_order': 1}], 'hand')
    result = _device_engine.plan(HAND_MADE, declared, 'merged')
    assert result.tree.find('os/boot') is None
    assert result.tree.find('devices/disk/boot').get('order') == '1'


def test_device_boot_order_against_a_chosen_boot_order_is_refused():
    declared = _device_engine.declare([{'kind': 'disk', 'target': 'vda', 'boot_order': 1}], 'hand')
    chosen = HAND_MADE.replace("<boot dev='hd'/>", "<boot dev='cdrom'/><boot dev='hd'/>")
    with pytest.raises(SpecError, match=r'config\[0\].boot_order: the domain boots by <os> order \(cdrom, hd\)'):
        _device_engine.plan(chosen, declared, 'merged')


def test_an_explicit_loader_that_changes_the_firmware_needs_change_firmware():
    loader = {'path': '/usr/share/OVMF/OVMF_CODE_4M.fd', 'readonly': True, 'type': 'pflash'}
    with pytest.raises(SpecError, match='loader: would change the firmware of the existing domain from bios to efi'):
        plan(HAND_MADE, loader=loader)
    assert S.plan(HAND_MADE, settings(loader=loader), change_firmware=True).after['firmware'] == 'efi'
