# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kernel_cmdline on fake roots of each distribution admins run (tests/unit/fixtures/bootloaders/distros.py).

For each: check mode with diff writes nothing, the real run, a second run changes nothing, the command
line the next boot and the next kernel get — computed the way that distribution's tools compute it —
holds every requested argument once and every earlier argument in order, a simulated reboot into it
settles the module, and a reboot into an entry without the arguments is reported as such.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import plan as boot
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot.cmdline import CmdlineError, parse_args
from ansible_collections.virtdev.libvirt.tests.unit.fixtures.bootloaders import distros
from ansible_collections.virtdev.libvirt.tests.unit.fixtures.bootloaders.trees import read, write
from ansible_collections.virtdev.libvirt.tests.unit.plugins.modules.test_kernel_cmdline import run, snapshot

WANTED = ['intel_iommu=on', 'iommu=pt', 'vfio-pci.ids=10de:1b80,10de:10f0', 'rd.driver.pre=vfio-pci']

# What has to run in the target system after the change, per distribution (root is not /: named, not run).
REGENERATE = {
    'debian12': [['update-grub']],
    'ubuntu2204-cloud': [['update-grub']],
    'ubuntu2404-cloud': [['update-grub']],
    'proxmox8-grub': [['update-grub']],
    'opensuse': [['grub2-mkconfig', '-o', '/boot/grub2/grub.cfg']],
    'proxmox8-zfs-uefi': [['proxmox-boot-tool', 'refresh']],
    'popos': [['kernelstub']],
}


def in_order(earlier, later):
    """Whether ``earlier`` is a subsequence of ``later`` (nothing lost, nothing reordered)."""
    position = iter(later)
    return all(token in position for token in earlier)


def assert_carries(tokens, earlier, what):
    for arg in WANTED:
        assert tokens.count(arg) == 1, (what, arg, tokens)
    assert any(token.startswith('root=') for token in tokens), (what, tokens)
    if earlier is not None:
        assert in_order(earlier, tokens), (what, earlier, tokens)


@pytest.mark.parametrize('distro', distros.DISTROS, ids=str)
def test_distribution_check_apply_again_reboot(capsys, tmp_path, distro):
    root = str(tmp_path)
    distro.build(root)
    earlier_boot, earlier_kernel = distro.boot(root), distro.new_kernel(root)
    start = snapshot(root)

    checked = run(capsys, check=True, diff=True, root=root, args=WANTED)
    assert checked['rc'] == 0, checked
    assert checked['changed'] is True and checked['diff'] and checked['bootloader'] == distro.bootloader
    assert snapshot(root) == start, 'check mode wrote something'

    applied = run(capsys, root=root, args=WANTED)
    assert applied['rc'] == 0, applied
    for key in ('changed', 'files', 'before', 'after', 'added', 'replaced', 'regenerate', 'next_boot'):
        assert applied[key] == checked[key], key
    assert applied['regenerate'] == REGENERATE.get(distro.name, [])
    assert applied['commands'] == []  # root is not /: nothing runs
    assert applied['reboot_required'] is True
    assert [diff['after_header'] for diff in checked['diff']] == applied['files']

    written = snapshot(root)
    again = run(capsys, root=root, args=WANTED)
    assert again['rc'] == 0 and again['changed'] is False and again['files'] == [], again
    assert snapshot(root) == written

    assert_carries(distro.boot(root), earlier_boot, 'next boot')
    if distro.new_kernel(root) is not None:
        assert_carries(distro.new_kernel(root), earlier_kernel, 'next kernel')

    # The host comes up from something that lacks the arguments: said, not "reboot again".
    distro.reboot_elsewhere(root, earlier_boot)
    stale = run(capsys, root=root, args=WANTED)
    assert stale['failed'] is True and stale['reboot_required'] is False, stale
    assert 'the host booted from ' in stale['msg'] and ', which does not carry intel_iommu=on' in stale['msg']
    assert stale['booted_from'] in stale['msg']
    if REGENERATE.get(distro.name):
        assert '(was %s run?)' % ' '.join(REGENERATE[distro.name][0]) in stale['msg']

    distro.reboot(root)
    settled = run(capsys, root=root, args=WANTED)
    assert settled['rc'] == 0, settled
    assert settled['changed'] is False and settled['reboot_required'] is False


