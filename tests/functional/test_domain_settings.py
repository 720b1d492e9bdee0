# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""virtdev.libvirt.domain's domain-level settings against the private libvirtd.

The Windows 11 and GPU guests of docs/guide_windows11.md and docs/guide_gpu_passthrough.md are made by
the guides' own playbooks, re-applied with no change, edited one setting at a time (check mode first,
which must predict the real run exactly and write nothing), and started under TCG. Guests made by
``virt-install --print-xml`` are read with ``gathered`` and fed back: nothing changes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

PLAYBOOKS = Path(__file__).resolve().parents[2] / 'playbooks'


def play(playbook, uri, collections, expect_failure=False, check=False, **extra):
    """Run a playbook of playbooks/ (``check``: with --check --diff); returns (changed count, output)."""
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR='1')
    extra['libvirt_uri'] = uri
    argv = [ansible_playbook, str(PLAYBOOKS / playbook), '-e', json.dumps(extra)] + (['--check', '--diff'] if check else [])
    proc = subprocess.run(argv, env=env,
                          text=True, capture_output=True, stdin=subprocess.DEVNULL, timeout=900, check=False)
    recap = re.search(r'localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)', proc.stdout)
    output = proc.stdout[-4000:] + proc.stderr[-2000:]
    if expect_failure:
        assert proc.returncode != 0 and recap and recap.group(3) == '1', output
    else:
        assert proc.returncode == 0 and recap, output
    return int(recap.group(2)), proc.stdout


def changed_settings(result):
    """The settings a result's diff shows as changed (its diff is one line per setting)."""
    before, after = result['diff']['before'], result['diff']['after']
    return sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))


class Guest:
    """One guest of the private libvirtd and the module runs against it."""

    def __init__(self, name, uri, run_module, virsh):
        self.name, self.uri, self.run_module, self.virsh = name, uri, run_module, virsh

    def xml(self, inactive=True):
        return self.virsh(self.uri, 'dumpxml', *(['--inactive'] if inactive else []), self.name)

    def state(self):
        return self.virsh(self.uri, 'domstate', self.name).strip()

    def run(self, check_mode=False, diff=False, **args):
        return self.run_module('domain', dict(args, uri=self.uri, name=self.name), check_mode=check_mode, diff=diff)

    def edit(self, expected, **args):
        """Check mode, then the real run, then again: the prediction is exact, one line changes, once."""
        before = self.xml()
        predicted = self.run(check_mode=True, diff=True, **args)
        assert predicted['rc'] == 0 and predicted['changed'] is True, predicted
        assert self.xml() == before, 'check mode wrote to libvirt'
        done = self.run(diff=True, **args)
        assert done['rc'] == 0, done
        for key in ('changed', 'commands', 'settings', 'diff', 'waiting_for_restart', 'domain'):
            assert predicted[key] == done[key], (key, predicted[key], done[key])
        assert changed_settings(done) == expected, done['diff']
        again = self.run(**args)
        assert again['changed'] is False and again['commands'] == [], again
        return done

    def refused(self, expected, **args):
        before, state = self.xml(), self.state()
        result = self.run(**args)
        assert result.get('failed') is True and expected in result['msg'], result
        assert self.xml() == before and self.state() == state, 'a refused run changed the guest'
        return result

    def remove(self):
        self.virsh(self.uri, 'destroy', self.name, check=False)
        self.run_module('domain', {'uri': self.uri, 'name': self.name, 'state': 'absent'})


@pytest.fixture
def guest(libvirtd_uri, run_module, virsh):
    made = []

    def make(name):
        made.append(Guest(name, libvirtd_uri, run_module, virsh))
        return made[-1]

    yield make
    for each in made:
        each.remove()


