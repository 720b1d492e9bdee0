# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The guest_plan filter: profiles as data (inheritance, overrides, exclude), GPU and VF expansion, host needs."""

from __future__ import annotations

import pytest
import yaml

from ansible.errors import AnsibleFilterError

from ansible_collections.virtdev.libvirt.plugins.filter.guest_plan import guest_plan, resolve_profile
from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine, _domain_settings
from ansible_collections.virtdev.libvirt.plugins.modules import domain

ROLE_VARS = 'roles/guest/vars/main.yml'
ROLE_DEFAULTS = 'roles/guest/defaults/main.yml'
GPU_HOST = [{'address': '0000:01:00.0'}, {'address': '0000:01:00.1'}, {'address': '0000:02:00.0'}]
SRIOV_HOST = [{'address': '0000:65:00.0', 'sriov': {'vfs': ['0000:65:02.0', '0000:65:02.1']}}]


@pytest.fixture(scope='module')
def builtin(request):
    with open(request.config.rootpath / ROLE_VARS, encoding='utf-8') as handle:
        return yaml.safe_load(handle)['__guest_builtin_profiles']


@pytest.fixture(scope='module')
def defaults(request):
    with open(request.config.rootpath / ROLE_DEFAULTS, encoding='utf-8') as handle:
        role = yaml.safe_load(handle)
    keys = ('profile', 'type', 'machine', 'firmware', 'memory', 'vcpus', 'hotplug_ports', 'networks', 'state')
    return {key: role['guest_' + key] for key in keys}


def _kinds(plan):
    return [device['kind'] for device in plan['config']]


def test_every_builtin_profile_plans_valid_devices_and_settings(builtin, defaults):
    guests = [{'name': 'g-' + name, 'profile': name, 'disks': [{'file': '/srv/%s.qcow2' % name}]} for name in builtin]
    guests.append({'name': 'g-gpu', 'profile': 'gpu_passthrough', 'gpu': '01:00'})
    guests.append({'name': 'g-vf', 'profile': 'sriov_nic', 'vfs': [{'pf': 'enp65s0f0', 'index': 1}]})
    plans = guest_plan(guests, builtin, defaults, GPU_HOST + SRIOV_HOST, {'enp65s0f0': '0000:65:00.0'})
    assert [plan['profile'] for plan in plans] == list(builtin) + ['gpu_passthrough', 'sriov_nic']
    for plan in plans:
        _device_engine.declare(plan['config'], plan['name'])          # every device validates
        params = dict(plan['domain'], name=plan['name'])
        _domain_settings.normalize(_full_params(params))               # every setting validates


def _full_params(params):
    full = {key: None for key in domain.argument_spec()}
    full.update(params)
    return full


def test_inheritance_merges_domain_appends_devices_and_replaces_by_id(builtin):
    profiles = dict(builtin, web={'parent': 'linux_server', 'domain': {'features': {'pae': True}, 'title': 'web'},
                                  'devices': [{'id': 'rng', 'kind': 'rng', 'backend': '/dev/random'},
                                              {'id': 'wd', 'kind': 'watchdog', 'model': 'i6300esb'}]})
    web = resolve_profile('web', profiles)
    assert web['domain']['features'] == {'acpi': True, 'apic': True, 'pae': True}   # merged, not replaced
    assert web['domain']['on_crash'] == 'restart' and web['domain']['title'] == 'web'
    rngs = [device for device in web['devices'] if device['kind'] == 'rng']
    assert rngs == [{'id': 'rng', 'kind': 'rng', 'backend': '/dev/random'}]             # replaced by id
    assert [device['kind'] for device in web['devices']][-1] == 'watchdog'              # appended
    assert web['nic_model'] == 'virtio'                                                 # from minimal, two levels up


def test_precedence_defaults_profile_guest_then_guest_domain(builtin, defaults):
    plan, = guest_plan([{'name': 'w', 'profile': 'windows11', 'memory': 8192, 'machine': 'q35',
                         'domain': {'features': {'hyperv': {'vpindex': False}}, 'firmware': 'efi'}}],
                       builtin, defaults)
    assert plan['domain']['memory'] == 8192                         # guest beats the role default
    assert plan['domain']['firmware'] == 'efi'                      # profile beats the role default (bios)
    assert plan['domain']['features']['hyperv']['vpindex'] is False  # guest's domain beats the profile
    assert plan['domain']['features']['hyperv']['relaxed'] is True   # the rest of the profile's group stays
    assert plan['domain']['pcie_root_ports'] == 4