def test_grub_not_regenerated_is_named(capsys, tmp_path):
    distro = distros.BY_NAME['debian12']
    root = str(tmp_path)
    distro.build(root)
    earlier = distro.boot(root)
    run(capsys, root=root, args=WANTED)
    distro.reboot_elsewhere(root, earlier)
    stale = run(capsys, root=root, args=WANTED)
    assert stale['msg'].startswith('the host booted from the entry for /boot/vmlinuz-6.1.0-18-amd64 in '
                                   '%s/boot/grub/grub.cfg, which does not carry intel_iommu=on' % root), stale['msg']
    assert stale['msg'].endswith('(was update-grub run?)')


def test_booted_entry_that_carries_the_arguments_without_the_kernel_getting_them(capsys, tmp_path):
    distro = distros.BY_NAME['arch']
    root = str(tmp_path)
    distro.build(root)
    earlier = distro.boot(root)
    run(capsys, root=root, args=WANTED)
    distros.reboot(root, ' '.join(earlier), 'arch.conf')  # e.g. the line was edited at the boot menu
    stale = run(capsys, root=root, args=WANTED)
    assert stale['msg'].startswith('the host booted from the systemd-boot entry %s/boot/loader/entries/arch.conf, '
                                   'which carries intel_iommu=on' % root), stale['msg']
    assert 'changed at the boot menu' in stale['msg']


def test_rhel_keeps_the_multipath_preload_next_to_vfio(capsys, tmp_path):
    root = str(tmp_path)
    distros.rhel9(root)
    run(capsys, root=root, args=['rd.driver.pre=vfio-pci'])
    for path in distros.entry_files(root, '/boot/loader/entries'):
        options = distros.options_of(read(root, path))
        assert options.count('rd.driver.pre=scsi_dh_alua') == 1 and options.count('rd.driver.pre=vfio-pci') == 1
    assert 'rd.driver.pre=scsi_dh_alua rhgb quiet rd.driver.pre=vfio-pci' in read(root, '/etc/kernel/cmdline')
    # absent removes only that value
    result = run(capsys, root=root, args=['rd.driver.pre=vfio-pci'], state='absent')
    assert result['changed'] is True
    assert 'rd.driver.pre=vfio-pci' not in read(root, '/etc/kernel/cmdline')
    assert 'rd.driver.pre=scsi_dh_alua' in read(root, '/etc/kernel/cmdline')


def test_ubuntu_cloud_console_is_added_next_to_the_others(capsys, tmp_path):
    root = str(tmp_path)
    distros.ubuntu2404_cloud(root)
    result = run(capsys, root=root, args=['console=ttyS1,115200'])
    assert result['changed'] is True and result['replaced'] == []
    boot = distros.grub_boot(root, 'grub-mkconfig', 'UUID=x')
    assert [t for t in boot if t.startswith('console=')] == ['console=ttyS1,115200', 'console=tty1', 'console=ttyS0']


def test_vfio_ids_gain_items_in_the_occurrence_the_kernel_reads(capsys, tmp_path):
    root = str(tmp_path)
    distros.debian12(root)
    path = '/etc/default/grub'
    write(root, path, read(root, path).replace('GRUB_CMDLINE_LINUX=""', 'GRUB_CMDLINE_LINUX="vfio-pci.ids=8086:1533"'))
    result = run(capsys, root=root, args=['vfio-pci.ids=10de:1b80,10de:10f0'])
    assert result['replaced'] == [{'before': 'vfio-pci.ids=8086:1533', 'after': 'vfio-pci.ids=8086:1533,10de:1b80,10de:10f0',
                                   'location': '/etc/default/grub:10 GRUB_CMDLINE_LINUX'}]
    result = run(capsys, root=root, args=['vfio-pci.ids=10de:10f0'], state='absent')
    assert 'GRUB_CMDLINE_LINUX="vfio-pci.ids=8086:1533,10de:1b80"' in read(root, path)


def test_popos_removed_argument_stays_removed_at_the_next_kernel_update(capsys, tmp_path):
    root = str(tmp_path)
    distros.popos(root)
    result = run(capsys, root=root, args=['nomodeset'], state='absent')
    assert result['changed'] is True and result['bootloader'] == 'kernelstub'
    assert 'nomodeset' not in distros.kernelstub_writes(root)
    for name in ('current', 'oldkern'):
        assert 'nomodeset' not in read(root, '/boot/efi/loader/entries/Pop_OS-%s.conf' % name)
    config = json.loads(read(root, '/etc/kernelstub/configuration'))
    assert config['default']['kernel_options'] == ['quiet', 'splash']  # kernelstub's defaults untouched


# --------------------------------------------------------------------------- refused: nothing changes, names why

def _refused(capsys, root, fragments, **params):
    start = snapshot(root)
    result = run(capsys, root=root, args=WANTED, **params)
    assert result.get('failed') is True, result
    for fragment in fragments:
        assert fragment in result['msg'], (fragment, result['msg'])
    assert snapshot(root) == start
    return result


