# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure kernel command line core (module_utils/boot): argument parsing, the repeatable and
comma-list parameters, reconcile, the file formats, boot path detection and the plan."""

from __future__ import annotations

import os

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _files
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import cmdline, config_files, detect, grub
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import plan as boot
from ansible_collections.virtdev.libvirt.tests.unit.fixtures.bootloaders import trees


def args(*values, state='present'):
    return cmdline.parse_args(list(values), state)


def plan(root, bootloader, wanted, state, grub_file='/etc/default/grub', grub_variable='GRUB_CMDLINE_LINUX'):
    return boot.plan(root, bootloader, wanted, state,
                     dict(grub_file=grub_file, grub_variable=grub_variable, update_command=None))


def changes(result):
    return [(config, change.before, change.after) for config, change in result.changes]


# --------------------------------------------------------------------------- arguments

@pytest.mark.parametrize('value, fragment', [
    ('a b', 'whitespace'),
    ('intel_iommu=on iommu=pt', 'whitespace'),
    ('=x', 'no key'),
    ('', 'empty'),
    ('   ', 'empty'),
    ("quiet'", 'single quote'),
    ('foo="a"', 'double quote'),
    ('foo=$HOME', 'dollar'),
    ('foo=`id`', 'backquote'),
    ('foo=a\\b', 'backslash'),
    ('-x', 'invalid key'),
    ('a+b=1', 'invalid key'),
    ('foo=\x01', 'control character'),
    ('quirk=a;reboot', 'a semicolon (;)'),
    ('x=y|z', 'a pipe (|)'),
    ('x=y&z', 'an ampersand (&)'),
    ('x=<y', 'a less-than sign (<)'),
    ('x=y>z', 'a greater-than sign (>)'),
    ('x={y}', 'a brace ({)'),
    ('x=y}', 'a brace (})'),
    ('x=#y', None),  # "#" inside a word is no comment for GRUB or the shell: accepted
])
def test_bad_argument_is_named_in_the_error(value, fragment):
    if fragment is None:
        assert cmdline.parse_args(['quiet', value])[1].text == value
        return
    with pytest.raises(cmdline.CmdlineError) as exc:
        cmdline.parse_args(['quiet', value])
    message = str(exc.value)
    assert 'args[1]' in message
    assert repr(value) in message
    assert fragment in message


def test_non_string_and_empty_list():
    with pytest.raises(cmdline.CmdlineError, match=r'args\[0\]: 5 is not a string'):
        cmdline.parse_args([5])
    with pytest.raises(cmdline.CmdlineError, match='at least one'):
        cmdline.parse_args([])


def test_contradicting_args_are_refused_for_present_only():
    with pytest.raises(cmdline.CmdlineError) as exc:
        args('intel_iommu=on', 'intel_iommu=off')
    assert "'intel_iommu=on' and 'intel_iommu=off'" in str(exc.value)
    # dash and underscore name the same parameter
    with pytest.raises(cmdline.CmdlineError):
        args('pcie-aspm=off', 'pcie_aspm=force')
    # parameters that repeat or hold a list take several values in one call
    assert [a.text for a in args('console=tty0', 'console=ttyS0,115200', 'vfio-pci.ids=1:2', 'vfio_pci.ids=3:4')] \
        == ['console=tty0', 'console=ttyS0,115200', 'vfio-pci.ids=1:2', 'vfio_pci.ids=3:4']
    assert [a.text for a in args('intel_iommu=on', 'intel_iommu=off', state='absent')] == \
        ['intel_iommu=on', 'intel_iommu=off']


@pytest.mark.parametrize('value', ['root', 'root=/dev/mapper/rhel-root', 'root=ZFS=rpool/ROOT/pve-1'])
def test_absent_never_removes_the_root_device(value):
    with pytest.raises(cmdline.CmdlineError) as exc:
        cmdline.parse_args(['nomodeset', value], 'absent')
    assert str(exc.value).startswith('args[1]: %r with state absent would remove the root device' % value)
    assert cmdline.parse_args([value], 'present')[0].text == value  # present may still set or replace it


def test_repeated_identical_arg_is_kept_once():
    assert [a.text for a in args('iommu=pt', 'iommu=pt', 'quiet')] == ['iommu=pt', 'quiet']


def test_valid_args_parse_into_key_and_value():
    parsed = args('vfio-pci.ids=10de:1b80,10de:10f0', 'rd.driver.pre=vfio-pci', 'quiet', 'foo=')
    assert [(a.key, a.norm, a.value) for a in parsed] == [
        ('vfio-pci.ids', 'vfio_pci.ids', '10de:1b80,10de:10f0'),
        ('rd.driver.pre', 'rd.driver.pre', 'vfio-pci'),
        ('quiet', 'quiet', None),
        ('foo', 'foo', ''),
    ]


def test_split_cmdline_honours_double_quotes():
    text = ' root=/dev/sda1  ro "quoted=a b" dyndbg="file x.c +p" \tquiet\n'
    assert cmdline.split_cmdline(text) == ['root=/dev/sda1', 'ro', '"quoted=a b"', 'dyndbg="file x.c +p"', 'quiet']


@pytest.mark.parametrize('token, expected', [
    ('quiet', ('quiet', None)),
    ('vfio-pci.ids=1:2', ('vfio_pci.ids', '1:2')),
    ('dyndbg="file x.c +p"', ('dyndbg', 'file x.c +p')),
    ('"quoted=a b"', ('quoted', 'a b')),
    ('$tuned_params', None),
    ('a=b=c', ('a', 'b=c')),
])
def test_token_key_value(token, expected):
    assert cmdline.token_key_value(token) == expected


# --------------------------------------------------------------------------- reconcile

def _reconcile(segments, wanted, state='present', target=-1):
    segs = [cmdline.Segment(tokens, 'seg%d' % i) for i, tokens in enumerate(segments)]
    outcome = cmdline.reconcile(segs, segs[target], args(*wanted, state=state), state)
    return [s.tokens for s in segs], outcome


def test_present_appends_to_target():
    result, outcome = _reconcile([['quiet'], ['ro']], ['iommu=pt'], target=0)
    assert result == [['quiet', 'iommu=pt'], ['ro']]
    assert outcome.added == [{'arg': 'iommu=pt', 'location': 'seg0'}]


def test_present_already_there_changes_nothing():
    result, outcome = _reconcile([['quiet', 'iommu=pt']], ['iommu=pt'])
    assert result == [['quiet', 'iommu=pt']]
    assert not (outcome.added or outcome.replaced or outcome.duplicates)


def test_contradicting_value_is_replaced_in_place_and_reported():
    result, outcome = _reconcile([['intel_iommu=off', 'quiet']], ['intel_iommu=on'])
    assert result == [['intel_iommu=on', 'quiet']]
    assert outcome.replaced == [{'before': 'intel_iommu=off', 'after': 'intel_iommu=on', 'location': 'seg0'}]


def test_later_contradiction_and_duplicates_are_dropped_across_segments():
    result, outcome = _reconcile([['iommu=pt', 'quiet', 'iommu=pt'], ['iommu=off', 'ro']], ['iommu=pt'])
    assert result == [['iommu=pt', 'quiet'], ['ro']]
    assert outcome.duplicates == [{'arg': 'iommu=pt', 'location': 'seg0'}]
    assert outcome.replaced == [{'before': 'iommu=off', 'after': 'iommu=pt', 'location': 'seg1'}]


def test_exact_match_later_wins_over_earlier_contradiction():
    result, _outcome = _reconcile([['intel_iommu=off', 'a', 'intel_iommu=on']], ['intel_iommu=on'])
    assert result == [['a', 'intel_iommu=on']]


def test_dash_and_underscore_match():
    result, outcome = _reconcile([['pcie_aspm=off']], ['pcie-aspm=force'])
    assert result == [['pcie-aspm=force']]
    assert outcome.replaced[0]['before'] == 'pcie_aspm=off'


def test_flag_and_value_forms_of_one_key():
    result, _outcome = _reconcile([['splash=silent']], ['splash'])
    assert result == [['splash']]


def test_absent_bare_key_removes_every_value():
    result, outcome = _reconcile([['iommu=pt', 'quiet'], ['iommu=off', 'iommu']], ['iommu'], state='absent')
    assert result == [['quiet'], []]
    assert [r['arg'] for r in outcome.removed] == ['iommu=pt', 'iommu=off', 'iommu']


def test_absent_key_value_removes_only_that_value():
    result, _outcome = _reconcile([['iommu=pt', 'iommu=off', 'iommu=pt']], ['iommu=pt'], state='absent')
    assert result == [['iommu=off']]


def test_opaque_tokens_are_left_alone():
    result, _outcome = _reconcile([['$kernelopts', '$tuned_params']], ['iommu=pt'])
    assert result == [['$kernelopts', '$tuned_params', 'iommu=pt']]


@pytest.mark.parametrize('proc, wanted, state, expected', [
    ('ro quiet', ['iommu=pt'], 'present', True),
    ('ro iommu=pt quiet', ['iommu=pt'], 'present', False),
    ('iommu=off iommu=pt', ['iommu=pt'], 'present', False),  # the last value wins in the kernel
    ('iommu=pt iommu=off', ['iommu=pt'], 'present', True),
    ('ro iommu=pt', ['iommu'], 'absent', True),
    ('ro iommu=pt', ['iommu=off'], 'absent', False),
])
def test_reboot_required_from_proc_cmdline(proc, wanted, state, expected):
    assert (not cmdline.satisfied(cmdline.split_cmdline(proc), args(*wanted, state=state), state)) is expected


# --------------------------------------------------------------------------- GRUB files

def _grub(tmp_path, text, name='/etc/default/grub', dropin=False):
    trees.write(str(tmp_path), name, text)
    return config_files.GrubDefaultsFile(name, text, dropin)


@pytest.mark.parametrize('line, fragment', [
    ("GRUB_CMDLINE_LINUX='quiet splash'", 'single quotes'),
    ('GRUB_CMDLINE_LINUX="quiet', 'does not end'),
    ('GRUB_CMDLINE_LINUX="quiet \\"x\\""', 'backslash'),
    ('GRUB_CMDLINE_LINUX="$(cat /etc/args)"', 'shell expansion'),
    ('GRUB_CMDLINE_LINUX="$OTHER quiet"', 'shell expansion'),
    ('GRUB_CMDLINE_LINUX="a"; echo hi', 'unexpected text'),
    ('GRUB_CMDLINE_LINUX=$X', 'cannot edit the unquoted value'),
])
def test_grub_values_that_cannot_be_edited_safely(tmp_path, line, fragment):
    with pytest.raises(cmdline.CmdlineError) as exc:
        _grub(tmp_path, 'GRUB_TIMEOUT=5\n' + line + '\n')
    assert '/etc/default/grub line 2 (GRUB_CMDLINE_LINUX)' in str(exc.value)
    assert fragment in str(exc.value)


def test_grub_duplicate_assignment_lines_are_refused(tmp_path):
    with pytest.raises(cmdline.CmdlineError) as exc:
        _grub(tmp_path, 'GRUB_CMDLINE_LINUX="a"\nGRUB_TIMEOUT=1\nGRUB_CMDLINE_LINUX="b"\n')
    assert 'sets GRUB_CMDLINE_LINUX twice (lines 1 and 3)' in str(exc.value)


def test_grub_render_keeps_layout_comment_and_append_prefix(tmp_path):
    text = ('  export GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} quiet"  # ours\n'
            'GRUB_CMDLINE_LINUX_DEFAULT=splash\n')
    grub = _grub(tmp_path, text, dropin=True)
    linux, default = grub.segments
    assert (linux.tokens, default.tokens) == (['quiet'], ['splash'])
    linux.tokens.append('iommu=pt')
    default.tokens.append('x=1')
    assert grub.render() == ('  export GRUB_CMDLINE_LINUX="${GRUB_CMDLINE_LINUX} quiet iommu=pt"  # ours\n'
                             'GRUB_CMDLINE_LINUX_DEFAULT="splash x=1"\n')


def test_grub_scope_edits_main_file_and_counts_both_variables(tmp_path):
    root = trees.debian_grub(str(tmp_path), linux='intel_iommu=off', default='quiet iommu=pt')
    result = plan(root, 'auto', args('intel_iommu=on', 'iommu=pt'), 'present')
    assert result.bootloader == 'grub'
    scope = result.scopes[0]
    assert scope.tokens(original=True) == ['intel_iommu=off', 'quiet', 'iommu=pt']
    assert scope.tokens() == ['intel_iommu=on', 'quiet', 'iommu=pt']
    [(config, _before, after)] = changes(result)
    assert config.path == '/etc/default/grub'
    assert 'GRUB_CMDLINE_LINUX="intel_iommu=on"\n' in after
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="quiet iommu=pt"\n' in after
    boot.validate(config, after)


def test_grub_adds_missing_variable_line(tmp_path):
    root = str(tmp_path)
    trees.write(root, '/etc/default/grub', 'GRUB_TIMEOUT=5')
    result = plan(root, 'grub', args('iommu=pt'), 'present')
    assert changes(result)[0][2] == 'GRUB_TIMEOUT=5\nGRUB_CMDLINE_LINUX="iommu=pt"\n'


def test_overriding_dropin_is_detected(tmp_path):
    root = trees.debian_grub(str(tmp_path), dropins={
        '50-cloudimg-settings.cfg': 'GRUB_CMDLINE_LINUX_DEFAULT="console=ttyS0"\n',
        '60-override.cfg': '# site policy\nGRUB_CMDLINE_LINUX="nomodeset"\n',
    })
    with pytest.raises(cmdline.CmdlineError) as exc:
        plan(root, 'grub', args('iommu=pt'), 'present')
    message = str(exc.value)
    assert '60-override.cfg line 2 sets GRUB_CMDLINE_LINUX without including $GRUB_CMDLINE_LINUX' in message
    assert 'grub_file=/etc/default/grub.d/60-override.cfg' in message
    # Targeting the overriding file itself works; GRUB_CMDLINE_LINUX_DEFAULT is overridden but not ours.
    result = plan(root, 'grub', args('iommu=pt'), 'present', grub_file='/etc/default/grub.d/60-override.cfg')
    assert [c.path for c, _b, _a in changes(result)] == ['/etc/default/grub.d/60-override.cfg']
    # The overridden "quiet" of the main file is not part of the effective command line.
    assert result.scopes[0].tokens() == ['nomodeset', 'iommu=pt', 'console=ttyS0']


def test_new_dropin_appends_and_fixes_contradictions_elsewhere(tmp_path):
    root = trees.debian_grub(str(tmp_path), linux='intel_iommu=off', dropins={
        '10-extend.cfg': 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX iommu=soft"\n'})
    result = plan(root, 'grub', args('intel_iommu=on', 'iommu=pt'), 'present',
                  grub_file='/etc/default/grub.d/90-virtdev.cfg')
    written = {c.path: after for c, _b, after in changes(result)}
    # contradictions are replaced where they are; nothing left to append to the new drop-in
    assert sorted(written) == ['/etc/default/grub', '/etc/default/grub.d/10-extend.cfg']
    assert 'GRUB_CMDLINE_LINUX="intel_iommu=on"' in written['/etc/default/grub']
    assert written['/etc/default/grub.d/10-extend.cfg'] == 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX iommu=pt"\n'
    result = plan(root, 'grub', args('rd.driver.pre=vfio-pci'), 'present',
                  grub_file='/etc/default/grub.d/90-virtdev.cfg')
    [(config, before, after)] = changes(result)
    assert before is None
    assert after == ('# Kernel arguments managed by virtdev.libvirt.kernel_cmdline\n'
                     'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX rd.driver.pre=vfio-pci"\n')
    boot.validate(config, after)


def test_grub_file_outside_what_grub_mkconfig_reads(tmp_path):
    root = trees.debian_grub(str(tmp_path))
    with pytest.raises(cmdline.CmdlineError, match="grub_file: '/etc/grub.conf' is neither"):
        plan(root, 'grub', args('iommu=pt'), 'present', grub_file='/etc/grub.conf')


def test_hidden_dropin_is_not_what_grub_mkconfig_reads(tmp_path):
    root = trees.debian_grub(str(tmp_path))
    with pytest.raises(cmdline.CmdlineError, match=r"grub_file: '/etc/default/grub.d/.hidden.cfg' is neither"):
        plan(root, 'grub', args('iommu=pt'), 'present', grub_file='/etc/default/grub.d/.hidden.cfg')


def test_bls_seeds_missing_kernel_cmdline_from_usr_lib_kernel_cmdline_first(tmp_path):
    root = trees.rhel_bls(str(tmp_path), kernel_cmdline=False)
    os.unlink(os.path.join(root, 'proc/cmdline'))
    trees.write(root, '/usr/lib/kernel/cmdline', 'root=UUID=x ro from_usr_lib\n')
    result = plan(root, 'bls', args('iommu=pt'), 'present')
    [(_config, before, after)] = [c for c in changes(result) if c[0].path == '/etc/kernel/cmdline']
    assert before is None and after == 'root=UUID=x ro from_usr_lib iommu=pt\n'


def test_a_missing_kernel_cmdline_without_source_names_every_source_tried(tmp_path):
    """systemd-boot booting a unified kernel image: no /usr/lib/kernel/cmdline, no /proc/cmdline, no entry."""
    root = str(tmp_path)
    trees.write(root, '/boot/efi/loader/loader.conf', 'timeout 3\n')
    trees.write(root, '/boot/efi/EFI/Linux/linux.efi', 'MZ\n')
    with pytest.raises(cmdline.CmdlineError) as exc:
        plan(root, 'systemd-boot', args('iommu=pt'), 'present')
    assert ("no full command line to start from (tried /usr/lib/kernel/cmdline, /proc/cmdline, a boot entry's "
            "options: none exists)") in str(exc.value)


def test_kernelstub_without_its_configuration_says_it_does_not_exist(tmp_path):
    host = detect.Host(str(tmp_path))
    with pytest.raises(cmdline.CmdlineError) as exc:
        boot.BACKENDS['kernelstub'].scopes(host, {})
    assert str(exc.value) == '%s/etc/kernelstub/configuration does not exist: kernelstub is not set up here' % tmp_path


def test_grub_main_missing(tmp_path):
    with pytest.raises(cmdline.CmdlineError, match='bootloader: grub is not what .* boots with: no boot path matches'):
        plan(str(tmp_path), 'grub', args('iommu=pt'), 'present')


# --------------------------------------------------------------------------- BLS and systemd-boot

def test_bls_entry_without_options_gets_one_and_multiple_lines_are_one_cmdline(tmp_path):
    entry = config_files.BlsEntry('/e.conf', 'title x\nlinux /vmlinuz')
    entry.segments[0].tokens.append('iommu=pt')
    assert entry.render() == 'title x\nlinux /vmlinuz\noptions iommu=pt\n'
    boot.validate(entry, entry.render())
    entry = config_files.BlsEntry('/e.conf', 'options root=/dev/vda1\ntitle x\noptions  ro iommu=off\n')
    segs = entry.segments
    outcome = cmdline.reconcile(segs, segs[-1], args('iommu=pt'), 'present')
    assert outcome.replaced[0]['location'] == '/e.conf:3'
    assert entry.render() == 'options root=/dev/vda1\ntitle x\noptions  ro iommu=pt\n'


def test_rhel_bls_plan_touches_entries_kernel_cmdline_and_grub(tmp_path):
    root = trees.rhel_bls(str(tmp_path), extra='intel_iommu=off')
    result = plan(root, 'auto', args('intel_iommu=on'), 'present')
    assert result.bootloader == 'bls'
    paths = sorted(c.path for c, _b, _a in changes(result))
    assert paths == sorted(['/boot/loader/entries/%s-%s.conf' % (trees.MACHINE_ID, k) for k in trees.RHEL_KERNELS]
                           + ['/etc/default/grub', '/etc/kernel/cmdline'])
    assert len(result.report()['replaced']) == 4
    # newest entry first: that is the primary command line
    assert result.scopes[0].name.endswith(trees.RHEL_KERNELS[0] + '.conf')
    for config, _before, after in changes(result):
        boot.validate(config, after)
        assert 'intel_iommu=off' not in after and 'intel_iommu=on' in after


def test_kernelopts_variable_is_warned_about(tmp_path):
    root = str(tmp_path)
    trees.write(root, '/boot/loader/entries/a.conf', 'title a\noptions $kernelopts\n')
    trees.write(root, '/boot/grub2/grub.cfg', '# generated by grub2-mkconfig\n')
    # no /etc/kernel/cmdline, and the only source of one lacks the root device: refused, naming it
    with pytest.raises(cmdline.CmdlineError) as exc:
        plan(root, 'bls', args('iommu=pt'), 'present')
    assert 'refusing to create %s/etc/kernel/cmdline from %s/boot/loader/entries/a.conf options: it has no root=' \
        % (root, root) in str(exc.value)
    assert not os.path.exists(os.path.join(root, 'etc/kernel/cmdline'))
    trees.write(root, '/etc/kernel/cmdline', 'root=/dev/vda1 ro\n')
    result = plan(root, 'bls', args('iommu=pt'), 'present')
    assert any('$kernelopts' in w for w in result.warnings)


def test_bls_without_entries(tmp_path):
    trees.write(str(tmp_path), '/etc/default/grub', 'GRUB_CMDLINE_LINUX=""\n')
    with pytest.raises(cmdline.CmdlineError, match='bootloader: bls is not what .*; use bootloader: grub'):
        plan(str(tmp_path), 'bls', args('iommu=pt'), 'present')


def test_systemd_boot_seeds_missing_kernel_cmdline_from_kernel_install_default(tmp_path):
    root = trees.systemd_boot(str(tmp_path), kernel_cmdline=False)
    result = plan(root, 'auto', args('iommu=pt'), 'present')
    assert result.bootloader == 'systemd-boot'
    written = {c.path: (before, after) for c, before, after in changes(result)}
    before, after = written['/etc/kernel/cmdline']
    assert before is None
    assert after == 'root=UUID=%s ro quiet iommu=pt\n' % trees.DEBIAN_ROOT_UUID
    # absent and nothing to remove: the file is not created
    result = plan(root, 'auto', args('nomodeset', state='absent'), 'absent')
    assert not result.changed


def test_systemd_boot_warns_about_unified_kernel_images(tmp_path):
    root = trees.systemd_boot(str(tmp_path))
    trees.write(root, '/boot/efi/EFI/Linux/debian-6.1.efi', 'MZ')
    result = plan(root, 'auto', args('iommu=pt'), 'present')
    assert any('unified kernel images' in w for w in result.warnings)


@pytest.mark.parametrize('build, expected', [
    (trees.debian_grub, 'grub'),
    (trees.rhel_bls, 'bls'),
    (trees.systemd_boot, 'systemd-boot'),
    (lambda r: trees.systemd_boot(r, esp='/efi'), 'systemd-boot'),
    (lambda r: trees.write(r, '/etc/kernel/cmdline', 'ro\n'), 'systemd-boot'),
])
def test_detect_bootloader(tmp_path, build, expected):
    build(str(tmp_path))
    assert detect.boot_path(detect.Host(str(tmp_path))) == expected


def test_detect_nothing(tmp_path):
    with pytest.raises(cmdline.CmdlineError, match='cannot tell which boot path'):
        detect.boot_path(detect.Host(str(tmp_path)))


def test_validate_catches_a_file_that_does_not_hold_the_plan(tmp_path):
    root = trees.debian_grub(str(tmp_path))
    result = plan(root, 'grub', args('iommu=pt'), 'present')
    [(config, _before, after)] = changes(result)
    with pytest.raises(cmdline.CmdlineError, match='validation of the new /etc/default/grub failed'):
        boot.validate(config, after.replace('iommu=pt', 'iommu=off'))
    with pytest.raises(cmdline.CmdlineError, match='validation'):
        boot.validate(config, after + "GRUB_CMDLINE_LINUX='x'\n")


def test_non_utf8_file_is_refused(tmp_path):
    root = str(tmp_path)
    os.makedirs(os.path.join(root, 'etc/default'))
    with open(os.path.join(root, 'etc/default/grub'), 'wb') as handle:
        handle.write(b'GRUB_CMDLINE_LINUX="\xff"\n')
    with pytest.raises(_files.FileError, match='cannot read .*etc/default/grub'):  # as every module's files
        plan(root, 'grub', args('iommu=pt'), 'present')


def test_arguments_up_to_the_kernel_command_line_size_only():
    longest = 'x=' + 'v' * (cmdline.COMMAND_LINE_SIZE - 3)          # 2047 bytes: with the final NUL, it fits
    assert cmdline.parse_arg(longest).text == longest
    with pytest.raises(cmdline.CmdlineError, match=r"args\[0\]: kernel argument 'x=vvv.*\(2048 bytes\)"):
        cmdline.parse_arg(longest + 'v', 'args[0]')
    half = 'a=' + 'v' * 1020                                     # two of them fit, three do not
    assert len(cmdline.parse_args([half, 'b' + half[1:]])) == 2
    with pytest.raises(cmdline.CmdlineError, match='args: together 3068 bytes'):
        cmdline.parse_args([half, 'b' + half[1:], 'c' + half[1:]])
    assert len(cmdline.parse_args([half, 'b' + half[1:], 'c' + half[1:]], state='absent')) == 3   # removing is fine


# --------------------------------------------------------------------------- parameters that repeat or hold lists

@pytest.mark.parametrize('segments, wanted, state, expected', [
    # dracut's rd.driver.pre repeats: the existing preload stays, the new one is added once
    ([['rd.driver.pre=scsi_dh_alua', 'quiet']], ['rd.driver.pre=vfio-pci'], 'present',
     [['rd.driver.pre=scsi_dh_alua', 'quiet', 'rd.driver.pre=vfio-pci']]),
    ([['rd.driver.pre=scsi_dh_alua,vfio-pci']], ['rd.driver.pre=vfio-pci'], 'present',
     [['rd.driver.pre=scsi_dh_alua,vfio-pci']]),
    ([['rd.driver.pre=a', 'rd.driver.pre=b']], ['rd.driver.pre=b,c'], 'present',
     [['rd.driver.pre=a', 'rd.driver.pre=b', 'rd.driver.pre=c']]),
    ([['rd.driver.pre=scsi_dh_alua,vfio-pci', 'rd.driver.pre=vfio-pci']], ['rd.driver.pre=vfio-pci'], 'absent',
     [['rd.driver.pre=scsi_dh_alua']]),
    ([['console=tty1', 'console=ttyS0']], ['console=ttyS1,115200'], 'present',
     [['console=tty1', 'console=ttyS0', 'console=ttyS1,115200']]),
    ([['console=tty1', 'console=ttyS0']], ['console=tty1'], 'absent', [['console=ttyS0']]),
    ([['modprobe.blacklist=nouveau'], ['modprobe.blacklist=radeon']], ['modprobe.blacklist=nouveau,amdgpu'], 'present',
     [['modprobe.blacklist=nouveau'], ['modprobe.blacklist=radeon', 'modprobe.blacklist=amdgpu']]),
    # vfio-pci.ids is read from its last occurrence: that one gains the items, nothing is collapsed
    ([['vfio-pci.ids=8086:1533', 'quiet']], ['vfio-pci.ids=10de:1b80,10de:10f0'], 'present',
     [['vfio-pci.ids=8086:1533,10de:1b80,10de:10f0', 'quiet']]),
    ([['vfio_pci.ids=1:1'], ['vfio-pci.ids=2:2']], ['vfio-pci.ids=1:1'], 'present',
     [['vfio_pci.ids=1:1'], ['vfio-pci.ids=2:2,1:1']]),
    ([['vfio-pci.ids=8086:1533,10de:1b80']], ['vfio-pci.ids=10de:1b80'], 'absent', [['vfio-pci.ids=8086:1533']]),
    ([['vfio-pci.ids=10de:1b80']], ['vfio-pci.ids=10de:1b80'], 'absent', [[]]),
    ([['vfio-pci.ids=10de:1b80', 'rd.driver.pre=x']], ['vfio-pci.ids', 'rd.driver.pre'], 'absent', [[]]),
])
def test_multi_value_parameters_gain_and_lose_values_only(segments, wanted, state, expected):
    result, _outcome = _reconcile(segments, wanted, state=state)
    assert result == expected
    assert cmdline.satisfied([t for s in result for t in s], args(*wanted, state=state), state)
    again, outcome = _reconcile(result, wanted, state=state)
    assert again == result and not (outcome.added or outcome.replaced or outcome.removed)


def test_multi_value_table_rows_are_normalized_keys():
    for key, (repeats, listed, source) in cmdline.MULTI_VALUE.items():
        assert key == cmdline.normalize_key(key) and (repeats or listed) and source


@pytest.mark.parametrize('proc, wanted, lacking', [
    ('rd.driver.pre=a rd.driver.pre=vfio-pci', ['rd.driver.pre=vfio-pci'], []),
    ('vfio-pci.ids=1:1,2:2 vfio-pci.ids=3:3', ['vfio-pci.ids=1:1'], ['vfio-pci.ids=1:1']),  # the last one counts
    ('vfio-pci.ids=3:3,1:1', ['vfio-pci.ids=1:1,3:3'], []),
    ('console=ttyS0 console=tty0', ['console=ttyS0'], []),
])
def test_running_kernel_reading_of_multi_value_parameters(proc, wanted, lacking):
    assert cmdline.missing(cmdline.split_cmdline(proc), args(*wanted), 'present') == lacking


# --------------------------------------------------------------------------- boot path detection

def _efivar(root, name, value):
    trees.write(root, '/sys/firmware/efi/efivars/%s-%s' % (name, detect.LOADER_VENDOR), '')
    with open(os.path.join(root, 'sys/firmware/efi/efivars/%s-%s' % (name, detect.LOADER_VENDOR)), 'wb') as handle:
        handle.write(b'\x07\x00\x00\x00' + (value + '\x00').encode('utf-16-le'))


def test_efi_variables_are_read_as_efivarfs_stores_them(tmp_path):
    root = str(tmp_path)
    _efivar(root, 'LoaderInfo', 'systemd-boot 252')
    _efivar(root, 'LoaderEntrySelected', 'arch.conf')
    host = detect.Host(root)
    assert (host.firmware, host.loader_info, host.loader_entry) == ('uefi', 'systemd-boot 252', 'arch.conf')
    assert host.systemd_boot_booted is True


def test_systemd_boot_installed_but_grub_booted_on_uefi_is_grub(tmp_path):
    root = trees.debian_grub(str(tmp_path))
    trees.write(root, '/boot/efi/loader/loader.conf', 'timeout 3\n')
    os.makedirs(os.path.join(root, 'sys/firmware/efi'))
    assert detect.boot_path(detect.Host(root)) == 'grub'  # no LoaderInfo: systemd-boot did not start us
    _efivar(root, 'LoaderInfo', 'systemd-boot 252')
    assert detect.boot_path(detect.Host(root)) == 'systemd-boot'


def test_seed_requires_the_root_device(tmp_path):
    root = str(tmp_path)
    assert config_files.seed_kernel_cmdline(root, [('a', None), ('b', ['BOOT_IMAGE=/x', 'root=/dev/sda1', 'ro'])]) \
        == (['root=/dev/sda1', 'ro'], 'b')
    with pytest.raises(cmdline.CmdlineError, match='from b: it has no root= \\(quiet\\)'):
        config_files.seed_kernel_cmdline(root, [('a', None), ('b', ['quiet', '$tuned_params'])])
    with pytest.raises(cmdline.CmdlineError, match='tried a, b: none exists'):
        config_files.seed_kernel_cmdline(root, [('a', None), ('b', None)])


def test_grub_reads_dropins_from_the_distribution_script_or_os_release(tmp_path):
    root = str(tmp_path)
    assert grub.reads_dropins(root)[0] is None
    trees.write(root, '/etc/os-release', 'ID=ubuntu\nID_LIKE=debian\n')
    assert grub.reads_dropins(root)[0] is True
    trees.write(root, '/usr/sbin/grub2-mkconfig', '#!/bin/sh\n. ${sysconfdir}/default/grub\n', mode=0o755)
    assert grub.reads_dropins(root) == (False, '%s/usr/sbin/grub2-mkconfig does not source /etc/default/grub.d' % root)


def test_unknown_dropin_reader_is_refused_naming_the_dropins(tmp_path):
    root = str(tmp_path)
    trees.write(root, '/etc/default/grub', 'GRUB_CMDLINE_LINUX=""\n')
    trees.write(root, '/etc/default/grub.d/50-x.cfg', 'GRUB_TIMEOUT=1\n')
    with pytest.raises(cmdline.CmdlineError) as exc:
        plan(root, 'grub', args('iommu=pt'), 'present')
    assert 'cannot tell whether grub-mkconfig reads %s/etc/default/grub.d/50-x.cfg' % root in str(exc.value)
    assert 'no grub-mkconfig or grub2-mkconfig below root and /etc/os-release ID=None' in str(exc.value)


def test_a_failed_check_rolls_back_every_file_written(tmp_path, monkeypatch):
    root = trees.rhel_bls(str(tmp_path))
    start = {p: trees.read(root, p) for p in ('/etc/kernel/cmdline', '/etc/default/grub')}
    entries = sorted(os.listdir(os.path.join(root, 'boot/loader/entries')))
    before = [trees.read(root, '/boot/loader/entries/' + e) for e in entries]
    wanted = args('iommu=pt')
    options = dict(grub_file='/etc/default/grub', grub_variable='GRUB_CMDLINE_LINUX', update_command=None)
    planned = boot.plan(root, 'bls', wanted, 'present', options)
    real_validate = boot.validate

    def failing(config, text):
        if config.path == '/etc/default/grub':
            raise cmdline.CmdlineError('validation of the new /etc/default/grub failed: injected')
        real_validate(config, text)
    monkeypatch.setattr(boot, 'validate', failing)
    runner = boot.Runner(run=lambda argv: (0, '', ''), find=lambda name: None)
    with pytest.raises(cmdline.CmdlineError, match='injected; the files already written were restored'):
        boot.apply(planned, lambda: boot.plan(root, 'bls', wanted, 'present', options), wanted, 'present', runner)
    assert [trees.read(root, '/boot/loader/entries/' + e) for e in entries] == before
    assert {p: trees.read(root, p) for p in start} == start