def test_exclude_and_vsock_opt_out_drop_profile_devices(builtin, defaults):
    plan, = guest_plan([{'name': 'v', 'profile': 'virtio', 'vsock': False, 'exclude': ['video', 'balloon']}],
                       builtin, defaults)
    kinds = _kinds(plan)
    assert 'vsock' not in kinds and 'video' not in kinds and 'memballoon' not in kinds
    assert 'rng' in kinds and 'channel' in kinds


def test_gpu_is_one_multifunction_device_and_goes_to_vfio(builtin, defaults):
    plan, = guest_plan([{'name': 'g', 'profile': 'gpu_passthrough', 'gpu': '0000:01:00.0', 'networks': []}],
                       builtin, defaults, GPU_HOST)
    hostdevs = [device for device in plan['config'] if device['kind'] == 'hostdev']
    assert [device['address'] for device in hostdevs] == ['0000:01:00.0', '0000:01:00.1']
    assert [device['guest_address'] for device in hostdevs] == ['0000:00:10.0', '0000:00:10.1']
    assert hostdevs[0]['multifunction'] is True and 'multifunction' not in hostdevs[1]
    assert plan['vfio'] == ['0000:01:00.0', '0000:01:00.1'] and plan['passthrough']
    assert plan['domain']['features']['kvm'] == {'hidden': True}


def test_vfs_by_pf_index_and_trusted_vf_as_typed_options(builtin, defaults):
    plan, = guest_plan([{'name': 's', 'profile': 'sriov_nic', 'vfs': [
        {'pf': 'p0', 'index': 0, 'mac': '52:54:00:00:00:01', 'vlan': 7},
        {'address': '0000:65:02.1', 'mac': '52:54:00:00:00:02', 'vlan': 100, 'trust': True}]}],
        builtin, defaults, SRIOV_HOST, {'p0': '0000:65:00.0'})
    nic, trusted = plan['config'][:2]
    # by PF and index: the module's source pf + vf (it finds the VF's address on the host)
    assert nic == {'kind': 'interface', 'source': {'pf': '0000:65:00.0', 'vf': 0}, 'managed': True,
                   'mac': '52:54:00:00:00:01', 'vlan': 7}
    assert trusted == {'kind': 'interface', 'source': {'hostdev': '0000:65:02.1'}, 'managed': True,
                       'mac': '52:54:00:00:00:02', 'vlan': 100, 'trust': True}
    assert plan['networks'] == [] and plan['passthrough'] and plan['vfio'] == []   # libvirt manages VFs itself
    assert plan['sriov'] == []                                                     # the PF has VF 0 already
    declared = _device_engine.declare(plan['config'], 's')
    xml = _device_engine.render(declared)
    assert 'trustGuestRxFilters="yes"' in xml[1] and '<tag id="100"/>' in xml[1], xml


def test_a_vf_the_pf_does_not_have_yet_asks_for_the_count_by_pci_address_or_name(builtin, defaults):
    host = [{'address': '0000:65:00.0', 'sriov': {'totalvfs': 8, 'numvfs': 2, 'vfs': ['0000:65:02.0', '0000:65:02.1']}}]
    plans = guest_plan([{'name': 'a', 'profile': 'sriov_nic', 'vfs': [{'pf': '65:00.0', 'index': 3}]},
                        {'name': 'b', 'profile': 'sriov_nic', 'vfs': [{'pf': 'ens1', 'index': 5}, {'pf': 'ens1', 'index': 1}]}],
                       builtin, defaults, host, {'ens1': '0000:65:00.0'})
    assert plans[0]['config'][0]['source'] == {'pf': '0000:65:00.0', 'vf': 3}
    assert plans[0]['sriov'] == [{'pf': '0000:65:00.0', 'num_vfs': 4}]
    assert plans[1]['sriov'] == [{'pf': '0000:65:00.0', 'num_vfs': 6}]     # VF 1 exists: no need of its own
    assert plans[1]['vfs_not_there'] == ['VF 5 of PF 0000:65:00.0']           # check mode cannot render it yet
    assert [device['source'] for device in plans[1]['rendered_config'] if device['kind'] == 'interface'] == [
        {'hostdev': '0000:65:02.1'}]
    with pytest.raises(AnsibleFilterError, match=r"guests\[0\] \(c\)\.vfs\[0\]\.index: 8 is out of range: PF 0000:65:00.0 can "
                                                 r"have 8 VFs"):
        guest_plan([{'name': 'c', 'vfs': [{'pf': '0000:65:00.0', 'index': 8}]}], builtin, defaults, host)
    with pytest.raises(AnsibleFilterError, match=r"vfs\[0\]\.pf: 0000:65:02.0 is an SR-IOV VF \(of PF 0000:65:00.0\)"):
        guest_plan([{'name': 'c', 'vfs': [{'pf': '0000:65:02.0', 'index': 0}]}], builtin, defaults,
                   host + [{'address': '0000:65:02.0', 'physfn': '0000:65:00.0'}])
    # the host not readable (a remote URI): the module finds (and checks) the VF itself
    plan, = guest_plan([{'name': 'd', 'profile': 'sriov_nic', 'vfs': [{'pf': '0000:65:00.0', 'index': 3}]}], builtin, defaults)
    assert plan['config'][0]['source'] == {'pf': '0000:65:00.0', 'vf': 3} and plan['sriov'] == []