def test_opensuse_refuses_a_dropin_its_grub2_mkconfig_never_reads(capsys, tmp_path):
    root = str(tmp_path)
    distros.opensuse(root)
    _refused(capsys, root, ['grub_file: %s/etc/default/grub.d/90-vfio.cfg is a drop-in' % root,
                            '%s/usr/sbin/grub2-mkconfig does not source /etc/default/grub.d' % root],
             grub_file='/etc/default/grub.d/90-vfio.cfg')


@pytest.mark.parametrize('name', ['rhel9', 'fedora'])
def test_rhel_and_fedora_refuse_a_dropin_too(capsys, tmp_path, name):
    root = str(tmp_path)
    distros.BY_NAME[name].build(root)
    _refused(capsys, root, ['is a drop-in', 'grub2-mkconfig does not source'], grub_file='/etc/default/grub.d/90-vfio.cfg')


def test_opensuse_warns_that_an_existing_dropin_is_ignored(capsys, tmp_path):
    root = str(tmp_path)
    distros.opensuse(root)
    write(root, '/etc/default/grub.d/50-site.cfg', 'GRUB_CMDLINE_LINUX="nomodeset"\n')
    planned = boot.plan(root, 'auto', parse_args(['iommu=pt']), 'present',
                        dict(grub_file='/etc/default/grub', grub_variable='GRUB_CMDLINE_LINUX', update_command=None))
    assert planned.warnings == ['/etc/default/grub.d/50-site.cfg: ignored at boot, %s/usr/sbin/grub2-mkconfig does '
                                'not source /etc/default/grub.d' % root]
    result = run(capsys, root=root, args=['iommu=pt'])
    assert result['changed'] is True and result['files'] == [os.path.join(root, 'etc/default/grub')]
    assert 'iommu=pt' in distros.grub_boot(root, 'grub2-mkconfig', 'UUID=x')


def test_proxmox_image_without_firmware_information_is_refused(capsys, tmp_path):
    root = str(tmp_path)
    distros.proxmox8_zfs_uefi(root)
    for name in os.listdir(os.path.join(root, 'sys/firmware/efi/efivars')):
        os.unlink(os.path.join(root, 'sys/firmware/efi/efivars', name))
    os.rmdir(os.path.join(root, 'sys/firmware/efi/efivars'))
    os.rmdir(os.path.join(root, 'sys/firmware/efi'))
    os.rmdir(os.path.join(root, 'sys/firmware'))
    _refused(capsys, root, ['/etc/kernel/proxmox-boot-uuids lists ESPs', 'lists 2 ESP(s)', 'set bootloader explicitly'])
    # told which one, it works
    result = run(capsys, root=root, args=WANTED, bootloader='proxmox-boot-tool')
    assert result['changed'] is True and result['files'] == [os.path.join(root, 'etc/kernel/cmdline')]


def test_proxmox_on_bios_is_grub_refreshed_by_proxmox_boot_tool(capsys, tmp_path):
    root = str(tmp_path)
    distros.proxmox8_zfs_uefi(root)
    os.unlink(os.path.join(root, 'sys/firmware/efi/efivars/LoaderInfo-' + distros.LOADER_VENDOR))
    os.unlink(os.path.join(root, 'sys/firmware/efi/efivars/LoaderEntrySelected-' + distros.LOADER_VENDOR))
    os.rmdir(os.path.join(root, 'sys/firmware/efi/efivars'))
    os.rename(os.path.join(root, 'sys/firmware/efi'), os.path.join(root, 'sys/firmware/acpi'))
    result = run(capsys, root=root, args=['iommu=pt'])
    assert result['bootloader'] == 'grub' and result['regenerate'] == [['proxmox-boot-tool', 'refresh']]
    assert 'root=ZFS=rpool/ROOT/pve-1' in distros.grub_boot(root, 'grub-mkconfig', 'x')


def test_systemd_boot_image_without_any_command_line_source_is_refused(capsys, tmp_path):
    root = str(tmp_path)
    distros.debian12_sdboot_image(root)
    entry = distros.entry_files(root, '/boot/efi/loader/entries')[0]
    write(root, entry, read(root, entry).replace('root=UUID=%s ' % distros.ROOT_UUID, ''))
    _refused(capsys, root, ['refusing to create %s/etc/kernel/cmdline' % root, 'it has no root= (ro quiet)',
                            os.path.basename(entry)])
    os.unlink(os.path.join(root, entry.lstrip('/')))
    _refused(capsys, root, ['refusing to create %s/etc/kernel/cmdline: no full command line' % root,
                            '/usr/lib/kernel/cmdline, /proc/cmdline'])


