# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Plan -> check -> apply -> roll back -> read back for the kernel command line, over the backends.

``plan`` decides the boot path, lets its backend name the command lines it reads, reconciles each and
returns the file changes (values, nothing written) and the regeneration commands. ``apply`` writes them
through the host runner's transactional writer (``_files.Transaction``: each temporary file parsed back,
GRUB fragments through ``sh -n``), runs grubby / the regeneration on a live host, rolls every file back
on a failure, and reads the result back. ``boot_mismatch`` tells, after a reboot, which entry the running
kernel came from when it lacks what the files carry.
"""

from __future__ import annotations

import os

from ansible_collections.virtdev.libvirt.plugins.module_utils import _files
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import (
    bls, config_files as files, detect, grub, kernelstub, proxmox_boot_tool, systemd_boot)
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot.cmdline import (
    COMMAND_LINE_SIZE, CmdlineError, missing, reconcile, satisfied)

BACKENDS = {backend.NAME: backend for backend in (grub, bls, systemd_boot, proxmox_boot_tool, kernelstub)}
BOOTLOADERS = tuple(BACKENDS)


class Plan(object):
    """The result of planning: scopes with their edited segments, the changes, what regenerates."""

    def __init__(self, host, bootloader, scopes, changes, regenerate, warnings):
        self.host = host
        self.bootloader = bootloader
        self.scopes = scopes
        self.changes = changes  # [(ConfigFile, _files.FileChange)]
        self.regenerate = regenerate  # commands (argv lists) that carry the change into the boot configuration
        self.warnings = warnings

    @property
    def changed(self):
        return bool(self.changes)

    def report(self):
        result = {'added': [], 'removed': [], 'replaced': [], 'duplicates': []}
        for scope in self.scopes:
            for name in result:
                result[name].extend(getattr(scope.outcome, name))
        return result

    def files(self):
        return [files.shown(self.host.root, change.path) for _config, change in self.changes]


def plan(root, bootloader, args, state, options, probe=None):
    """Plan the edit of every place the boot path reads under ``root``; nothing is written.

    ``options``: grub_file, grub_variable, update_command (None for the distribution's). ``probe``: a
    Runner for the live host's read-only tools (``proxmox-boot-tool status``), None for an image."""
    if state not in ('present', 'absent'):
        raise CmdlineError('state: unknown value %r' % state)
    if options['grub_variable'] not in files.GRUB_VARIABLES:
        raise CmdlineError('grub_variable: unknown value %r (one of %s)'
                           % (options['grub_variable'], ', '.join(files.GRUB_VARIABLES)))
    host = detect.Host(root, probe)
    if bootloader == 'auto':
        bootloader = detect.boot_path(host)
    if bootloader not in BACKENDS:
        raise CmdlineError('bootloader: unknown value %r (one of auto, %s)' % (bootloader, ', '.join(BOOTLOADERS)))
    detect.check_choice(host, bootloader)
    backend = BACKENDS[bootloader]
    scopes = backend.scopes(host, options)
    warnings = []
    for scope in scopes:
        scope.outcome = reconcile(scope.segments, scope.target, args, state)
        _check_size(host, scope)
        warnings.extend(scope.warnings)
        if '$kernelopts' in scope.tokens():
            warnings.append('%s uses $kernelopts; the arguments stored in grubenv are not seen here '
                            '(grubby manages them)' % scope.name)
    changes = []
    seen = set()
    for scope in scopes:
        for config in scope.files:
            if id(config) in seen or not any(segment.changed for segment in config.segments):
                continue
            seen.add(id(config))
            if getattr(config, 'refusal', None):
                raise CmdlineError(config.refusal)
            after = config.render()
            if after is not None and after != config.text:
                changes.append((config, _files.FileChange(config.path, config.text, after)))
    regenerate = backend.regenerate(host, options) if _regenerated(bootloader, changes) or (
        bootloader == 'grub' and grub.pending(host, args, state)) else []
    return Plan(host, bootloader, scopes, changes, regenerate, warnings)


def _check_size(host, scope):
    """Refuse a command line that grows past what the kernel keeps (the rest would be cut off at boot).

    The files do not hold all of it: the loader adds BOOT_IMAGE=/initrd=, grub.cfg adds root= and ro.
    What the running kernel got beyond the files' tokens stands for that part."""
    after, before = scope.tokens(), scope.tokens(original=True)
    if after == before or len(' '.join(after)) <= len(' '.join(before)):
        return
    added_by_loader = list(host.proc_cmdline or [])
    for token in before:
        if token in added_by_loader:
            added_by_loader.remove(token)
    size = len(' '.join(added_by_loader + after).encode('utf-8', 'surrogatepass')) + 1  # the final NUL
    if size > COMMAND_LINE_SIZE:
        raise CmdlineError(
            '%s: the command line would be %d bytes with the final NUL (its arguments and what the loader adds, as '
            '/proc/cmdline shows: %s), more than the kernel keeps (COMMAND_LINE_SIZE %d); the part past it would '
            'be cut off at boot' % (scope.name, size, ' '.join(added_by_loader) or 'nothing', COMMAND_LINE_SIZE))


def _regenerated(bootloader, changes):
    """Whether the changes need the regeneration: for grub only an edit of the GRUB defaults does."""
    if bootloader == 'grub':
        return any(isinstance(config, files.GrubDefaultsFile) for config, _change in changes)
    return bool(changes)


def validate(config, text):
    """Re-parse ``text`` as written and check it holds exactly the planned tokens."""
    expected = config.expected_check() if isinstance(config, files.GrubDefaultsFile) else \
        [segment.tokens for segment in config.segments]
    try:
        found = config.parse_check(text)
    except CmdlineError as exc:
        raise CmdlineError('validation of the new %s failed: %s' % (config.path, exc))
    if isinstance(config, files.BlsEntry) and not config.option_lines:
        expected = [tokens for tokens in expected if tokens] or [[]]
    if found != expected:
        raise CmdlineError('validation of the new %s failed: expected %r, parsed %r' % (config.path, expected, found))


class Runner(object):
    """What ``apply`` needs from the module: ``run(argv) -> (rc, out, err)``, ``find(name)`` (an installed
    program or None) and grubby."""

    def __init__(self, run, find, grubby=None):
        self.run = run
        self.find = find
        self.grubby = grubby  # grubby's path when installed and root is /


class Applied(object):
    """What was really done: files changed, commands run, what is left to regenerate, backups."""

    def __init__(self):
        self.files = []
        self.diffs = []
        self.commands = []
        self.backups = []
        self.final = None  # the plan read back after the change


def _checker(runner, config):
    sh = runner.find('sh') if isinstance(config, files.GrubDefaultsFile) else None

    def check(tmp):
        with open(tmp, 'rb') as handle:
            validate(config, handle.read().decode('utf-8'))
        if sh:
            rc, _out, err = runner.run([sh, '-n', tmp])
            if rc != 0:
                raise CmdlineError('validation of the new %s failed: sh -n: %s' % (config.path, err.strip()))
    return check


def _snapshot(root, the_plan):
    """Text of every file a tool (grubby) may change, to restore and to diff."""
    paths = [change.path for _config, change in the_plan.changes]  # in the plan's order, as check mode shows them
    paths += [config.path for scope in the_plan.scopes for config in scope.files] + [grub.GRUB_MAIN, files.KERNEL_CMDLINE]
    texts = {}
    for path in paths:
        if path not in texts:
            texts[path] = files.read(root, path)
    return texts


def apply(the_plan, replan, args, state, runner, update_bootloader=True, transaction=None):
    """Carry out ``the_plan`` (not in check mode); ``replan()`` plans again (the read-back).
    ``transaction``: the run's ``_files.Transaction`` (the host runner's, with its backup hook); None: a
    plain one.

    Returns Applied; raises RolledBack after rolling back every file when something fails before the
    files are all written, or Regenerate (files kept, said so) when the regeneration fails."""
    host = the_plan.host
    done = Applied()
    if transaction is None:
        transaction = _files.Transaction(host.root)
    grubby = runner.grubby if the_plan.bootloader == 'bls' else None
    try:
        if grubby:
            before = _snapshot(host.root, the_plan)
            needed = bls.grubby_args(the_plan, args, state)
            if needed:
                for path, text in before.items():
                    if text is not None and transaction.backup is not None and \
                            any(change.path == path for _c, change in the_plan.changes):
                        transaction.backups.append(transaction.backup(files.shown(host.root, path)))
                    transaction.remember(path, text)
                command = bls.grubby_command(grubby, host.root, needed, state)
                done.commands.append(command)
                rc, out, err = runner.run(command)
                if rc != 0:
                    raise CmdlineError('%s failed (rc=%d): %s' % (' '.join(command), rc, (err or out).strip()))
            for config, change in replan().changes:
                transaction.apply(change, check=_checker(runner, config))
            after = dict((path, files.read(host.root, path)) for path in before)
            changed = [path for path in before if after[path] != before[path]]
            done.files = [files.shown(host.root, path) for path in changed]
            done.diffs = [_files.FileChange(path, before[path], after[path]).diff(host.root) for path in changed]
        else:
            for config, change in the_plan.changes:
                transaction.apply(change, check=_checker(runner, config))
            done.files = the_plan.files()
            done.diffs = [change.diff(host.root) for _config, change in the_plan.changes]
        done.final = replan()
        if done.final.changed:
            raise CmdlineError('read back: %s still differ from the wanted state'
                               % ', '.join(done.final.files()))
    except (CmdlineError, _files.FileError, OSError) as exc:
        raise RolledBack(exc, transaction)
    done.backups = [path for path in transaction.backups if path]
    if update_bootloader and host.live:
        for command in the_plan.regenerate:
            done.commands.append(command)
            rc, out, err = runner.run(command)
            if rc != 0:
                raise Regenerate('%s failed (rc=%d) after the files were changed: %s'
                                 % (' '.join(command), rc, (err or out).strip()), done)
    return done


class RolledBack(CmdlineError):
    """A write or check failed and the files written before were put back; ``left_changed``: what could not
    be (the run's ``changed`` is true only then)."""

    def __init__(self, error, transaction):
        written = transaction.written()
        self.left_changed = transaction.rollback()  # 'could not restore FILE: why', one per file
        if self.left_changed:
            restored = [path for path in written if not any(path + ':' in problem for problem in self.left_changed)]
            outcome = 'restoring the files written before failed, so they are left changed: %s%s' % (
                '; '.join(self.left_changed), '; restored: %s' % ', '.join(restored) if restored else '')
        elif written:
            outcome = 'the files already written were restored (%s); nothing was changed' % ', '.join(written)
        else:
            outcome = 'nothing had been written; nothing was changed'
        CmdlineError.__init__(self, '%s; %s' % (error, outcome))


class Regenerate(CmdlineError):
    """The files are written but the regeneration failed: the result must say both."""

    def __init__(self, message, done):
        CmdlineError.__init__(self, message)
        self.done = done


def pending_regeneration(the_plan, update_bootloader):
    """The commands a live run executes (check mode: would execute), and those left to the user."""
    if update_bootloader and the_plan.host.live:
        return list(the_plan.regenerate), []
    return [], list(the_plan.regenerate)


# --------------------------------------------------------------------------- after the reboot


def boot_time(root):
    """The boot time (``btime`` of ``/proc/stat``, seconds since the epoch) or None."""
    for line in (files.read(root, '/proc/stat') or '').splitlines():
        if line.startswith('btime '):
            try:
                return int(line.split()[1])
            except (IndexError, ValueError):
                return None
    return None


def booted_entry(host):
    """(which boot entry the running kernel came from, in words; that entry's options when readable)."""
    if host.loader_entry:
        name = host.loader_entry if host.loader_entry.endswith('.conf') else host.loader_entry + '.conf'
        paths = ['%s/loader/entries/%s' % (directory, name) for directory in host.loader_dirs]
        path = next((path for path in paths if files.exists(host.root, path)), None)
        text = files.read(host.root, path) if path else None
        if text is None:
            return 'the systemd-boot entry %s (LoaderEntrySelected)' % host.loader_entry, None
        return 'the systemd-boot entry %s' % files.shown(host.root, path), files.options(text)
    image = [token.split('=', 1)[1] for token in host.proc_cmdline or [] if token.startswith('BOOT_IMAGE=')]
    if not image:
        return 'an entry the loader does not name (no LoaderEntrySelected EFI variable, no BOOT_IMAGE)', None
    kernel = os.path.basename(image[0].split(')')[-1])
    for path in host.bls_entries:
        text = files.read(host.root, path)
        if os.path.basename(files.entry_key(text, 'linux') or '') == kernel:
            return 'the entry %s (BOOT_IMAGE=%s)' % (files.shown(host.root, path), image[0]), files.options(text)
    for path in host.grub_configs:
        for words in grub.linux_lines(host.root, path):
            if os.path.basename(words[1]) == kernel:
                return 'the entry for %s in %s' % (image[0], files.shown(host.root, path)), words[2:]
    return 'the kernel image %s (BOOT_IMAGE in /proc/cmdline)' % image[0], None


def boot_mismatch(the_plan, args, state, options):
    """After a reboot that should have applied the files: why the running kernel lacks the arguments.

    None unless the files already carry the arguments, were all written before this boot, and the
    running kernel's command line still lacks some of them (another reboot would not help)."""
    host = the_plan.host
    if the_plan.changed or host.proc_cmdline is None:
        return None
    lacking = missing(host.proc_cmdline, args, state)
    booted = boot_time(host.root)
    if not lacking or booted is None:
        return None
    written = [os.path.getmtime(files.shown(host.root, config.path))
               for scope in the_plan.scopes for config in scope.files if config.exists]
    if not written or max(written) >= booted:
        return None  # written during this boot: the reboot is still to come
    entry, tokens = booted_entry(host)
    words = MISMATCH_WORDS[state]
    if tokens is not None and satisfied(tokens, args, state):
        holds, kernel, how = words['entry_ok']
        return ('the host booted from %s, which %s, but the running kernel %s: %s at the boot menu, or the loader '
                'does not read that entry\'s options (a unified kernel image)'
                % (entry, holds % ' '.join(lacking), kernel, how))
    carried = [scope.name for scope in the_plan.scopes if satisfied(scope.tokens(), args, state)]
    regenerate = BACKENDS[the_plan.bootloader].regenerate(host, options)
    return ('the host booted from %s, which %s, although %s %s before this boot: another reboot would boot the '
            'same way; check which entry the firmware and the loader start%s'
            % (entry, words['entry_wrong'] % ' '.join(lacking), ', '.join(carried) or 'the files', words['files'],
               ' (was %s run?)' % ' && '.join(' '.join(command) for command in regenerate) if regenerate else ''))


# The after-reboot failure in words, per state: (what the entry holds, what the kernel got, how), for an
# entry that is right; what a wrong entry holds; what the files held before this boot.
MISMATCH_WORDS = {
    'present': {'entry_ok': ('carries %s', 'did not get them', 'the command line was changed'),
                'entry_wrong': 'does not carry %s', 'files': 'carried them'},
    'absent': {'entry_ok': ('does not carry %s any more', 'still has them', 'they were typed'),
               'entry_wrong': 'still carries %s', 'files': 'no longer carried them'},
}


# What the next boot reads once the change is made, per boot path: the reboot contract.
CARRIED_BY = {
    'grub': 'the grub.cfg that {regenerate} generates from {files}',
    'bls': 'the BLS entries {entries}; kernels installed later take /etc/kernel/cmdline (kernel-install)',
    'systemd-boot': 'the loader entries {entries}; kernels installed later take /etc/kernel/cmdline (kernel-install)',
    # the next boot starts a unified kernel image: its embedded command line is the old one until rebuilt
    'systemd-boot uki': 'the unified kernel image {images}, which carries the old command line until {regenerate} '
                        'rebuilds it from /etc/kernel/cmdline',
    'proxmox-boot-tool': 'the entries that {regenerate} writes from /etc/kernel/cmdline on the ESPs {uuids}',
    'kernelstub': 'the loader entries {entries}, as {regenerate} rewrites them from user.kernel_options of '
                  '/etc/kernelstub/configuration (and at every kernel update)',
}


def next_boot(the_plan, options):
    """Which boot entries carry the command line at the next boot, in words."""
    host = the_plan.host
    entries = [config.path for scope in the_plan.scopes for config in scope.files if isinstance(config, files.BlsEntry)]
    regenerate = BACKENDS[the_plan.bootloader].regenerate(host, options)
    carried_by = the_plan.bootloader
    if carried_by == 'systemd-boot' and systemd_boot.boots_unified_image(host, entries):
        carried_by = 'systemd-boot uki'
    return CARRIED_BY[carried_by].format(
        regenerate=' && '.join(' '.join(command) for command in regenerate) or
        ('a rebuild' if carried_by == 'systemd-boot uki' else 'grub-mkconfig'),
        images=host.loader_entry or ', '.join(systemd_boot.unified_images(host)),
        files=', '.join(config.path for config in the_plan.scopes[0].files),
        entries=', '.join(entries) or '(none found)',
        uuids=', '.join(host.proxmox_uuids))