@pytest.mark.parametrize('gpu', [
    '01:00', '0000:01:00.0', ['0000:01:00.0', '0000:01:00.1'], ['01:00.1', '01:00.0'], ['01:00', '01:00.1']])
def test_a_gpu_named_by_slot_or_by_each_function_is_each_function_once(builtin, defaults, gpu):
    plan, = guest_plan([{'name': 'g', 'profile': 'gpu_passthrough', 'gpu': gpu, 'networks': []}],
                       builtin, defaults, GPU_HOST)
    hostdevs = [device for device in plan['config'] if device['kind'] == 'hostdev']
    assert [(device['address'], device['guest_address']) for device in hostdevs] == [
        ('0000:01:00.0', '0000:00:10.0'), ('0000:01:00.1', '0000:00:10.1')]
    assert plan['vfio'] == ['0000:01:00.0', '0000:01:00.1']
    _device_engine.declare(plan['config'], 'g')


def test_two_gpus_and_gpus_without_the_host_read(builtin, defaults):
    plan, = guest_plan([{'name': 'g', 'profile': 'gpu_passthrough', 'gpu': ['02:00.0', '01:00.1', '01:00.0']}],
                       builtin, defaults, GPU_HOST)
    assert [(device['address'], device['guest_address']) for device in plan['config'] if device['kind'] == 'hostdev'] == [
        ('0000:02:00.0', '0000:00:10.0'), ('0000:01:00.0', '0000:00:11.0'), ('0000:01:00.1', '0000:00:11.1')]
    # host not read: the functions named, each once (function 0 for a slot named by itself)
    plan, = guest_plan([{'name': 'g', 'profile': 'gpu_passthrough', 'gpu': ['01:00.1', '01:00.0', '01:00.1', '03:00']}],
                       builtin, defaults)
    assert [device['address'] for device in plan['config'] if device['kind'] == 'hostdev'] == [
        '0000:01:00.0', '0000:01:00.1', '0000:03:00.0']


def test_networks_come_from_guest_then_profile_then_default(builtin, defaults):
    plans = guest_plan([{'name': 'a'}, {'name': 'b', 'profile': 'sriov_nic'},
                        {'name': 'c', 'networks': [{'bridge': 'br0'}]}], builtin, defaults)
    assert [plan['networks'] for plan in plans] == [['default'], [], []]