def test_systemd_boot_and_grub_both_installed_on_an_image_is_refused(capsys, tmp_path):
    root = str(tmp_path)
    distros.debian12_sdboot_image(root)
    write(root, '/boot/grub/grub.cfg', '# generated\n')
    write(root, '/etc/default/grub', 'GRUB_CMDLINE_LINUX=""\n')
    _refused(capsys, root, ['both systemd-boot (/boot/efi/loader/loader.conf) and GRUB (/boot/grub/grub.cfg)',
                            'firmware: unknown'])


@pytest.mark.parametrize('name, bootloader, instead', [
    ('proxmox8-zfs-uefi', 'systemd-boot', 'proxmox-boot-tool'),
    ('popos', 'systemd-boot', 'kernelstub'),
    ('arch', 'grub', 'systemd-boot'),
    ('arch', 'bls', 'systemd-boot'),
])
def test_explicit_bootloader_the_host_contradicts_is_refused(capsys, tmp_path, name, bootloader, instead):
    root = str(tmp_path)
    distros.BY_NAME[name].build(root)
    write(root, '/etc/default/grub', 'GRUB_CMDLINE_LINUX=""\n')
    write(root, '/boot/loader/entries/x.conf', 'options root=/dev/sda1\n')
    _refused(capsys, root, ['bootloader: %s is not what %s boots with' % (bootloader, root),
                            'use bootloader: %s' % instead], bootloader=bootloader)


@pytest.mark.parametrize('name', ['proxmox8-zfs-uefi', 'arch', 'rhel9', 'popos', 'debian12-sdboot-image'])
def test_absent_root_is_refused_and_nothing_changes(capsys, tmp_path, name):
    root = str(tmp_path)
    distros.BY_NAME[name].build(root)
    start = snapshot(root)
    result = run(capsys, root=root, args=['root'], state='absent')
    assert result.get('failed') is True and "args[0]: 'root' with state absent would remove the root device" \
        in result['msg'], result
    assert snapshot(root) == start


def test_systemd_boot_with_xbootldr_edits_the_entries_on_boot_and_on_the_esp(capsys, tmp_path):
    """Arch with the ESP on /efi (loader.conf there) and the entries on the XBOOTLDR partition at /boot,
    where systemd-boot reads them too."""
    root = str(tmp_path)
    distros.arch(root)
    os.makedirs(os.path.join(root, 'efi/loader/entries'))
    os.rename(os.path.join(root, 'boot/loader/loader.conf'), os.path.join(root, 'efi/loader/loader.conf'))
    write(root, '/efi/loader/entries/arch-lts.conf', 'title Arch LTS\nlinux /vmlinuz-linux-lts\n'
          'options root=UUID=%s rw\n' % distros.ROOT_UUID)
    applied = run(capsys, root=root, args=['iommu=pt'])
    assert applied['rc'] == 0 and applied['bootloader'] == 'systemd-boot', applied
    for path in ('/boot/loader/entries/arch.conf', '/efi/loader/entries/arch-lts.conf'):
        assert 'iommu=pt' in distros.options_of(read(root, path)), path
        assert os.path.join(root, path.lstrip('/')) in applied['files']
    assert '/boot/loader/entries/arch.conf' in applied['next_boot'] and '(none found)' not in applied['next_boot']
    distros.reboot(root, ' '.join(distros.options_of(read(root, '/boot/loader/entries/arch.conf'))), 'arch.conf')
    assert run(capsys, root=root, args=['iommu=pt'])['reboot_required'] is False


def _arch_with_unified_images(root, preset=True):
    """Arch booting a unified kernel image that mkinitcpio builds from /etc/kernel/cmdline; no type #1 entry."""
    distros.arch(root)
    os.unlink(os.path.join(root, 'boot/loader/entries/arch.conf'))
    write(root, '/boot/EFI/Linux/arch-linux.efi', 'MZ (a PE image with .cmdline)\n')
    write(root, '/etc/kernel/cmdline', 'root=UUID=%s rw console=tty0\n' % distros.ROOT_UUID)
    if preset:
        write(root, '/etc/mkinitcpio.d/linux.preset', "PRESETS=('default')\ndefault_uki=\"/boot/EFI/Linux/arch-linux.efi\"\n")
    distros.efi_variable(root, 'LoaderEntrySelected', 'arch-linux.efi')


