# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""GRUB without BLS (Debian, Ubuntu, openSUSE, Arch, Proxmox VE on GRUB): ``GRUB_CMDLINE_LINUX`` in the
defaults chain that grub-mkconfig sources, then grub-mkconfig (or its wrapper) regenerates grub.cfg.

Debian and Ubuntu patch grub-mkconfig to source ``/etc/default/grub.d/*.cfg`` after
``/etc/default/grub``; upstream GRUB (Fedora, RHEL, openSUSE, Arch) reads ``/etc/default/grub`` only.
Which one this system has is read from its grub-mkconfig script.
"""

from __future__ import annotations

import os

from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import config_files as files
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot import detect
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot.cmdline import CmdlineError, satisfied

NAME = 'grub'
GRUB_MAIN = detect.GRUB_MAIN
GRUB_DROPIN_DIR = '/etc/default/grub.d'
MKCONFIG = ('grub-mkconfig', 'grub2-mkconfig')
# What regenerates grub.cfg, first installed wins: (program, arguments)
REGENERATE = (
    ('update-grub', []),  # Debian, Ubuntu: grub-mkconfig -o /boot/grub/grub.cfg
    ('grub2-mkconfig', ['-o', '/boot/grub2/grub.cfg']),  # Fedora, RHEL, openSUSE
    ('grub-mkconfig', ['-o', '/boot/grub/grub.cfg']),  # upstream, Arch
)


def reads_dropins(root):
    """(True/False/None, why): whether grub-mkconfig sources /etc/default/grub.d, None when unknown."""
    for name in MKCONFIG:
        program = detect.find_program(root, name)
        if program is not None:
            text = files.read_followed(root, program) or ''
            found = GRUB_DROPIN_DIR.split('/etc', 1)[1] in text  # "/default/grub.d", after ${sysconfdir}
            return found, '%s %s %s' % (files.shown(root, program), 'sources' if found else 'does not source',
                                        GRUB_DROPIN_DIR)
    release = detect.os_release(root)
    if _debian_family(release):
        return True, 'no grub-mkconfig below root; %s ID=%s: Debian\'s grub-mkconfig sources %s' % (
            '/etc/os-release', release.get('ID'), GRUB_DROPIN_DIR)
    return None, 'no grub-mkconfig or grub2-mkconfig below root and /etc/os-release ID=%s' % release.get('ID')


def _debian_family(release):
    family = ('%s %s' % (release.get('ID', ''), release.get('ID_LIKE', ''))).split()
    return 'debian' in family or 'ubuntu' in family


def grub_scope(root, grub_file, variable, required=True):
    """The GRUB defaults chain: main file, then ``grub.d/*.cfg`` in the order grub-mkconfig sources them."""
    grub_file = '/' + grub_file.lstrip('/')
    directory, base = os.path.split(grub_file)
    # grub-mkconfig sources "grub.d/*.cfg", a glob that does not match names starting with a dot
    if grub_file != GRUB_MAIN and not (directory == GRUB_DROPIN_DIR and base.endswith('.cfg') and
                                       not base.startswith('.')):
        raise CmdlineError(
            'grub_file: %r is neither %s nor a %s/*.cfg drop-in (a name not starting with "."), so grub-mkconfig '
            'would not read it' % (grub_file, GRUB_MAIN, GRUB_DROPIN_DIR))
    main_text = files.read(root, GRUB_MAIN)
    if main_text is None and required:
        raise CmdlineError('%s not found' % files.shown(root, GRUB_MAIN))
    dropins = files.listing(root, GRUB_DROPIN_DIR, '*.cfg')
    warnings = []
    if dropins or grub_file != GRUB_MAIN:
        sourced, why = reads_dropins(root)
        if sourced is None or (not sourced and grub_file != GRUB_MAIN):
            raise CmdlineError(
                'grub_file: %s is a drop-in, but %s; write to %s instead (grub_file: %s)'
                % (files.shown(root, grub_file), why, GRUB_MAIN, GRUB_MAIN) if grub_file != GRUB_MAIN else
                'cannot tell whether grub-mkconfig reads %s (%s): %s'
                % (', '.join(files.shown(root, path) for path in dropins), why,
                   'set grub_file to a drop-in only where it is read'))
        if not sourced:
            warnings.append('%s: ignored at boot, %s' % (', '.join(dropins), why))
            dropins = []
    paths = [GRUB_MAIN] + sorted(set(dropins) | ({grub_file} - {GRUB_MAIN}))
    chain = []
    for path in paths:
        text = main_text if path == GRUB_MAIN else files.read(root, path)
        chain.append(files.GrubDefaultsFile(path, text, dropin=path != GRUB_MAIN, display=files.shown(root, path)))
    target_file = [f for f in chain if f.path == grub_file][0]
    target = target_file.ensure(variable)

    # Liveness: a plain assignment resets the variable, "$VAR ..." extends it.
    order = {name: [] for name in files.GRUB_VARIABLES}
    for grub in chain:
        for name in files.GRUB_VARIABLES:
            assignment = grub.assignments.get(name)
            if assignment is None:
                continue
            if not assignment.append_prefix:
                for earlier in order[name]:
                    earlier.segment.live = False
            order[name].append(assignment)
    if not target.live:
        overriding = [a for a in order[variable] if a.segment.live and not a.append_prefix][0]
        owner = [f for f in chain if overriding in f.assignments.values()][0]
        raise CmdlineError(
            '%s line %d sets %s without including $%s, so it overrides the value in %s; '
            'edit that file instead (grub_file=%s) or make it append ("$%s ...")'
            % (files.shown(root, owner.path), overriding.number + 1, variable, variable, grub_file, owner.path,
               variable))
    segments = [a.segment for name in files.GRUB_VARIABLES for a in order[name]]
    used = [f for f in chain if f.exists or f is target_file]
    return files.Scope('grub:' + ','.join(f.path for f in used), used, segments, target, warnings)


LINUX_COMMANDS = ('linux', 'linuxefi', 'linux16')  # grub.cfg commands that load a kernel with its arguments


def linux_lines(root, path):
    """The kernel-loading lines of a generated grub.cfg, in order, as word lists (command, image, arguments)."""
    return [words for words in (line.split() for line in (files.read(root, path) or '').splitlines())
            if len(words) >= 2 and words[0] in LINUX_COMMANDS]


def pending(host, args, state):
    """Whether grub.cfg still lacks what the defaults carry: its first kernel line (the default entry) does
    not reflect ``args``, so the regeneration of an earlier run is still to be done."""
    for path in host.grub_configs:
        lines = linux_lines(host.root, path)
        if lines:
            return not satisfied(lines[0][2:], args, state)
    return False  # no generated grub.cfg below root (an image): nothing tells


def scopes(host, options):
    return [grub_scope(host.root, options['grub_file'], options['grub_variable'])]


def regenerate(host, options):
    """The command that turns the defaults into grub.cfg on this system."""
    if options.get('update_command'):
        return [list(options['update_command'])]
    if host.proxmox_uuids:
        return [['proxmox-boot-tool', 'refresh']]  # runs update-grub and copies to every synced ESP
    for program, arguments in REGENERATE:
        path = detect.find_program(host.root, program)
        if path is not None:
            return [[path if host.live else program] + arguments]
    if host.live:
        return []  # a live host without any of them: planning refuses (nothing would regenerate grub.cfg)
    # An image or chroot without GRUB's tools inside it: still name what its system will have to run,
    # from its family and from where its grub.cfg lives (/boot/grub2 on Fedora, RHEL, openSUSE).
    if _debian_family(detect.os_release(host.root)):
        return [['update-grub']]
    if os.path.isdir(files.shown(host.root, '/boot/grub2')):
        return [['grub2-mkconfig', '-o', '/boot/grub2/grub.cfg']]
    return [['grub-mkconfig', '-o', '/boot/grub/grub.cfg']]