def wait_running(guest, seconds=20):
    """Still running some seconds after start: QEMU did not refuse what libvirt defined."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert guest.state() == 'running', guest.virsh(guest.uri, 'domstate', '--reason', guest.name)
        time.sleep(2)


def test_windows11_guest(guest, libvirtd_uri, collection_pythonpath, tmp_path):
    win = guest('w11')
    disk, iso = tmp_path / 'w11.qcow2', tmp_path / 'w11.iso'
    iso.write_bytes(b'\0' * 2 * 1024 * 1024)
    common = {'win11_name': 'w11', 'win11_type': 'qemu', 'win11_memory': 512, 'win11_disk': str(disk),
              'win11_disk_size': '64M', 'win11_iso': str(iso)}

    # the guide's playbook as written for a KVM host (defined only: this machine cannot run KVM guests)
    changed, _out = play('windows11_guest.yml', libvirtd_uri, collection_pythonpath, **common)
    assert changed == 3  # disk image, domain, devices
    changed, _out = play('windows11_guest.yml', libvirtd_uri, collection_pythonpath, **common)
    assert changed == 0
    settings = win.run(state='gathered')['gathered']
    assert settings['firmware'] == 'efi' and settings['secure_boot'] is True and settings['enrolled_keys'] is True
    assert settings['features']['smm'] is True and settings['features']['hyperv']['stimer'] is True
    assert settings['cpu']['mode'] == 'host-passthrough' and settings['cpu']['topology']['threads'] == 2
    assert settings['boot']['order'] == ['cdrom', 'hd'] and settings['clock']['offset'] == 'localtime'
    assert "<tpm model='tpm-crb'>" in win.xml()

    # one setting at a time: one line of diff, predicted exactly by check mode
    win.edit(['features.hyperv.vendor_id'], features={'hyperv': {'vendor_id': 'Win11Guest'}})
    win.edit(['clock.timers[name=rtc].tickpolicy'], clock={'timers': [{'name': 'rtc', 'tickpolicy': 'delay'}]})
    win.edit(['boot.menu'], boot={'menu': False})
    win.edit(['current_memory'], current_memory=384)
    win.edit(['title'], title='Windows 11 (test)')

    # what QEMU refuses under TCG is refused before anything is written, naming the option
    win.refused('cpu.mode: host-passthrough needs KVM', state='running')

    # the TCG variant of the same playbook really starts: OVMF secure boot with SMM, swtpm, Hyper-V subset
    changed, _out = play('windows11_guest.yml', libvirtd_uri, collection_pythonpath, win11_tcg=True,
                         win11_state='running', **common)
    assert changed == 2  # the settings (cpu mode, vpindex/synic/stimer off), start
    wait_running(win)
    live = win.xml(inactive=False)
    processes = subprocess.run(['ps', '-eo', 'comm'], capture_output=True, text=True, check=True).stdout
    assert "secure='yes'" in live and 'swtpm' in processes
    changed, _out = play('windows11_guest.yml', libvirtd_uri, collection_pythonpath, win11_tcg=True,
                         win11_state='running', **common)
    assert changed == 0


def test_windows11_guest_refused_device_leaves_no_guest(guest, libvirtd_uri, collection_pythonpath, virsh, tmp_path):
    """The guide's playbook defines the guest before its devices: a device refused then removes the guest it
    created (a relative installer path: libvirt takes only absolute paths)."""
    guest('w11bad')   # removed after the test, should anything be left
    _changed, out = play('windows11_guest.yml', libvirtd_uri, collection_pythonpath, expect_failure=True,
                         win11_name='w11bad', win11_type='qemu', win11_memory=256, win11_disk=str(tmp_path / 'w.qcow2'),
                         win11_disk_size='16M', win11_iso='Win11.iso')
    assert "'Win11.iso' is not an absolute path" in out and 'w11bad this run' in out, out
    assert 'w11bad' not in virsh(libvirtd_uri, 'list', '--all', '--name').split(), 'a half-made guest was left'


def test_gpu_guest(guest, libvirtd_uri, collection_pythonpath, virsh):
    gpu = guest('gpu1')
    common = {'gpu_name': 'gpu1', 'gpu_memory': 512, 'gpu_type': 'qemu'}
    host_free = sum(int(Path(d, 'free_hugepages').read_text()) for d in Path('/sys/kernel/mm/hugepages').iterdir()
                    if d.name == 'hugepages-2048kB')
    if host_free < 256:
        # this host has no free huge pages: the guest is defined, but starting it is refused up front
        _changed, out = play('gpu_guest.yml', libvirtd_uri, collection_pythonpath, expect_failure=True,
                             gpu_state='running', **common)
        assert 'memory_backing.hugepages: the guest needs 256 free 2048 KiB pages' in out
        assert gpu.state() == 'shut off'
        gpu.refused('memory_backing.hugepages: the guest needs 256 free', state='running')

    changed, _out = play('gpu_guest.yml', libvirtd_uri, collection_pythonpath, **common)
    assert changed == (0 if host_free < 256 else 1)
    changed, _out = play('gpu_guest.yml', libvirtd_uri, collection_pythonpath, **common)
    assert changed == 0
    settings = gpu.run(state='gathered')['gathered']
    assert settings['features']['kvm'] == {'hidden': True}
    assert settings['features']['hyperv']['vendor_id'] == '0123456789ab'
    assert settings['memory_backing'] == {'hugepages': True, 'hugepage_size': 2048, 'locked': True}
    assert settings['cputune'] == {'vcpupin': [{'vcpu': 0, 'cpuset': '1'}, {'vcpu': 1, 'cpuset': '0'}],
                                   'emulatorpin': '0'}

    gpu.edit(['features.hyperv.vendor_id'], features={'hyperv': {'vendor_id': 'NotAHypervsr'}})
    gpu.edit(['features.kvm.hint_dedicated'], features={'kvm': {'hint_dedicated': True}})
    gpu.edit(['cputune.vcpupin[vcpu=1].cpuset'], cputune={'vcpupin': [{'vcpu': 1, 'cpuset': '1'}]})
    gpu.edit(['current_vcpus'], current_vcpus=1)   # one vCPU online at boot, the second hot-plugged below
    gpu.refused("features.hyperv.vendor_id: 'ThirteenChars' must be 1 to 12 characters",
                features={'hyperv': {'vendor_id': 'ThirteenChars'}})

    # the TCG variant starts (no huge pages on this host, no host CPU under TCG)
    changed, _out = play('gpu_guest.yml', libvirtd_uri, collection_pythonpath, gpu_tcg=True, gpu_state='running',
                         **common)
    assert changed == 2
    wait_running(gpu, seconds=6)

    # live where libvirt can: pinning, title, balloon target; the rest waits for a restart, by name
    pinned = gpu.edit(['cputune.vcpupin[vcpu=0].cpuset'], cputune={'vcpupin': [{'vcpu': 0, 'cpuset': '0'}]})
    assert pinned['commands'] == ['define', 'live cputune.vcpupin[vcpu=0]'] and pinned['restart_required'] is False
    assert re.search(r'^\s*0\s+0\s*$', virsh(libvirtd_uri, 'vcpupin', '--live', 'gpu1'), re.M)
    titled = gpu.edit(['title'], title='GPU guest (live)')
    assert titled['commands'] == ['define', 'live title']
    assert virsh(libvirtd_uri, 'desc', '--live', '--title', 'gpu1').strip() == 'GPU guest (live)'
    plugged = gpu.edit(['current_vcpus'], current_vcpus=2)
    assert plugged['commands'] == ['define', 'live current_vcpus'] and plugged['restart_required'] is False
    assert virsh(libvirtd_uri, 'vcpucount', '--live', '--active', 'gpu1').strip() == '2'
    # (no live balloon target here: the gpu_passthrough profile turns the balloon off - memory of a guest with a
    # device passed through is pinned, so a balloon frees nothing)
    later = gpu.edit(['features.hyperv.vendor_id'], features={'hyperv': {'vendor_id': 'AfterReboot'}})
    assert later['restart_required'] is True and later['waiting_for_restart'] == ['features.hyperv.vendor_id']
    restarted = gpu.run(features={'hyperv': {'vendor_id': 'Rebooted'}}, restart='if_required', shutdown_timeout=5)
    assert restarted['restarted'] is True and restarted['waiting_for_restart'] == [], restarted
    assert restarted['commands'][0] == 'define' and restarted['commands'][-1] == 'start'
    wait_running(gpu, seconds=4)
    cmdline = _qemu_cmdline('gpu1')
    assert 'hv-vendor-id=Rebooted' in cmdline and 'kvm=off' in cmdline, cmdline


def test_gpu_guest_checks_the_host_first_and_passes_each_function_once(guest, libvirtd_uri, collection_pythonpath,
                                                                       virsh, tmp_path):
    """The guide's playbook through the guest role: a device the host checks refuse leaves no guest; a GPU named
    by each of its functions (or by its slot) is one multi-function device, each function once."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'unit'))
    import sysfs_trees  # pylint: disable=import-outside-toplevel
    root = sysfs_trees.build('desktop', tmp_path)
    guest('gpu2')   # removed after the test
    common = {'gpu_name': 'gpu2', 'gpu_memory': 256, 'gpu_tcg': True, 'gpu_host_root': str(root)}

    # the host's default-route NIC (host-critical): refused before the guest is defined, in check mode too
    for check in (True, False):
        _changed, out = play('gpu_guest.yml', libvirtd_uri, collection_pythonpath, expect_failure=True,
                             check=check, gpu_addresses=['0000:00:1f.6'], **common)
        assert '0000:00:1f.6' in out and 'no guest was changed' in out, out
        assert 'gpu2' not in virsh(libvirtd_uri, 'list', '--all', '--name').split(), 'a refused device left a guest'

    # the GPU by each function (the survey's text form): both functions once, one multi-function device
    changed, _out = play('gpu_guest.yml', libvirtd_uri, collection_pythonpath,
                         gpu_addresses='0000:01:00.0, 0000:01:00.1', **common)
    assert changed == 2   # the guest, its devices
    xml = virsh(libvirtd_uri, 'dumpxml', '--inactive', 'gpu2')
    sources = re.findall(r"<hostdev mode='subsystem' type='pci' managed='yes'>\s*<source>\s*"
                         r"<address domain='0x0000' bus='0x01' slot='0x00' function='(0x\d)'/>", xml)
    assert sorted(sources) == ['0x0', '0x1'], xml
    assert "slot='0x10' function='0x0' multifunction='on'" in xml, xml
    # the same GPU by its slot: nothing to change
    changed, _out = play('gpu_guest.yml', libvirtd_uri, collection_pythonpath, gpu_addresses=['0000:01:00'], **common)
    assert changed == 0