def test_a_booted_unified_kernel_image_names_its_rebuild(capsys, tmp_path):
    root = str(tmp_path)
    _arch_with_unified_images(root)
    applied = run(capsys, root=root, args=['iommu=pt'])
    assert applied['rc'] == 0 and applied['files'] == [os.path.join(root, 'etc/kernel/cmdline')], applied
    assert applied['regenerate'] == [['mkinitcpio', '-P']]
    assert applied['next_boot'] == ('the unified kernel image arch-linux.efi, which carries the old command line '
                                    'until mkinitcpio -P rebuilds it from /etc/kernel/cmdline')


def test_a_booted_unified_kernel_image_without_a_known_rebuild_is_refused(capsys, tmp_path):
    root = str(tmp_path)
    _arch_with_unified_images(root, preset=False)
    _refused(capsys, root, ['the next boot starts a unified kernel image (arch-linux.efi)',
                            'no known rebuild was found'])


def test_popos_leaves_the_recovery_entry_alone(capsys, tmp_path):
    root = str(tmp_path)
    distros.popos(root)
    recovery = ('title Pop!_OS recovery\nlinux /EFI/Recovery-9A8B/vmlinuz.efi\ninitrd /EFI/Recovery-9A8B/initrd.gz\n'
                'options boot=casper hostname=recovery userfullname=Recovery username=recovery noprompt\n')
    write(root, '/boot/efi/loader/entries/Recovery-9A8B.conf', recovery)
    applied = run(capsys, root=root, args=WANTED)
    assert applied['rc'] == 0, applied
    assert read(root, '/boot/efi/loader/entries/Recovery-9A8B.conf') == recovery
    assert 'Recovery' not in applied['next_boot'] + ' '.join(applied['files'])
    assert 'intel_iommu=on' in distros.options_of(read(root, '/boot/efi/loader/entries/Pop_OS-current.conf'))


def test_a_command_line_growing_past_the_kernel_size_is_refused(capsys, tmp_path):
    """Debian with a long but valid GRUB_CMDLINE_LINUX: grub.cfg's linux line (BOOT_IMAGE=, root=, ro, the
    variables) would pass COMMAND_LINE_SIZE with the new arguments."""
    root = str(tmp_path)
    distros.debian12(root)
    long_line = ' '.join('opt%04d=%s' % (n, 'v' * 40) for n in range(39))
    text = read(root, '/etc/default/grub')
    write(root, '/etc/default/grub', text.replace('GRUB_CMDLINE_LINUX=""', 'GRUB_CMDLINE_LINUX="%s"' % long_line))
    start = snapshot(root)
    result = run(capsys, root=root, args=['intel_iommu=on', 'iommu=pt', 'vfio-pci.ids=10de:1b80,10de:10f0'])
    assert result.get('failed') is True and snapshot(root) == start, result
    for fragment in ('/etc/default/grub', 'the command line would be ', 'COMMAND_LINE_SIZE 2048',
                     'BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64'):
        assert fragment in result['msg'], (fragment, result['msg'])
    assert int(result['msg'].split('would be ')[1].split()[0]) > 2048
    assert run(capsys, root=root, args=['iommu=pt'])['changed'] is True  # what still fits is added


def test_a_grub_cfg_behind_the_defaults_still_names_the_regeneration(capsys, tmp_path):
    """The first run's result was lost, or update_bootloader was false: a later run that changes no file still
    names update-grub while grub.cfg's kernel line lacks the arguments, and runs it on the live host."""
    root = str(tmp_path)
    debian = distros.BY_NAME['debian12']
    debian.build(root)
    assert run(capsys, root=root, args=WANTED)['regenerate'] == [['update-grub']]
    again = run(capsys, root=root, args=WANTED)
    assert again['changed'] is False and again['regenerate'] == [['update-grub']], again
    # the live host's apply step runs it although no file changes (the plan's host stands for the live one)
    planned = boot.plan(root, 'auto', parse_args(WANTED), 'present', PVE_OPTIONS)
    assert not planned.changed and planned.regenerate == [['update-grub']]
    planned.host.live = True
    ran = []
    done = boot.apply(planned, lambda: planned, parse_args(WANTED), 'present',
                      boot.Runner(run=lambda argv: ran.append(argv) or (0, '', ''), find=lambda name: None))
    assert ran == [['update-grub']] and done.files == []
    debian._regenerate(root)  # update-grub ran: grub.cfg carries the arguments
    assert run(capsys, root=root, args=WANTED)['regenerate'] == []


