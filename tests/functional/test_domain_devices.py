# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""domain_devices against a real libvirt: round trips on realistic guests, no writes when nothing
changes, and the connection failures users hit."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

SMALL_GUEST = ("<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory>"
               "<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>")

# Realistic guests as virt-install writes them (Debian package virtinst), one per common profile.
VIRT_INSTALL_PROFILES = {
    'linux-pc-virtio': ['--machine', 'pc', '--osinfo', 'linux2022', '--disk', 'path={image},format=qcow2,bus=virtio',
                        '--network', 'network=default,model=virtio', '--graphics', 'none'],
    'windows-q35-emulated': ['--machine', 'q35', '--osinfo', 'win10', '--disk', 'path={image},format=qcow2,bus=sata',
                             '--network', 'network=default,model=e1000e', '--graphics', 'spice', '--video', 'qxl',
                             '--sound', 'ich9', '--tpm', 'emulator', '--channel', 'spicevmc'],
    'linux-q35-uefi-scsi': ['--machine', 'q35', '--osinfo', 'linux2022', '--boot', 'uefi',
                            '--disk', 'path={image},bus=scsi', '--controller', 'scsi,model=virtio-scsi',
                            '--network', 'bridge=br0', '--rng', '/dev/urandom', '--filesystem', '/tmp,share1',
                            '--watchdog', 'i6300esb,action=reset', '--disk', 'device=cdrom,bus=sata'],
    'legacy-pc-ide': ['--machine', 'pc', '--osinfo', 'generic', '--disk', 'path={image},bus=ide',
                      '--network', 'network=default,model=rtl8139', '--graphics', 'vnc', '--video', 'cirrus',
                      '--sound', 'ac97', '--input', 'tablet,bus=usb', '--serial', 'pty'],
}


@pytest.fixture
def image(tmp_path):
    path = tmp_path / 'disk.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', str(path), '16M'], check=True)
    return str(path)


def virt_install_xml(uri, name, profile, image):
    if shutil.which('virt-install') is None:
        pytest.fail('virt-install is missing: scripts/bootstrap.sh installs the Debian package virtinst')
    args = [arg.replace('{image}', image) for arg in VIRT_INSTALL_PROFILES[profile]]
    proc = subprocess.run(['virt-install', '--connect', uri, '--print-xml', '--name', name, '--memory', '512',
                           '--vcpus', '1', '--import', '--virt-type', 'qemu', '--noautoconsole'] + args,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize('profile', sorted(VIRT_INSTALL_PROFILES))
def test_gathered_fed_back_changes_nothing(profile, libvirtd_uri, run_module, virsh, image):
    name = 'rt-' + profile
    virsh(libvirtd_uri, 'define', '{xml}', xml=virt_install_xml(libvirtd_uri, name, profile, image))
    try:
        before = virsh(libvirtd_uri, 'dumpxml', '--inactive', name)
        gathered = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'state': 'gathered'})
        assert gathered['rc'] == 0, gathered
        assert len(gathered['gathered']) >= 5
        assert {item['class'] for item in gathered['gathered']} <= {'emulated', 'virtio', 'passthrough'}
        for state in ('replaced', 'overridden', 'merged'):
            for check_mode in (True, False):
                result = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'state': state,
                                                       'config': gathered['gathered']}, check_mode=check_mode)
                assert result['rc'] == 0, result
                assert result['changed'] is False, (state, result['commands'])
        assert virsh(libvirtd_uri, 'dumpxml', '--inactive', name) == before
    finally:
        virsh(libvirtd_uri, 'undefine', '--nvram', name, check=False)


def test_emulated_disks_can_be_found_from_gathered_data(libvirtd_uri, run_module, virsh, image):
    virsh(libvirtd_uri, 'define', '{xml}', xml=virt_install_xml(libvirtd_uri, 'cls', 'legacy-pc-ide', image))
    try:
        gathered = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': 'cls', 'state': 'gathered'})
        disks = [item for item in gathered['gathered'] if item['kind'] == 'disk' or
                 item.get('xml', '').startswith('<disk')]
        assert [disk['class'] for disk in disks] == ['emulated']
    finally:
        virsh(libvirtd_uri, 'undefine', 'cls', check=False)


def _definition_file(root, name):
    """Where the QEMU driver keeps a persistent definition below a private or embedded root."""
    for candidate in ('root/etc/libvirt/qemu/%s.xml', 'embed/etc/qemu/%s.xml', 'etc/qemu/%s.xml'):
        path = os.path.join(root, candidate % name)
        if os.path.exists(path):
            return path
    raise AssertionError('no definition file for %s below %s' % (name, root))