def _qemu_cmdline(name):
    """The command line of the running QEMU of a guest (its -name guest=NAME argument finds it)."""
    for proc in Path('/proc').iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / 'cmdline').read_bytes().split(b'\0')
        except OSError:
            continue
        if argv and argv[0].endswith(b'qemu-system-x86_64') and any(
                arg.startswith(b'guest=%s,' % name.encode()) for arg in argv):
            return b' '.join(argv).decode(errors='replace')
    return ''


@pytest.mark.parametrize('profile', ['win11', 'win2k22', 'fedora37', 'debian11'])
def test_gathered_from_virt_install_guests_applies_as_a_no_op(profile, guest, libvirtd_uri, run_module, virsh):
    name = 'vi-' + profile
    made = guest(name)
    printed = subprocess.run(['virt-install', '--connect', libvirtd_uri, '--print-xml', '--name', name, '--osinfo',
                              profile, '--memory', '1024', '--vcpus', '2', '--disk', 'none', '--install',
                              'no_install=yes', '--noautoconsole'], capture_output=True, text=True, timeout=120,
                             check=True).stdout
    virsh(libvirtd_uri, 'define', '{xml}', xml=printed)
    before = made.xml()
    gathered = made.run(state='gathered')
    assert gathered['changed'] is False and gathered['gathered']['features']['acpi'] is True
    settings = dict(gathered['gathered'])
    for check_mode in (True, False):
        applied = made.run(check_mode=check_mode, **settings)
        assert applied['rc'] == 0 and applied['changed'] is False and applied['commands'] == [], applied
    assert made.xml() == before
    parsed = run_module('domain', {'name': name, 'state': 'parsed', 'running_config': before})
    assert parsed['parsed'] == {k: v for k, v in settings.items() if k != 'autostart'}
    assert parsed['unmanaged'] == gathered['unmanaged'] and 'metadata' in parsed['unmanaged']