def test_absent_after_a_boot_menu_edit_says_what_is_true(capsys, tmp_path):
    """nomodeset was typed at the GRUB menu once; no file carries it. The failure says so, not the message for
    state present (which claimed the entry carries it and the kernel lacks it)."""
    root = str(tmp_path)
    distros.BY_NAME['debian12'].build(root)
    tokens = distros.grub_boot(root, 'grub-mkconfig', 'UUID=' + distros.ROOT_UUID)
    distros.reboot(root, ' '.join(['BOOT_IMAGE=/boot/vmlinuz-6.1.0-18-amd64'] + tokens + ['nomodeset']))
    result = run(capsys, root=root, args=['nomodeset'], state='absent')
    assert result.get('failed') is True, result
    assert ('the host booted from the entry for /boot/vmlinuz-6.1.0-18-amd64 in %s/boot/grub/grub.cfg, which does '
            'not carry nomodeset any more, but the running kernel still has them: they were typed at the boot menu'
            % root) in result['msg'], result['msg']


def _os_release_linked(root):
    """The standard layout: /etc/os-release -> ../usr/lib/os-release, and no grub-mkconfig to read."""
    os.unlink(os.path.join(root, 'usr/sbin/grub-mkconfig'))
    os.makedirs(os.path.join(root, 'usr/lib'), exist_ok=True)
    os.rename(os.path.join(root, 'etc/os-release'), os.path.join(root, 'usr/lib/os-release'))
    os.symlink('../usr/lib/os-release', os.path.join(root, 'etc/os-release'))


def _grub_mkconfig_linked(root):
    os.makedirs(os.path.join(root, 'usr/lib/grub'), exist_ok=True)
    os.rename(os.path.join(root, 'usr/sbin/grub-mkconfig'), os.path.join(root, 'usr/lib/grub/grub-mkconfig'))
    os.symlink('../lib/grub/grub-mkconfig', os.path.join(root, 'usr/sbin/grub-mkconfig'))


@pytest.mark.parametrize('link', [_os_release_linked, _grub_mkconfig_linked])
def test_files_only_read_may_be_symbolic_links(capsys, tmp_path, link):
    """Ubuntu's cloud drop-ins make the module ask whether grub-mkconfig reads grub.d: the answer is read
    through the standard symbolic links; only files the module writes must not be links."""
    root = str(tmp_path)
    distros.BY_NAME['ubuntu2404-cloud'].build(root)
    link(root)
    applied = run(capsys, root=root, args=['intel_iommu=on'])
    assert applied['rc'] == 0 and applied['changed'] is True, applied
    os.rename(os.path.join(root, 'etc/default/grub'), os.path.join(root, 'etc/default/grub.orig'))
    os.symlink('grub.orig', os.path.join(root, 'etc/default/grub'))
    refused = run(capsys, root=root, args=['iommu=pt'])
    assert refused.get('failed') is True and 'is a symbolic link; refusing to manage it' in refused['msg'], refused


def _to_bios(root):
    shutil.rmtree(os.path.join(root, 'sys/firmware/efi'))
    os.makedirs(os.path.join(root, 'sys/firmware/acpi'), exist_ok=True)


@pytest.mark.parametrize('name, prepare, bootloader, detected', [
    # Proxmox VE ZFS on UEFI: systemd-boot started the kernel (LoaderInfo), so /etc/default/grub is not read
    ('proxmox8-zfs-uefi', None, 'grub', 'proxmox-boot-tool'),
    # no /etc/kernel/proxmox-boot-uuids: nothing for proxmox-boot-tool refresh to write to
    ('debian12', None, 'proxmox-boot-tool', 'grub'),
    # Proxmox VE ZFS on BIOS: the ESPs hold GRUB, which reads /etc/default/grub
    ('proxmox8-zfs-uefi', _to_bios, 'proxmox-boot-tool', 'grub'),
    # systemd-boot on BIOS firmware, and on UEFI where GRUB booted BLS entries (no LoaderInfo, no ESP)
    ('debian12', None, 'systemd-boot', 'grub'),
    ('fedora', None, 'systemd-boot', 'bls'),
    # GRUB with BLS boots the entries' options, not grub.cfg's linux lines
    ('rhel9', None, 'grub', 'bls'),
])
def test_explicit_bootloader_is_refused_unless_detection_agrees(capsys, tmp_path, name, prepare, bootloader,
                                                                detected):
    root = str(tmp_path)
    distros.BY_NAME[name].build(root)
    if prepare:
        prepare(root)
    _refused(capsys, root, ['bootloader: %s is not what %s boots with (found: ' % (bootloader, root),
                            'use bootloader: %s (or auto)' % detected], bootloader=bootloader)
    assert run(capsys, root=root, args=WANTED, bootloader=detected, check=True)['rc'] == 0