def test_check_mode_and_no_change_runs_write_nothing(embed_uri, run_module, virsh, tmp_path):
    virsh(embed_uri, 'define', '{xml}', xml=SMALL_GUEST % 'nw')
    config = [{'kind': 'interface', 'source': {'network': 'default'}, 'model': 'virtio'}, {'kind': 'rng'}]
    args = {'uri': embed_uri, 'domain': 'nw', 'config': config}
    path = _definition_file(str(tmp_path), 'nw')
    stamp = os.stat(path).st_mtime_ns, open(path, encoding='utf-8').read()

    predicted = run_module('domain_devices', args, check_mode=True)
    assert predicted['changed'] and (os.stat(path).st_mtime_ns, open(path, encoding='utf-8').read()) == stamp

    applied = run_module('domain_devices', args)
    assert applied['changed'] and applied['commands'] == predicted['commands']
    stamp = os.stat(path).st_mtime_ns, open(path, encoding='utf-8').read()

    for check_mode in (False, True):
        again = run_module('domain_devices', args, check_mode=check_mode)
        assert again['changed'] is False and again['commands'] == []
        assert (os.stat(path).st_mtime_ns, open(path, encoding='utf-8').read()) == stamp


def test_libvirtd_not_running_is_a_clear_error(run_module, tmp_path):
    uri = 'qemu:///system?socket=%s/no-daemon-here' % tmp_path
    result = run_module('domain_devices', {'uri': uri, 'domain': 'x', 'config': [{'kind': 'rng'}]})
    assert result['failed'] is True
    assert result['msg'].startswith('cannot connect to libvirt at %s' % uri)
    assert 'is libvirtd running?' in result['msg']


def test_read_only_connection_is_refused_and_changes_nothing(libvirtd_uri, libvirtd_dir, run_module, virsh):
    virsh(libvirtd_uri, 'define', '{xml}', xml=SMALL_GUEST % 'ro')
    try:
        before = virsh(libvirtd_uri, 'dumpxml', '--inactive', 'ro')
        read_only = 'qemu:///system?socket=%s/libvirt-sock-ro' % libvirtd_dir
        result = run_module('domain_devices', {'uri': read_only, 'domain': 'ro', 'config': [{'kind': 'rng'}]})
        assert result['failed'] is True
        assert 'read-only' in result['msg'] and read_only in result['msg']
        assert virsh(libvirtd_uri, 'dumpxml', '--inactive', 'ro') == before
    finally:
        virsh(libvirtd_uri, 'undefine', 'ro', check=False)


@pytest.mark.parametrize('name', ["it's", 'a<b', 'a&b', '3f0c1a52-6a47-4a2b-8f7e-3d1e4a2b9c11'])
def test_names_with_xml_metacharacters_are_only_names(name, embed_uri, run_module):
    missing = run_module('domain_devices', {'uri': embed_uri, 'domain': name, 'config': [{'kind': 'rng'}]})
    assert missing['failed'] is True and missing['msg'] == 'domain %r is not defined on %s' % (name, embed_uri)
    created = run_module('domain', {'uri': embed_uri, 'name': name, 'type': 'qemu', 'memory': 64})
    assert created['changed'] and created['domain']['name'] == name
    first = run_module('domain_devices', {'uri': embed_uri, 'domain': name, 'config': [{'kind': 'rng'}]})
    again = run_module('domain_devices', {'uri': embed_uri, 'domain': created['domain']['uuid'],
                                          'config': [{'kind': 'rng'}]})
    assert first['changed'] is True and again['changed'] is False