BAD_INPUT = [
    ({'secure_boot': True}, 'secure_boot: true needs firmware: efi'),
    ({'cpu': {'topology': {'sockets': 1, 'cores': 3, 'threads': 1}}}, 'cpu.topology:'),
    ({'memory_backing': {'hugepages': True, 'hugepage_size': 64}}, 'memory_backing.hugepage_size: 64 KiB pages'),
    ({'features': {'hyperv': {'vendor_id': '0123456789abc'}}}, "features.hyperv.vendor_id: '0123456789abc'"),
    ({'boot': {'order': ['floppy']}}, 'Got no match for: floppy found in boot'),
    ({'vcpus': 'many'}, "argument 'vcpus' is of type"),
    ({'memory': 8}, 'memory: 8 is out of range'),
    ({'cpu': {'topology': {'cores': 0}}}, 'cpu.topology.cores: 0 is out of range'),
    ({'clock': {'timers': [{'name': 'rtc', 'tickpolicy': 'later'}]}},
     'tickpolicy must be one of: delay, catchup, merge, discard, got: later found in clock -> timers'),
    ({'firmware': 'efi'}, "firmware: 'efi' differs from the existing domain's 'bios'"),
]


def test_bad_input_is_refused_naming_the_option_and_nothing_is_written(guest):
    bad = guest('bad')
    assert bad.run(type='qemu', machine='q35', memory=256, vcpus=2)['changed'] is True
    for args, expected in BAD_INPUT:
        assert bad.refused(expected, **args)['rc'] == 1
    efi = guest('bad-efi')
    assert efi.run(type='qemu', machine='q35', memory=256, firmware='efi')['changed'] is True
    efi.refused('secure_boot: true on a q35 guest needs features.smm: true', secure_boot=True)
    efi.refused('enrolled_keys: true needs secure_boot: true', enrolled_keys=True)
    efi.refused('nvram_template: libvirt refuses an NVRAM template together with firmware auto-selection',
                nvram_template='/usr/share/OVMF/OVMF_VARS_4M.fd')


