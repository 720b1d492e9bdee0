# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kernel_cmdline as Ansible runs it, on fixture trees of each bootloader layout.

Every scenario goes check (changed) -> apply (changed) -> apply (not changed) -> check (not changed)
and looks at the files themselves, not only at the module's answer.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.virtdev.libvirt.plugins.modules import kernel_cmdline
from ansible_collections.virtdev.libvirt.tests.unit.fixtures.bootloaders import trees


def run(capsys, check=False, diff=False, **params):
    params['_ansible_check_mode'] = check
    params['_ansible_diff'] = diff
    with patch_module_args(params):
        with pytest.raises(SystemExit) as exc:
            kernel_cmdline.main()
    result = json.loads(capsys.readouterr().out)
    result['rc'] = exc.value.code
    return result


def snapshot(root):
    files = {}
    for directory, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, 'rb') as handle:
                files[os.path.relpath(path, root)] = handle.read()
    return files


def _unordered(result):
    locations = [dict(loc, before=sorted(loc['before']), after=sorted(loc['after'])) for loc in result['locations']]
    return dict(result, after=sorted(result['after']), locations=locations)


def cycle(capsys, root, same_order=True, **params):
    """check -> apply -> apply -> check; returns the two first results.

    grubby appends the arguments it replaces, so through grubby only the set of arguments is
    predicted exactly by check mode, not their order (``same_order=False``).
    """
    start = snapshot(root)
    checked = run(capsys, check=True, diff=True, root=root, **params)
    assert checked['rc'] == 0, checked
    assert checked['changed'] is True
    assert snapshot(root) == start, 'check mode wrote something'
    assert checked['diff']

    applied = run(capsys, root=root, **params)
    assert applied['rc'] == 0, applied
    assert applied['changed'] is True
    assert 'diff' not in applied  # only with --diff
    compare_applied, compare_checked = (applied, checked) if same_order else (_unordered(applied), _unordered(checked))
    for key in ('before', 'after', 'files', 'replaced', 'added', 'removed', 'duplicates', 'locations'):
        assert compare_applied[key] == compare_checked[key], key
    after_apply = snapshot(root)
    assert after_apply != start
    changed_files = {os.path.relpath(path, root) for path in applied['files']}
    assert changed_files == {name for name in set(start) | set(after_apply)
                             if start.get(name) != after_apply.get(name)}

    again = run(capsys, root=root, **params)
    assert again['rc'] == 0 and again['changed'] is False, again
    assert again['files'] == [] and again['before'] == again['after'] == applied['after']
    assert snapshot(root) == after_apply

    rechecked = run(capsys, check=True, diff=True, root=root, **params)
    assert rechecked['changed'] is False and 'diff' not in rechecked
    return checked, applied


def read(root, path):
    return trees.read(root, path)


# --------------------------------------------------------------------------- Debian GRUB

def test_debian_grub_cycle_replaces_contradiction(capsys, tmp_path):
    root = trees.debian_grub(str(tmp_path), linux='intel_iommu=off')
    checked, applied = cycle(capsys, root, args=['intel_iommu=on', 'iommu=pt'])
    assert applied['bootloader'] == 'grub'
    assert applied['before'] == ['intel_iommu=off', 'quiet']
    assert applied['after'] == ['intel_iommu=on', 'iommu=pt', 'quiet']
    assert applied['replaced'] == [{'before': 'intel_iommu=off', 'after': 'intel_iommu=on',
                                    'location': '/etc/default/grub:10 GRUB_CMDLINE_LINUX'}]
    assert applied['files'] == [os.path.join(root, 'etc/default/grub')]
    assert applied['commands'] == []  # root is not /: no update-grub
    assert applied['reboot_required'] is True
    assert 'GRUB_CMDLINE_LINUX="intel_iommu=on iommu=pt"\n' in read(root, '/etc/default/grub')
    [diff] = checked['diff']
    assert '-GRUB_CMDLINE_LINUX="intel_iommu=off"' not in diff['after']
    assert 'GRUB_CMDLINE_LINUX="intel_iommu=off"' in diff['before']