@pytest.mark.parametrize('profile', ['linux-q35-uefi-scsi', 'legacy-pc-ide'])
def test_overridden_removes_a_dropped_kind_and_leaves_what_libvirt_adds(profile, libvirtd_uri, run_module, virsh,
                                                                        image):
    name = 'ovr-' + profile
    virsh(libvirtd_uri, 'define', '{xml}', xml=virt_install_xml(libvirtd_uri, name, profile, image))
    try:
        gathered = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'state': 'gathered'})['gathered']
        kinds = {item['kind'] for item in gathered}
        dropped = 'rng' if 'rng' in kinds else 'sound'
        assert dropped in kinds, kinds
        kept = [item for item in gathered if item['kind'] != dropped]
        # narrowed to other kinds: the earlier behaviour, nothing changes
        narrow = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'state': 'overridden',
                                               'config': kept, 'overridden_kinds': ['disk', 'interface']})
        assert narrow['rc'] == 0 and narrow['changed'] is False, narrow
        # only the disks declared: every other device the guest may lose goes, what libvirt owns stays
        disks = [item for item in gathered if item['kind'] == 'disk']
        for config, removed in ((kept, {dropped}), (disks, None)):
            args = {'uri': libvirtd_uri, 'domain': name, 'state': 'overridden', 'config': config}
            predicted = run_module('domain_devices', args, check_mode=True)
            done = run_module('domain_devices', args)
            assert done['rc'] == 0 and done['changed'] is True, done.get('msg')
            assert predicted['commands'] == done['commands']
            assert {c['op'] for c in done['commands']} == {'detach'}
            if removed is not None:
                assert {c['kind'] for c in done['commands']} == removed
            again = run_module('domain_devices', args)
            assert again['rc'] == 0 and again['changed'] is False, again['commands']
            gathered_now = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'state': 'gathered'})
            after = {item['kind'] for item in gathered_now['gathered']}
            assert dropped not in after
        assert {'interface', 'graphics'} & after == set(), after
        assert {'controller', 'memballoon'} <= after   # libvirt's own: left, listed in implicit
    finally:
        virsh(libvirtd_uri, 'undefine', '--nvram', name, check=False)


def test_a_nic_found_without_mac_keeps_its_model(libvirtd_uri, run_module, virsh):
    """The hand-made virtio NIC stays virtio; the e1000 declared next to a virtio NIC is added (check mode
    predicts the same)."""
    name = 'loose-nic'
    virsh(libvirtd_uri, 'define', '{xml}', xml=SMALL_GUEST.replace('</os>', '</os><devices><interface type='
                                                                   "'network'><mac address='52:54:00:00:11:01'/>"
                                                                   "<source network='default'/><model type='virtio'/>"
                                                                   '</interface></devices>') % name)
    try:
        config = [{'kind': 'interface', 'source': {'network': 'default'}, 'model': 'e1000'},
                  {'kind': 'interface', 'source': {'network': 'default'}, 'model': 'virtio'}]
        args = {'uri': libvirtd_uri, 'domain': name, 'state': 'merged', 'config': config}
        predicted = run_module('domain_devices', args, check_mode=True)
        done = run_module('domain_devices', args)
        assert done['rc'] == 0 and done['changed'] is True, done.get('msg')
        assert [(c['op'], c['kind']) for c in done['commands']] == [('attach', 'interface')]
        assert predicted['commands'] == done['commands']
        nics = {item['mac']: item['model'] for item in done['after'] if item['kind'] == 'interface'}
        assert nics['52:54:00:00:11:01'] == 'virtio' and sorted(nics.values()) == ['e1000', 'virtio']
        assert run_module('domain_devices', args)['changed'] is False
    finally:
        virsh(libvirtd_uri, 'undefine', name, check=False)


def test_a_vnc_password_libvirt_would_refuse_is_refused_before_anything_is_read(libvirtd_uri, run_module, virsh):
    name = 'vnc-limit'
    virsh(libvirtd_uri, 'define', '{xml}', xml=SMALL_GUEST % name)
    try:
        before = virsh(libvirtd_uri, 'dumpxml', '--inactive', name)
        args = {'uri': libvirtd_uri, 'domain': name,
                'config': [{'kind': 'graphics', 'type': 'vnc', 'password': 'tenletters'}]}
        for check_mode in (True, False):
            result = run_module('domain_devices', args, check_mode=check_mode)
            assert result['rc'] != 0 and not result.get('changed')
            assert 'config[0].password: a VNC password has at most 8 characters' in result['msg']
            assert 'tenletters' not in str(result)
        assert virsh(libvirtd_uri, 'dumpxml', '--inactive', name) == before
    finally:
        virsh(libvirtd_uri, 'undefine', name, check=False)