def test_explicit_bootloader_among_what_detection_leaves_open_is_accepted(capsys, tmp_path):
    """An image of Proxmox VE on ZFS: no firmware information, so proxmox-boot-tool or grub; either may be
    chosen, anything else is refused naming both."""
    root = str(tmp_path)
    distros.proxmox8_zfs_uefi(root)
    shutil.rmtree(os.path.join(root, 'sys'))
    for bootloader in ('proxmox-boot-tool', 'grub'):
        assert run(capsys, root=root, args=WANTED, bootloader=bootloader, check=True)['rc'] == 0
    _refused(capsys, root, ['bootloader: systemd-boot is not what %s boots with: ' % root,
                            'it can only be grub or proxmox-boot-tool'], bootloader='systemd-boot')


@pytest.mark.parametrize('name, expected', [
    ('debian12', [['update-grub']]),
    ('opensuse', [['grub2-mkconfig', '-o', '/boot/grub2/grub.cfg']]),
])
def test_an_image_without_grub_tools_still_names_the_regeneration(capsys, tmp_path, name, expected):
    """An image or chroot whose GRUB tools are not inside it: the edit is made and what its system must run
    is named, never an empty 'nothing left to do'."""
    root = str(tmp_path)
    distros.BY_NAME[name].build(root)
    for program in ('update-grub', 'grub-mkconfig', 'grub2-mkconfig'):
        if os.path.exists(os.path.join(root, 'usr/sbin', program)):
            os.unlink(os.path.join(root, 'usr/sbin', program))
    applied = run(capsys, root=root, args=WANTED)
    assert applied['changed'] is True and applied['commands'] == [], applied
    assert applied['regenerate'] == expected


# --------------------------------------------------------------------------- proxmox-boot-tool status decides
# The status comes from a stand-in executable (distros.proxmox_boot_tool_standin: the tool's data only).

PVE_OPTIONS = dict(grub_file='/etc/default/grub', grub_variable='GRUB_CMDLINE_LINUX', update_command=None)


def _pve_plan(root, bootloader='auto'):
    return boot.plan(root, bootloader, parse_args(['iommu=pt']), 'present', PVE_OPTIONS, distros.ToolProbe(root))


def _without_loader_variables(root):
    for name in ('LoaderInfo', 'LoaderEntrySelected'):
        os.unlink(os.path.join(root, 'sys/firmware/efi/efivars/%s-%s' % (name, distros.LOADER_VENDOR)))


def test_proxmox_status_with_systemd_boot_esps_decides_and_refresh_runs_on_the_live_host(tmp_path):
    root = str(tmp_path)
    distros.proxmox8_zfs_uefi(root)
    _without_loader_variables(root)  # the status alone decides
    log = distros.proxmox_boot_tool_standin(root, distros.PVE_STATUS_UEFI)
    planned = _pve_plan(root)
    assert planned.bootloader == 'proxmox-boot-tool' and planned.files() == [os.path.join(root, 'etc/kernel/cmdline')]
    assert planned.regenerate == [['proxmox-boot-tool', 'refresh']]
    # the live host's apply step runs the regeneration (the plan's host stands for the live one here)
    planned.host.live = True
    ran = []
    probe = distros.ToolProbe(root)
    runner = boot.Runner(run=lambda argv: ran.append(argv) or probe.run([probe.find(argv[0])] + argv[1:]),
                         find=probe.find)
    done = boot.apply(planned, lambda: _pve_plan(root), parse_args(['iommu=pt']), 'present', runner)
    assert done.commands == [['proxmox-boot-tool', 'refresh']] == ran
    assert read(root, '/var/log/pbt.calls').split() == ['status', 'status', 'refresh']  # plan, read back, refresh
    assert 'iommu=pt' in distros.proxmox_refresh(root)


def test_proxmox_status_with_grub_esps_is_grub_refreshed_even_when_booted_through_uefi(tmp_path):
    """Proxmox VE with Secure Boot keeps GRUB on the ESPs: /etc/default/grub is what the next boot reads."""
    root = str(tmp_path)
    distros.proxmox8_zfs_uefi(root)
    _without_loader_variables(root)
    distros.proxmox_boot_tool_standin(root, distros.PVE_STATUS_UEFI.replace(': uefi (', ': grub ('))
    planned = _pve_plan(root)
    assert planned.bootloader == 'grub' and planned.regenerate == [['proxmox-boot-tool', 'refresh']]
    assert planned.files() == [os.path.join(root, 'etc/default/grub')]
    with pytest.raises(CmdlineError) as exc:
        _pve_plan(root, 'proxmox-boot-tool')
    assert 'bootloader: proxmox-boot-tool is not what' in str(exc.value)
    assert '1A2B-3C4D configured with grub' in str(exc.value) and 'use bootloader: grub' in str(exc.value)