@pytest.mark.parametrize('guests, profiles, message', [
    ([{'name': 'a', 'profile': 'nope'}], {}, "profile: 'nope' is not a profile"),
    ([{'name': 'a', 'profile': 'x'}], {'x': {'parent': 'y'}, 'y': {'parent': 'x'}}, 'inheritance loops: x -> y -> x'),
    ([{'name': 'a', 'profile': 'x'}], {'x': {'nic_model': 'virtio'}}, 'profiles.x: needs disk_bus, disk_prefix'),
    ([{'name': 'a', 'profile': 'x'}], {'x': {'nic': 'virtio'}}, 'profiles.x: unknown keys nic'),
    ([{'name': 'a', 'gpu': '09:00'}], None, "guests[0] (a).gpu: '09:00': the host has no PCI device at 0000:09:00"),
    ([{'name': 'a', 'vfs': [{'pf': 'p9', 'index': 0}]}], None,
     "guests[0] (a).vfs[0].pf: 'p9' is neither a PCI address nor a network interface of this host"),
    ([{'name': 'a', 'vfs': [{'pf': '0000:01:00.0', 'index': 0}]}], None, 'vfs[0].pf: 0000:01:00.0 is not an SR-IOV PF'),
    ([{'name': 'a', 'gpu': '01:00.4'}], None, "guests[0] (a).gpu: '01:00.4': the host has no function 0000:01:00.4"),
    ([{'name': 'a', 'gpu': '01:00', 'host_devices': ['01:00.1']}], None,
     'guests[0] (a): the host device 0000:01:00.1 is given twice (host_devices and gpu)'),
    ([{'name': 'a', 'host_devices': ['65:00']}], None, 'host_devices[0]'),
    ([{'name': 'a', 'domain': {'state': 'running'}}], None, 'guests[0] (a).domain.state: is set by the role'),
    ([{'name': 'a'}, {'name': 'b'}, {'name': 'a'}], None, "guests[0] and guests[2]: name 'a' listed twice"),
    ([{'name': 'a', 'networks': ['default']}], None, "guests[0] (a).networks[0]: 'default' needs one of"),
])
def test_bad_input_names_the_field(builtin, defaults, guests, profiles, message):
    with pytest.raises(AnsibleFilterError) as error:
        guest_plan(guests, dict(builtin, **(profiles or {})) if profiles is not None else builtin, defaults, GPU_HOST)
    assert message in str(error.value)


def test_a_qcow2_image_is_attached_as_qcow2_unless_a_format_is_given(builtin, defaults):
    guests = [{'name': 'g', 'profile': 'minimal', 'disks': [
        {'file': '/srv/a.qcow2'}, {'file': '/srv/b.qcow2', 'format': 'raw'}, {'file': '/srv/c.img'}]}]
    disks = [device for device in guest_plan(guests, builtin, defaults)[0]['config'] if device['kind'] == 'disk']
    assert [disk.get('format') for disk in disks] == ['qcow2', 'raw', None]


def test_an_unknown_profile_or_exclude_names_the_guest_and_the_entry(builtin, defaults):
    with pytest.raises(AnsibleFilterError, match=r"guests\[0\] \(b1\)\.profile: 'nosuch' is not a profile"):
        guest_plan([{'name': 'b1', 'profile': 'nosuch'}], builtin, defaults)
    with pytest.raises(AnsibleFilterError, match=r"guests\[0\] \(b1\)\.exclude\[1\]: 'nosuchdev' is no device id or kind"):
        guest_plan([{'name': 'b1', 'profile': 'virtio', 'exclude': ['rng', 'nosuchdev']}], builtin, defaults)


@pytest.fixture(scope='module')
def guest_options(request):
    with open(request.config.rootpath / 'roles/guest/meta/argument_specs.yml', encoding='utf-8') as handle:
        return yaml.safe_load(handle)['argument_specs']['main']['options']['guests']['options']


@pytest.mark.parametrize('guests, expected', [
    ([{'name': 'a', 'memory': '2G'}], ["guests[0] (a).memory: '2G' (str) is not a valid int"]),
    ([{'name': 'a'}, {'name': 'b', 'vfs': [{'pf': 'ens1', 'index': 0}, {'address': '65:02.1', 'vlan': 'ten'}]}],
     ["guests[1] (b).vfs[1].vlan: 'ten' (str) is not a valid int"]),
    ([{'name': 'a', 'state': 'up', 'vsock': 'maybe'}],
     ["guests[0] (a).state: 'up' is not one of present, running, shutoff", "guests[0] (a).vsock: 'maybe' (str) is not a valid bool"]),
    ([{'name': 'a', 'mdevs': [{'uuid': 'x', 'parent': '0000:00:02.0'}]}], ['guests[0] (a).mdevs[0].mdev_type: is required']),
    ([{'memory': 1}], ['guests[0].name: is required']),
    ([{'name': 'a', 'disks': 'x.qcow2'}, 'b'], ["guests[0] (a).disks[0]: 'x.qcow2' (str) is not a valid dict",
                                                "guests[1]: 'b' (str) is not a valid dict"]),
    ([{'name': 'a', 'memory': '2048', 'vfs': [{'pf': 'ens1', 'index': '1', 'trust': 'yes'}]}], []),   # as ansible converts
    ([{'name': 'a', 'memroy': 2048}], ['guests[0] (a).memroy: unknown option (given 2048) - did you mean memory? '
                                       '(options: autostart, cdroms, ']),
    ([{'name': 'a', 'disks': [{'file': '/a.img'}, {'fiel': '/b.img'}], 'networks': [{'netwrok': 'default'}]}],
     ["guests[0] (a).networks[0].netwrok: unknown option (given 'default') - did you mean network?",
      "guests[0] (a).disks[1].fiel: unknown option (given '/b.img') - did you mean file?"]),
    ([{'name': 'web01'}, {'name': 'b'}, {'name': 'c'}, {'name': 'web01'}],
     ["guests[0] and guests[3]: name 'web01' listed twice"]),
])
def test_input_errors_name_the_guest_the_index_and_the_value(guest_options, guests, expected):
    from ansible_collections.virtdev.libvirt.plugins.filter.guest_input_errors import guest_input_errors
    errors = guest_input_errors(guests, guest_options)
    assert len(errors) == len(expected) and all(error.startswith(start) for error, start in zip(errors, expected))