def test_virtiofs_without_shared_memory_and_boot_order_with_device_boot_order(guest, run_module, tmp_path):
    image = tmp_path / 'share.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(image), '16M'], check=True)
    share = guest('share')
    share.run(type='qemu', machine='q35', memory=256, memory_backing={'source': 'memfd', 'access': 'shared'})
    shared = run_module('domain_devices', {'uri': share.uri, 'domain': 'share', 'config': [
        {'kind': 'filesystem', 'driver': 'virtiofs', 'source': {'dir': '/srv'}, 'target': 'share'},
        {'kind': 'disk', 'target': 'vda', 'source': {'file': str(image)}, 'format': 'qcow2',
         'boot_order': 1}]})
    # per-device boot order on a guest the module created (libvirt gave it <boot dev='hd'/>) now works
    assert shared['changed'] is True and shared['rc'] == 0, shared
    share.refused('memory_backing.access: virtiofs (filesystem share) needs shared memory',
                  memory_backing={'access': 'private'})
    share.refused("boot.order: ['cdrom'] cannot be used together with per-device boot_order",
                  boot={'order': ['cdrom']})
    share.edit(['memory_backing.nosharepages'], memory_backing={'nosharepages': True})


# one edit per setting group (and every live row): check mode must predict the real run exactly
EVERY_SETTING = [
    ({'secure_boot': True, 'enrolled_keys': True, 'features': {'smm': True}},
     ['enrolled_keys', 'features.smm', 'secure_boot']),
    ({'memory': 320}, ['current_memory', 'memory']),
    ({'current_memory': 288}, ['current_memory']),
    ({'vcpus': 4}, ['current_vcpus', 'vcpus']),
    ({'current_vcpus': 2}, ['current_vcpus']),
    # a new type qemu guest has libvirt's <cpu mode='custom'><model fallback='forbid'>qemu64</model>
    ({'cpu': {'mode': 'custom', 'model': 'Skylake-Client', 'fallback': 'forbid'}}, ['cpu.model']),
    ({'cpu': {'topology': {'sockets': 1, 'cores': 2, 'threads': 2}}},
     ['cpu.topology.cores', 'cpu.topology.dies', 'cpu.topology.sockets', 'cpu.topology.threads']),
    ({'cpu': {'features': [{'name': 'vmx', 'policy': 'disable'}]}}, ['cpu.features[name=vmx].policy']),
    ({'cpu': {'cache': {'mode': 'emulate', 'level': 3}}}, ['cpu.cache.level', 'cpu.cache.mode']),
    ({'cpu': {'numa': [{'id': 0, 'cpus': '0-3', 'memory': 320}]}},
     ['cpu.numa[id=0].cpus', 'cpu.numa[id=0].memory']),
    ({'iothreads': 2}, ['iothreads']),
    ({'cputune': {'vcpupin': [{'vcpu': 0, 'cpuset': '1'}], 'emulatorpin': '0', 'iothreadpin': [
        {'iothread': 1, 'cpuset': '0'}]}},
     ['cputune.emulatorpin', 'cputune.iothreadpin[iothread=1].cpuset', 'cputune.vcpupin[vcpu=0].cpuset']),
    ({'numatune': {'mode': 'strict', 'nodeset': '0'}}, ['numatune.mode', 'numatune.nodeset']),
    ({'memory_backing': {'nosharepages': True}}, ['memory_backing.nosharepages']),
    ({'memory_backing': {'hugepages': True, 'hugepage_size': 2048}},
     ['memory_backing.hugepage_size', 'memory_backing.hugepages']),
    ({'boot': {'order': ['network', 'hd'], 'menu': True, 'menu_timeout': 3000}},
     ['boot.menu', 'boot.menu_timeout', 'boot.order']),
    ({'boot': {'smbios': 'sysinfo'}, 'sysinfo': {'system': {'manufacturer': 'ACME', 'serial': 'SN1'}}},
     ['boot.smbios', 'sysinfo.system.manufacturer', 'sysinfo.system.serial']),
    ({'features': {'pae': True, 'pmu': False, 'ioapic': 'qemu', 'vmport': False}},
     ['features.ioapic', 'features.pae', 'features.pmu', 'features.vmport']),
    ({'features': {'kvm': {'hidden': True, 'poll_control': True}}},
     ['features.kvm.hidden', 'features.kvm.poll_control']),
    ({'features': {'hyperv': {'mode': 'passthrough'}}}, ['features.hyperv.mode']),
    ({'clock': {'offset': 'timezone', 'timezone': 'Europe/Paris'}}, ['clock.offset', 'clock.timezone']),
    ({'clock': {'timers': [{'name': 'kvmclock', 'present': False}]}}, ['clock.timers[name=kvmclock].present']),
    ({'on_poweroff': 'destroy', 'on_reboot': 'destroy', 'on_crash': 'coredump-destroy'},
     ['on_crash', 'on_reboot']),
    ({'title': 'T', 'description': 'D'}, ['description', 'title']),
    ({'on_poweroff': 'restart', 'on_reboot': 'restart'}, ['on_poweroff', 'on_reboot']),
    ({'firmware': 'bios', 'change_firmware': True}, ['enrolled_keys', 'firmware', 'secure_boot']),
    ({'loader': {'path': '/usr/share/OVMF/OVMF_CODE_4M.fd', 'readonly': True, 'type': 'pflash'},
      'nvram_template': '/usr/share/OVMF/OVMF_VARS_4M.fd', 'change_firmware': True},
     ['firmware', 'loader.path', 'loader.readonly', 'loader.type', 'nvram_template']),
]