def test_debian_grub_absent(capsys, tmp_path):
    root = trees.debian_grub(str(tmp_path), linux='iommu=pt intel_iommu=on', default='quiet iommu=soft')
    _checked, applied = cycle(capsys, root, args=['iommu'], state='absent')
    assert applied['removed'] == [
        {'arg': 'iommu=pt', 'location': '/etc/default/grub:10 GRUB_CMDLINE_LINUX'},
        {'arg': 'iommu=soft', 'location': '/etc/default/grub:9 GRUB_CMDLINE_LINUX_DEFAULT'},
    ]
    text = read(root, '/etc/default/grub')
    assert 'GRUB_CMDLINE_LINUX="intel_iommu=on"' in text and 'GRUB_CMDLINE_LINUX_DEFAULT="quiet"' in text
    # proc/cmdline still has iommu=pt: the running kernel needs a reboot to lose it
    assert applied['reboot_required'] is True


def test_debian_grub_duplicates_removed(capsys, tmp_path):
    root = trees.debian_grub(str(tmp_path), linux='iommu=pt quiet iommu=pt', default='iommu=pt')
    _checked, applied = cycle(capsys, root, args=['iommu=pt'])
    assert len(applied['duplicates']) == 2
    text = read(root, '/etc/default/grub')
    assert 'GRUB_CMDLINE_LINUX="iommu=pt quiet"' in text and 'GRUB_CMDLINE_LINUX_DEFAULT=""' in text


def test_reboot_not_required_when_running_kernel_has_the_args(capsys, tmp_path):
    root = trees.debian_grub(str(tmp_path), proc='BOOT_IMAGE=/vmlinuz ro quiet intel_iommu=on iommu=pt')
    result = run(capsys, root=root, args=['intel_iommu=on', 'iommu=pt'])
    assert result['changed'] is True and result['reboot_required'] is False


def test_grub_dropin_is_created_and_backup_only_when_changed(capsys, tmp_path):
    root = trees.debian_grub(str(tmp_path), dropins={'50-cloudimg-settings.cfg': 'GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS0"\n'})
    params = dict(args=['rd.driver.pre=vfio-pci'], grub_file='/etc/default/grub.d/90-vfio.cfg', backup=True)
    _checked, applied = cycle(capsys, root, **params)
    dropin = read(root, '/etc/default/grub.d/90-vfio.cfg')
    assert dropin.endswith('GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX rd.driver.pre=vfio-pci"\n')
    assert stat.S_IMODE(os.stat(os.path.join(root, 'etc/default/grub.d/90-vfio.cfg')).st_mode) == 0o644
    assert applied['backup_files'] == []  # a new file has nothing to back up
    # Now change the existing drop-in: one backup of the old content.
    result = run(capsys, root=root, args=['rd.driver.pre=vfio-pci'], state='absent',
                 grub_file='/etc/default/grub.d/90-vfio.cfg', backup=True)
    [backup] = result['backup_files']
    assert 'rd.driver.pre=vfio-pci' in open(backup).read()
    result = run(capsys, root=root, args=['rd.driver.pre=vfio-pci'], state='absent', backup=True,
                 grub_file='/etc/default/grub.d/90-vfio.cfg')
    assert result['changed'] is False and 'backup_files' not in result


@pytest.mark.parametrize('text, fragment', [
    ("GRUB_CMDLINE_LINUX='quiet'\n", 'uses single quotes'),
    ('GRUB_CMDLINE_LINUX="a"\nGRUB_CMDLINE_LINUX="b"\n', 'twice (lines 1 and 2)'),
    ('GRUB_CMDLINE_LINUX="$(cat /x)"\n', 'shell expansion'),
])
def test_grub_files_refused_and_left_alone(capsys, tmp_path, text, fragment):
    root = str(tmp_path)
    trees.write(root, '/etc/default/grub', text)
    start = snapshot(root)
    result = run(capsys, root=root, args=['iommu=pt'])
    assert result['failed'] is True and fragment in result['msg']
    assert os.path.join(root, 'etc/default/grub') in result['msg']
    assert snapshot(root) == start