# every device a guest gets is checked with the kind table's rules before any task writes, naming the user's field
@pytest.mark.parametrize('guest, message', [
    ({'networks': [{'network': 'default', 'mac': '52:54:00:zz:00:01'}]},
     "guests[1] (web01).networks[0].mac: '52:54:00:zz:00:01' is not a MAC address"),
    ({'networks': [{'netwrok': 'default'}]}, "guests[1] (web01).networks[0].netwrok: unknown option (given 'default') - did "
                                             "you mean network? (options: network, bridge"),
    ({'disks': [{'file': '/a.qcow2'}, {'fiel': '/b.qcow2'}]}, "guests[1] (web01).disks[1].fiel: unknown option "
                                                              "(given '/b.qcow2') - did you mean file?"),
    ({'disks': [{'file': '/a.qcow2', 'cahce': 'none'}]}, "guests[1] (web01).disks[0].cahce: unknown option "
                                                         "(given 'none') - did you mean cache?"),
    ({'networks': [{'network': 'default', 'vlan': 'ten'}]}, "guests[1] (web01).networks[0].vlan: 'ten' (str) is not a "
                                                            'valid int'),
    ({'disks': [{'file': 'web01.qcow2'}]}, "guests[1] (web01).disks[0].file: 'web01.qcow2' is not an absolute path"),
    ({'disks': [{'file': '/a.qcow2', 'cache': 'fast'}]}, "guests[1] (web01).disks[0].cache: 'fast' is not one of"),
    ({'cdroms': ['/iso/a.iso', 'b.iso']}, "guests[1] (web01).cdroms[1]: 'b.iso' is not an absolute path"),
    ({'devices': [{'kind': 'watchdog', 'modle': 'ib700'}]}, 'guests[1] (web01).devices[0]: option(s) modle do not '
                                                            'belong to watchdog'),
    ({'extra_devices': [{'kind': 'watchdog', 'model': 'nope'}]}, "guests[1] (web01).extra_devices[0].model: 'nope' is "
                                                                 'not one of'),
    ({'vfs': [{'address': '0000:65:02.0', 'vlan': 5000}]}, 'guests[1] (web01).vfs[0].vlan: 5000 is out of range'),
    ({'vfs': [{'adress': '0000:65:02.0'}]}, "guests[1] (web01).vfs[0].adress: unknown option (given '0000:65:02.0') - "
                                            'did you mean address?'),
    ({'mdevs': [{'uuid': 'nope', 'parent': '0000:00:02.0', 'mdev_type': 't'}]},
     "guests[1] (web01).mdevs[0].uuid: 'nope' is not a UUID"),
    ({'networks': [{'network': 'default', 'mac': '52:54:00:00:00:01'}, {'bridge': 'br0', 'mac': '52:54:00:00:00:01'}]},
     'guests[1] (web01).networks[1]: declares the same device as guests[1] (web01).networks[0] (interface mac '
     '52:54:00:00:00:01)'),
    ({'profile': 'bad'}, "profiles.bad.devices[1] (of guests[1] (web01)).model: 'zz' is not one of"),
    ({'profile': 'bad_nets'}, "profiles.bad_nets.networks[0] (of guests[1] (web01)).mac: '1' is not a MAC address"),
    ({'profile': 'minimal'}, "guest_networks[0] (of guests[1] (web01)).mode: 'x' is not one of"),
])
def test_every_device_is_checked_before_anything_naming_the_users_field(builtin, guest, message):
    bad = [{'id': 'vsock', 'kind': 'vsock'}, {'id': 'w', 'kind': 'watchdog', 'model': 'zz'}]
    profiles = dict(builtin, bad={'parent': 'virtio', 'devices': bad},
                    bad_nets={'parent': 'minimal', 'networks': [{'network': 'default', 'mac': '1'}]})
    # the role's default NICs (guest_networks) are wrong only for the guest that takes them (no networks of its own)
    defaults = {'networks': [{'direct': 'eth0', 'mode': 'x'}]} if guest == {'profile': 'minimal'} else {}
    with pytest.raises(AnsibleFilterError) as error:
        guest_plan([{'name': 'ok1', 'networks': []}, dict(guest, name='web01')], profiles, defaults)
    assert str(error.value).startswith(message), str(error.value)