def test_check_mode_predicts_every_setting_exactly(guest):
    every = guest('every')
    created = every.run(type='qemu', machine='q35', memory=256, vcpus=2, firmware='efi')
    predicted = every.run(check_mode=True, type='qemu', machine='q35', memory=256, vcpus=2, firmware='efi')
    assert predicted['changed'] is False and created['changed'] is True
    for args, expected in EVERY_SETTING:
        every.edit(expected, **args)
    covered = {path.split('.')[0].split('[')[0] for _args, paths in EVERY_SETTING for path in paths}
    from ansible_collections.virtdev.libvirt.plugins.module_utils._domain_settings import TABLE
    assert set(TABLE) - covered == {'machine'}   # the machine type is never changed in place


def test_creation_is_predicted_exactly(guest):
    new = guest('newborn')
    args = dict(type='qemu', machine='q35', memory=256, vcpus=2, firmware='efi', secure_boot=True,
                features={'smm': True, 'hyperv': {'relaxed': True}}, cpu={'mode': 'maximum'},
                clock={'offset': 'localtime'}, title='new', autostart=True)
    predicted = new.run(check_mode=True, diff=True, **args)
    done = new.run(diff=True, **args)
    for key in ('changed', 'commands', 'settings', 'diff'):
        assert predicted[key] == done[key], (key, predicted[key], done[key])
    assert done['commands'] == ['define', 'autostart'] and done['settings']['autostart'] is True
    assert new.run(**args)['changed'] is False