def test_overriding_dropin_fails_clearly(capsys, tmp_path):
    root = trees.debian_grub(str(tmp_path), dropins={'99-local.cfg': 'GRUB_CMDLINE_LINUX="nomodeset"\n'})
    start = snapshot(root)
    result = run(capsys, root=root, args=['iommu=pt'])
    assert result['failed'] is True
    assert '99-local.cfg line 1 sets GRUB_CMDLINE_LINUX without including $GRUB_CMDLINE_LINUX' in result['msg']
    assert snapshot(root) == start


@pytest.mark.parametrize('bad', ['a b', '=x', '', "it's", 'foo=$(reboot)'])
def test_bad_args_fail_naming_the_value(capsys, tmp_path, bad):
    root = trees.debian_grub(str(tmp_path))
    start = snapshot(root)
    result = run(capsys, root=root, args=['iommu=pt', bad])
    assert result['failed'] is True
    assert 'args[1]' in result['msg'] and repr(bad) in result['msg']
    assert snapshot(root) == start


def test_contradicting_args_in_one_call(capsys, tmp_path):
    root = trees.debian_grub(str(tmp_path))
    result = run(capsys, root=root, args=['intel_iommu=on', 'intel_iommu=off'])
    assert result['failed'] is True and "'intel_iommu=on' and 'intel_iommu=off'" in result['msg']


def test_root_must_exist(capsys, tmp_path):
    result = run(capsys, root=str(tmp_path / 'nope'), args=['iommu=pt'])
    assert result['failed'] is True and 'root:' in result['msg']


def test_undetectable_bootloader(capsys, tmp_path):
    result = run(capsys, root=str(tmp_path), args=['iommu=pt'])
    assert result['failed'] is True and 'cannot tell which boot path' in result['msg']
    assert 'no boot path matches (found: firmware: unknown' in result['msg']


# --------------------------------------------------------------------------- RHEL BLS

def test_rhel_bls_cycle_without_grubby(capsys, tmp_path):
    root = trees.rhel_bls(str(tmp_path), extra='intel_iommu=off')
    _checked, applied = cycle(capsys, root, args=['intel_iommu=on', 'iommu=pt'])
    assert applied['bootloader'] == 'bls'
    assert len(applied['files']) == 4
    for kernel in trees.RHEL_KERNELS:
        text = read(root, '/boot/loader/entries/%s-%s.conf' % (trees.MACHINE_ID, kernel))
        options = [line for line in text.splitlines() if line.startswith('options ')][0]
        assert options.endswith('rhgb quiet intel_iommu=on $tuned_params iommu=pt')
        assert stat.S_IMODE(os.stat(os.path.join(
            root, 'boot/loader/entries/%s-%s.conf' % (trees.MACHINE_ID, kernel))).st_mode) == 0o600
    assert read(root, '/etc/kernel/cmdline').split()[-2:] == ['intel_iommu=on', 'iommu=pt']
    assert 'quiet intel_iommu=on iommu=pt"' in read(root, '/etc/default/grub')
    assert [loc['changed'] for loc in applied['locations']] == [True, True, True, True]


@pytest.fixture
def grubby_standin(tmp_path, monkeypatch):
    """A grubby executable (the stand-in) the module finds as if installed, with its /etc under the root."""
    root = tmp_path / 'root'
    root.mkdir()
    log = tmp_path / 'grubby.log'
    wrapper = tmp_path / 'grubby'
    wrapper.write_text('#!/bin/sh\nexec %s %s "$@"\n' % (sys.executable, trees.GRUBBY_STANDIN))
    wrapper.chmod(0o755)
    monkeypatch.setenv('GRUBBY_STANDIN_ROOT', str(root))
    monkeypatch.setenv('GRUBBY_STANDIN_LOG', str(log))
    monkeypatch.setattr(kernel_cmdline, 'find_grubby', lambda module, _root: str(wrapper))
    return str(root), log