def test_device_values_are_converted_as_the_module_converts_them(builtin):
    plan, = guest_plan([{'name': 'g', 'networks': [{'network': 'default', 'vlan': '10', 'mac': '52:54:00:AA:00:01'}]}],
                       builtin)
    assert plan['config'][0]['vlan'] == '10'            # passed on as given: the module converts it the same way


def test_without_lxml_on_the_controller_the_kind_rules_still_apply(builtin, monkeypatch):
    from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml
    monkeypatch.setattr(_xml, 'HAS_LXML', False)
    with pytest.raises(AnsibleFilterError, match=r"guests\[0\] \(g\)\.networks\[0\]\.mac: 'x' is not a MAC"):
        guest_plan([{'name': 'g', 'networks': [{'network': 'default', 'mac': 'x'}]}], builtin)
    assert guest_plan([{'name': 'g', 'devices': [{'kind': 'xml', 'xml': '<watchdog model="ib700"/>'}]}], builtin)


def test_called_alone_the_filter_knows_the_builtin_profiles(builtin):
    plan, = guest_plan([{'name': 'g', 'profile': 'minimal'}])
    assert plan['profile'] == 'minimal' and plan['config'] == []
    own = {'web': {'parent': 'linux_server', 'domain': {'title': 'web'}}, 'minimal': dict(builtin['minimal'], nic_model='e1000e')}
    web, small = guest_plan([{'name': 'w', 'profile': 'web', 'networks': [{'network': 'default'}]},
                             {'name': 's', 'profile': 'minimal', 'networks': [{'network': 'default'}]}], own)
    assert web['domain']['title'] == 'web' and web['domain']['on_crash'] == 'restart'   # built-in parent resolved
    assert small['config'][0]['model'] == 'e1000e'                                     # a user profile replaces by name


def test_the_guide_example_plans_with_the_guides_profiles(request):
    """docs/guide_profiles.md: its guest_profiles block, then its standalone filter call."""
    text = (request.config.rootpath / 'docs/guide_profiles.md').read_text(encoding='utf-8')
    blocks = [yaml.safe_load(block) for block in text.split('```yaml\n')[1:] for block in [block.split('```')[0]]]
    profiles = next(block['guest_profiles'] for block in blocks if isinstance(block, dict) and 'guest_profiles' in block)
    call = next(block[0]['ansible.builtin.debug']['msg'] for block in blocks
                if isinstance(block, list) and 'ansible.builtin.debug' in block[0])
    assert call == "{{ [{'name': 'web07', 'profile': 'web'}] | virtdev.libvirt.guest_plan(guest_profiles) }}"
    plan, = guest_plan([{'name': 'web07', 'profile': 'web'}], profiles)
    assert plan['domain']['title'] == 'web server' and {'kind': 'watchdog', 'model': 'i6300esb', 'action': 'reset'} \
        in plan['config']


def test_devices_asked_for_by_mapping_are_left_to_the_host_in_rendered_config(builtin):
    plan, = guest_plan([{'name': 'g', 'networks': [{'network': 'default'}], 'devices': [
        {'kind': 'hostdev', 'mapping': 'gpu'}, {'kind': 'interface', 'source': {'mapping': 'x710-vf'}}]}], builtin)
    assert {'kind': 'hostdev', 'mapping': 'gpu'} in plan['manifest']['config'] and plan['passthrough'] is True
    assert plan['mappings_unresolved'] == ['gpu', 'x710-vf']
    assert [device['kind'] for device in plan['rendered_config']] == ['interface'] + [
        device['kind'] for device in builtin['virtio']['devices']]
    _device_engine.declare(plan['rendered_config'], 'g')      # what state=rendered takes: no mapping left