BALLOON_GUEST = ("<domain type='qemu'><name>{name}</name><memory unit='MiB'>256</memory>"
                 "<currentMemory unit='MiB'>256</currentMemory><os><type arch='x86_64' machine='pc'>hvm</type></os>"
                 "<devices>{balloon}</devices>"
                 "</domain>")


@pytest.mark.parametrize('balloon, live', [("<memballoon model='none'/>", False),
                                           ("<memballoon model='virtio'/>", True)], ids=['no-balloon', 'balloon'])
def test_current_memory_of_a_running_guest_is_live_only_with_a_balloon(balloon, live, guest, virsh, libvirtd_uri):
    """libvirt changes a running guest's current memory through its balloon: without one the change is
    written to the definition and waits for the next boot, in check mode and in the real run alike."""
    running = guest('balloon-' + ('yes' if live else 'no'))
    virsh(libvirtd_uri, 'define', '{xml}', xml=BALLOON_GUEST.format(name=running.name, balloon=balloon))
    virsh(libvirtd_uri, 'start', running.name)
    done = running.edit(['current_memory'], current_memory=192)
    assert done['commands'] == (['define', 'live current_memory'] if live else ['define']), done
    assert ('current_memory' in done['waiting_for_restart']) is not live, done['waiting_for_restart']
    assert running.state() == 'running'
    assert "<currentMemory unit='KiB'>196608</currentMemory>" in running.xml()
    if not live:  # (with a balloon the running guest's figure moves only once its guest driver deflates)
        assert "<currentMemory unit='KiB'>262144</currentMemory>" in running.xml(inactive=False)
        assert 'no memory balloon device' in str(done.get('warnings')), done