def test_rhel_bls_cycle_through_grubby(capsys, grubby_standin):
    root, log = grubby_standin
    trees.rhel_bls(root, extra='intel_iommu=off')
    _checked, applied = cycle(capsys, root, same_order=False, args=['intel_iommu=on', 'iommu=pt'])
    calls = log.read_text().splitlines()
    assert calls == ['--update-kernel=ALL --bls-directory=%s/boot/loader/entries --args=intel_iommu=on iommu=pt' % root]
    assert applied['commands'][0][1:] == ['--update-kernel=ALL', '--bls-directory=%s/boot/loader/entries' % root,
                                          '--args=intel_iommu=on iommu=pt']
    assert len(applied['files']) == 4
    for kernel in trees.RHEL_KERNELS:
        tokens = read(root, '/boot/loader/entries/%s-%s.conf' % (trees.MACHINE_ID, kernel)).split('options ')[1]
        tokens = tokens.splitlines()[0].split()
        assert tokens.count('intel_iommu=on') == 1 and 'intel_iommu=off' not in tokens and 'iommu=pt' in tokens


def test_grubby_leftovers_are_completed_directly(capsys, grubby_standin):
    # grubby removes only the first exact "key=value"; the module finishes the job and verifies.
    root, log = grubby_standin
    trees.rhel_bls(root, extra='iommu=pt rhgb iommu=pt')
    _checked, applied = cycle(capsys, root, same_order=False, args=['iommu=pt'], state='absent')
    assert log.read_text().splitlines() == [
        '--update-kernel=ALL --bls-directory=%s/boot/loader/entries --remove-args=iommu=pt' % root]
    for path in applied['files']:
        assert 'iommu=pt' not in open(path).read()


def test_grubby_failure_restores_files(capsys, grubby_standin, tmp_path):
    root, _log = grubby_standin
    trees.rhel_bls(root)
    start = snapshot(root)
    broken = tmp_path / 'grubby'
    broken.write_text('#!/bin/sh\necho "options line half written" > %s/boot/loader/entries/x.conf\n'
                      'echo boom >&2; exit 3\n' % root)
    result = run(capsys, root=root, args=['iommu=pt'])
    assert result['failed'] is True and 'failed (rc=3): boom' in result['msg']
    leftovers = set(snapshot(root)) - set(start)
    # grubby's own stray file is not one the module knew about; every file the module tracks is restored
    assert {k: v for k, v in snapshot(root).items() if k in start} == start
    assert leftovers == {'boot/loader/entries/x.conf'}


# --------------------------------------------------------------------------- systemd-boot

def test_systemd_boot_cycle(capsys, tmp_path):
    root = trees.systemd_boot(str(tmp_path))
    _checked, applied = cycle(capsys, root, args=['amd_iommu=on', 'iommu=pt'])
    assert applied['bootloader'] == 'systemd-boot'
    assert applied['after'][-2:] == ['amd_iommu=on', 'iommu=pt']
    assert read(root, '/etc/kernel/cmdline').split()[-2:] == ['amd_iommu=on', 'iommu=pt']
    entry = read(root, '/boot/efi/loader/entries/%s-%s.conf' % (trees.MACHINE_ID, trees.DEBIAN_KERNEL))
    assert 'options    root=UUID=%s ro quiet amd_iommu=on iommu=pt\n' % trees.DEBIAN_ROOT_UUID in entry


def test_backups_are_named_as_fat_allows(capsys, tmp_path):
    """The entries live on the ESP (FAT), which refuses ':' in names: FILE.PID.YYYYMMDDTHHMMSS~."""
    root = trees.systemd_boot(str(tmp_path))
    result = run(capsys, root=root, args=['iommu=pt'], backup=True)
    assert len(result['backup_files']) == 2, result
    for backup in result['backup_files']:
        assert re.match(r'^.+\.conf\.\d+\.\d{8}T\d{6}~$|^.+/cmdline\.\d+\.\d{8}T\d{6}~$', backup), backup
        assert not set(os.path.basename(backup)) & set(':*?"<>|\\'), backup
        assert 'iommu=pt' not in open(backup).read()