def test_a_pcnet_nic_and_a_pcspk_sound_round_trip_typed(libvirtd_uri, run_module, virsh):
    name = 'old-models'
    virsh(libvirtd_uri, 'define', '{xml}', xml=SMALL_GUEST.replace('</os>', "</os><devices><interface type='network'>"
                                                                   "<mac address='52:54:00:00:12:01'/><source network="
                                                                   "'default'/><model type='pcnet'/></interface>"
                                                                   "<sound model='pcspk'/></devices>") % name)
    try:
        gathered = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'state': 'gathered'})['gathered']
        typed = {item['kind']: item for item in gathered}
        assert typed['interface']['model'] == 'pcnet' and typed['interface']['class'] == 'emulated'
        assert typed['sound']['model'] == 'pcspk'
        for state in ('replaced', 'overridden'):
            for check_mode in (True, False):
                result = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'state': state,
                                                       'config': gathered}, check_mode=check_mode)
                assert result['rc'] == 0 and result['changed'] is False, result.get('msg') or result['commands']
    finally:
        virsh(libvirtd_uri, 'undefine', name, check=False)


def test_a_disk_source_that_is_not_there_is_refused_before_anything_is_written(embed_uri, run_module, virsh,
                                                                               tmp_path, image):
    """A missing image or block device is refused (check mode and real run alike), naming the field and the
    path; libvirt itself would accept the definition and fail only when the guest starts."""
    virsh(embed_uri, 'define', '{xml}', xml=SMALL_GUEST % 'src')
    path = _definition_file(str(tmp_path), 'src')
    before = open(path, encoding='utf-8').read()
    missing = str(tmp_path / 'nope.qcow2')
    cases = [
        ({'config': [{'kind': 'rng'}, {'kind': 'disk', 'target': 'vdb', 'source': {'file': missing}}]},
         "config[1].source.file: %r does not exist on the host" % missing),
        ({'config': [{'kind': 'disk', 'target': 'sdb', 'bus': 'sata', 'device': 'cdrom', 'source': {'file': missing}}]},
         "config[0].source.file: %r does not exist" % missing),
        ({'config': [{'kind': 'disk', 'target': 'vdc', 'source': {'block': '/dev/virtdev-no-such-disk'}}]},
         "config[0].source.block: '/dev/virtdev-no-such-disk' does not exist"),
        # raw XML in a manifest entry is judged the same way
        ({'domains': [{'domain': 'src', 'config': [{'kind': 'xml', 'xml': "<disk type='file' device='disk'><source "
                                                    "file='%s'/><target dev='vdd' bus='virtio'/></disk>" % missing}]}]},
         "domains[0].config[0].source.file: %r does not exist" % missing),
    ]
    for extra, message in cases:
        args = dict({'uri': embed_uri} if 'domains' in extra else {'uri': embed_uri, 'domain': 'src'}, **extra)
        for check_mode in (True, False):
            refused = run_module('domain_devices', args, check_mode=check_mode)
            assert refused['rc'] != 0 and refused['changed'] is False, refused
            assert message in refused['msg'] and '[guard source_exists]' in refused['msg'], refused['msg']
            assert open(path, encoding='utf-8').read() == before  # nothing written
    # host_checks: false writes it (an image made later); check mode predicts exactly that
    unchecked = {'uri': embed_uri, 'domain': 'src', 'host_checks': False,
                 'config': [{'kind': 'disk', 'target': 'vdb', 'source': {'file': missing}}]}
    predicted = run_module('domain_devices', unchecked, check_mode=True)
    applied = run_module('domain_devices', unchecked)
    assert predicted['changed'] and applied['changed'] and applied['commands'] == predicted['commands'], applied
    # repointing that disk at a missing file is refused; at a file that is there, written
    repoint = {'uri': embed_uri, 'domain': 'src',
               'config': [{'kind': 'disk', 'target': 'vdb', 'source': {'file': missing + '.2'}}]}
    assert run_module('domain_devices', repoint, check_mode=True)['rc'] != 0
    assert run_module('domain_devices', repoint)['rc'] != 0
    repoint['config'][0]['source']['file'] = image
    assert run_module('domain_devices', repoint, check_mode=True)['changed'] is True
    assert run_module('domain_devices', repoint)['changed'] is True
    assert "<source file='%s'/>" % image in virsh(embed_uri, 'dumpxml', '--inactive', 'src')
    # a source the guest already has is not judged again when another option of the disk changes
    os.unlink(image)
    readonly = {'uri': embed_uri, 'domain': 'src',
                'config': [{'kind': 'disk', 'target': 'vdb', 'source': {'file': image}, 'readonly': True}]}
    for check_mode in (True, False):
        result = run_module('domain_devices', readonly, check_mode=check_mode)
        assert result['rc'] == 0 and result['changed'] is True, result