def test_proxmox_esps_set_up_differently_are_refused(tmp_path):
    root = str(tmp_path)
    distros.proxmox8_zfs_uefi(root)
    distros.proxmox_boot_tool_standin(root, distros.PVE_STATUS_UEFI.replace(
        '5E6F-7A8B is configured with: uefi (', '5E6F-7A8B is configured with: grub ('))
    start = snapshot(root)
    with pytest.raises(CmdlineError) as exc:
        _pve_plan(root)
    assert 'the ESPs proxmox-boot-tool keeps are 1A2B-3C4D: proxmox-boot-tool, 5E6F-7A8B: grub' in str(exc.value)
    assert read(root, '/var/log/pbt.calls') == 'status\n'  # only asked
    del start['var/log/pbt.calls']
    assert {k: v for k, v in snapshot(root).items() if k != 'var/log/pbt.calls'} == start


def test_proxmox_stale_esp_is_skipped_as_the_tool_skips_it(tmp_path):
    root = str(tmp_path)
    distros.proxmox8_zfs_uefi(root)
    status = distros.PVE_STATUS_UEFI.replace(
        '5E6F-7A8B is configured with: uefi (versions: 6.5.11-7-pve, %s)\n' % distros.PVE_KERNEL,
        "WARN: /dev/disk/by-uuid/5E6F-7A8B does not exist - clean '/etc/kernel/proxmox-boot-uuids'! - skipping\n")
    distros.proxmox_boot_tool_standin(root, status)
    assert _pve_plan(root).bootloader == 'proxmox-boot-tool'


def test_proxmox_status_failing_is_refused_with_its_message(tmp_path):
    root = str(tmp_path)
    distros.proxmox8_zfs_uefi(root)
    distros.proxmox_boot_tool_standin(root, 'E: /etc/kernel/proxmox-boot-uuids does not exist.\n', rc=2)
    with pytest.raises(CmdlineError) as exc:
        _pve_plan(root)
    assert '/usr/sbin/proxmox-boot-tool status failed (rc=2): E: /etc/kernel/proxmox-boot-uuids' in str(exc.value)
    assert 'set bootloader explicitly' in str(exc.value)


def test_fedora_kernel_installed_before_the_reboot_gets_the_arguments(capsys, tmp_path):
    """Fedora ships no /etc/kernel/cmdline: kernel-install would copy /proc/cmdline (without the arguments)
    into the entry of a kernel installed before the reboot. The module creates it from the full command line."""
    root = str(tmp_path)
    distros.fedora(root)
    assert read(root, '/etc/kernel/cmdline') is None
    before = distros.kernel_install(root)
    result = run(capsys, root=root, args=WANTED)
    assert os.path.join(root, 'etc/kernel/cmdline') in result['files']
    assert not any(arg in read(root, '/proc/cmdline') for arg in WANTED)  # not rebooted yet
    assert_carries(distros.kernel_install(root), before, 'kernel installed before the reboot')


def test_popos_kernelstub_runs_on_the_live_host_and_keeps_the_entries(tmp_path):
    """kernelstub (a stand-in that logs its call: its data only) is run after the files are written."""
    root = str(tmp_path)
    distros.popos(root)
    log = os.path.join(root, 'var/log/kernelstub.calls')
    write(root, '/var/log/kernelstub.calls', '')
    write(root, '/usr/sbin/kernelstub', '#!/bin/sh\necho "run $*" >> %s\n' % log, mode=0o755)
    planned = boot.plan(root, 'auto', parse_args(['iommu=pt']), 'present', PVE_OPTIONS)
    assert planned.bootloader == 'kernelstub' and planned.regenerate == [['kernelstub']]
    planned.host.live = True  # the plan's host stands for the live one
    probe = distros.ToolProbe(root)
    runner = boot.Runner(run=lambda argv: probe.run([probe.find(argv[0])] + argv[1:]), find=probe.find)
    done = boot.apply(planned, lambda: boot.plan(root, 'auto', parse_args(['iommu=pt']), 'present', PVE_OPTIONS),
                      parse_args(['iommu=pt']), 'present', runner)
    assert done.commands == [['kernelstub']] and read(root, '/var/log/kernelstub.calls') == 'run \n'
    distros.kernelstub_refresh(root)  # what kernelstub writes from its configuration: the same entries
    assert distros.options_of(read(root, '/boot/efi/loader/entries/Pop_OS-current.conf')) == \
        distros.kernelstub_writes(root) and 'iommu=pt' in distros.kernelstub_writes(root)