def test_systemd_boot_creates_kernel_cmdline(capsys, tmp_path):
    root = trees.systemd_boot(str(tmp_path), kernel_cmdline=False)
    _checked, applied = cycle(capsys, root, args=['iommu=pt'])
    assert os.path.join(root, 'etc/kernel/cmdline') in applied['files']
    assert read(root, '/etc/kernel/cmdline') == 'root=UUID=%s ro quiet iommu=pt\n' % trees.DEBIAN_ROOT_UUID


def test_forced_bootloader_mismatch_fails(capsys, tmp_path):
    root = trees.systemd_boot(str(tmp_path))
    result = run(capsys, root=root, args=['iommu=pt'], bootloader='grub')
    assert result['failed'] is True and 'use bootloader: systemd-boot (or auto)' in result['msg']
    assert not os.path.exists(os.path.join(root, 'etc/default/grub'))


# --------------------------------------------------------------------------- a write that fails half-way

def failing_move(monkeypatch, nth, before_failing=None):
    """AnsibleModule.atomic_move that fails (as Ansible's does: a plain Exception) on the ``nth`` call;
    ``before_failing(moved)`` runs first, with the files moved so far."""
    from ansible.module_utils.basic import AnsibleModule
    real = AnsibleModule.atomic_move
    moved = []

    def move(self, src, dest, *args, **kwargs):
        if len(moved) + 1 == nth:
            if before_failing:
                before_failing(moved)
            raise Exception('Unable to make %r into to %r, failed final rename' % (src, dest)) from \
                PermissionError(1, 'Operation not permitted')
        moved.append(dest)
        return real(self, src, dest, *args, **kwargs)
    monkeypatch.setattr(AnsibleModule, 'atomic_move', move)
    return moved


def test_a_later_failed_write_restores_the_files_written_before(capsys, tmp_path, monkeypatch):
    root = trees.rhel_bls(str(tmp_path))
    start = snapshot(root)
    moved = failing_move(monkeypatch, 3)
    result = run(capsys, root=root, args=['iommu=pt'])
    assert result['failed'] is True and result['changed'] is False, result
    assert len(moved) == 2
    assert result['msg'].startswith('cannot write %s: [Errno 1] Operation not permitted; ' % os.path.join(
        root, 'etc/kernel/cmdline')), result['msg']
    assert 'into to' not in result['msg']
    assert 'the files already written were restored (%s); nothing was changed' % ', '.join(moved) in result['msg']
    assert snapshot(root) == start


def test_a_failed_write_removes_the_files_and_directories_it_created(capsys, tmp_path, monkeypatch):
    root = trees.systemd_boot(str(tmp_path), kernel_cmdline=False)
    start = snapshot(root)
    failing_move(monkeypatch, 2)
    result = run(capsys, root=root, args=['iommu=pt'])
    assert result['failed'] is True and result['changed'] is False, result
    assert snapshot(root) == start
    assert not os.path.exists(os.path.join(root, 'etc/kernel'))


def test_a_failed_restore_says_which_files_are_left_changed(capsys, tmp_path, monkeypatch):
    root = trees.rhel_bls(str(tmp_path))

    def block(moved):  # the first file written can no longer be written back
        os.unlink(moved[0])
        os.mkdir(moved[0])
    moved = failing_move(monkeypatch, 3, block)
    result = run(capsys, root=root, args=['iommu=pt'])
    assert result['failed'] is True and result['changed'] is True, result
    assert 'so they are left changed: could not restore %s:' % moved[0] in result['msg']
    assert result['msg'].endswith('; restored: %s' % moved[1]), result['msg']
