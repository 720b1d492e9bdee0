# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The files that hold a kernel command line, parsed into segments and rendered back with the smallest
edit: GRUB defaults (shell assignments), BLS entries (``options`` lines), ``/etc/kernel/cmdline``,
kernelstub's JSON configuration; and the seed of a new ``/etc/kernel/cmdline``."""

from __future__ import annotations

import glob
import json
import os
import re

from ansible_collections.virtdev.libvirt.plugins.module_utils import _files
from ansible_collections.virtdev.libvirt.plugins.module_utils.boot.cmdline import (
    CmdlineError, Segment, split_cmdline, token_key_value)

GRUB_VARIABLES = ('GRUB_CMDLINE_LINUX', 'GRUB_CMDLINE_LINUX_DEFAULT')
KERNEL_CMDLINE = '/etc/kernel/cmdline'

_ASSIGN_RE = re.compile(
    r'^(?P<lead>\s*(?:export\s+)?)(?P<name>GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=(?P<rest>.*)$'
)


# A file below root that cannot be located or read raises _files.FileError naming it, as for every
# module's managed files; CmdlineError is for what the content or the request makes impossible.
shown = _files.location  # where a file below root is, for messages and results
read = _files.read_text  # its text, None when missing
resolved = _files.resolved  # its real path, every link on the way followed inside root


def read_followed(root, path):
    """The text of a file the module only reads (``/etc/os-release``, the grub-mkconfig script), None when
    missing: unlike a managed file it may be a symbolic link (``/etc/os-release`` is one to
    ``../usr/lib/os-release``), followed inside root."""
    full = resolved(root, path)
    try:
        with open(full, 'rb') as handle:
            return handle.read().decode('utf-8', 'replace')
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _files.FileError('cannot read %s: %s' % (full, exc))


def exists(root, path):
    return os.path.exists(shown(root, path))


def listing(root, directory, pattern):
    """Paths (as on the target) of the files matching ``pattern`` in ``directory`` below root, sorted."""
    real = shown(root, directory)
    return sorted('%s/%s' % (directory.rstrip('/'), os.path.basename(path))
                  for path in glob.glob(os.path.join(real, pattern)) if os.path.isfile(path))


class ConfigFile(object):
    """A file holding segments; ``render()`` gives its text with the segments' current tokens."""

    kind = 'file'

    def __init__(self, path, text):
        self.path = path
        self.text = text
        self.segments = []

    @property
    def exists(self):
        return self.text is not None

    def render(self):
        raise NotImplementedError

    def parse_check(self, text):
        """Tokens of each segment when ``text`` is parsed again (used to validate a written file)."""
        raise NotImplementedError


class CmdlineFile(ConfigFile):
    """``/etc/kernel/cmdline``: the whole file is one command line (newlines count as spaces)."""

    kind = 'kernel-cmdline'

    def __init__(self, path, text, seed=None, refusal=None):
        ConfigFile.__init__(self, path, text)
        tokens = split_cmdline(text) if text is not None else list(seed or [])
        self.segments = [Segment(tokens, path)]
        self.refusal = refusal  # why a missing file may not be created (no safe seed), raised only if needed

    def render(self):
        return ' '.join(self.segments[0].tokens) + '\n'

    def parse_check(self, text):
        return [split_cmdline(text)]


class BlsEntry(ConfigFile):
    """A Boot Loader Specification entry; its ``options`` lines together form the command line."""

    kind = 'bls-entry'

    _OPTIONS_RE = re.compile(r'^(?P<lead>\s*options)(?:(?P<sep>\s+)(?P<value>.*?))?\s*$')

    def __init__(self, path, text):
        ConfigFile.__init__(self, path, text)
        self.lines = text.splitlines(True)
        self.option_lines = []
        for number, line in enumerate(self.lines):
            match = self._OPTIONS_RE.match(line.rstrip('\r\n'))
            if match:
                self.option_lines.append(number)
                self.segments.append(Segment(split_cmdline(match.group('value') or ''),
                                             '%s:%d' % (path, number + 1)))
        if not self.segments:
            self.segments.append(Segment([], '%s (new options line)' % path))

    def render(self):
        lines = list(self.lines)
        if not self.option_lines:
            tokens = self.segments[0].tokens
            if not tokens:
                return self.text
            if lines and not lines[-1].endswith('\n'):
                lines[-1] += '\n'
            lines.append('options %s\n' % ' '.join(tokens))
            return ''.join(lines)
        for number, segment in zip(self.option_lines, self.segments):
            line = lines[number]
            ending = line[len(line.rstrip('\r\n')):]
            match = self._OPTIONS_RE.match(line.rstrip('\r\n'))
            sep = match.group('sep') or ' '
            lines[number] = match.group('lead') + (sep + ' '.join(segment.tokens) if segment.tokens else '') + ending
        return ''.join(lines)

    def parse_check(self, text):
        return [segment.tokens for segment in BlsEntry(self.path, text).segments]

    def tokens(self):
        return [token for segment in self.segments for token in segment.original]


class _Assignment(object):
    def __init__(self, number, lead, name, append_prefix, tokens, tail):
        self.number = number
        self.lead = lead
        self.name = name
        self.append_prefix = append_prefix  # '$NAME ' / '${NAME} ' when the value extends the variable
        self.tail = tail
        self.segment = None
        self.initial_tokens = tokens


class GrubDefaultsFile(ConfigFile):
    """``/etc/default/grub`` or a ``grub.d`` drop-in: shell assignments of the GRUB_CMDLINE_* variables."""

    kind = 'grub-defaults'

    def __init__(self, path, text, dropin, display=None):
        ConfigFile.__init__(self, path, text)
        self.dropin = dropin
        self.display = display or path
        self.lines = (text or '').splitlines(True)
        self.assignments = {}
        self.new_lines = []  # assignments to append: (_Assignment)
        for number, line in enumerate(self.lines):
            match = _ASSIGN_RE.match(line.rstrip('\r\n'))
            if not match:
                continue
            name = match.group('name')
            if name in self.assignments:
                raise CmdlineError(
                    '%s sets %s twice (lines %d and %d); merge them into one line so the edit is unambiguous'
                    % (self.display, name, self.assignments[name].number + 1, number + 1))
            self.assignments[name] = self._parse_assignment(number, match)
        for name in GRUB_VARIABLES:
            if name in self.assignments:
                assignment = self.assignments[name]
                assignment.segment = Segment(assignment.initial_tokens, '%s:%d %s' % (path, assignment.number + 1, name))
                self.segments.append(assignment.segment)

    def _parse_assignment(self, number, match):
        name = match.group('name')
        rest = match.group('rest')
        where = '%s line %d (%s)' % (self.display, number + 1, name)
        if rest.startswith("'"):
            raise CmdlineError(
                "%s uses single quotes; this module only edits double-quoted values: write it as %s=\"...\""
                % (where, name))
        if rest.startswith('"'):
            end, index = -1, 1
            while index < len(rest):
                if rest[index] == '\\':
                    index += 2
                    continue
                if rest[index] == '"':
                    end = index
                    break
                index += 1
            if end < 0:
                raise CmdlineError('%s: the double-quoted value does not end on the same line' % where)
            value, tail = rest[1:end], rest[end + 1:]
        else:
            parts = re.match(r'^(?P<value>[^\s#;]*)(?P<tail>.*)$', rest)
            value, tail = parts.group('value'), parts.group('tail')
            if any(ch in value for ch in '"\'`$\\'):
                raise CmdlineError('%s: cannot edit the unquoted value %r safely; double-quote it' % (where, value))
        if tail.strip() and not tail.strip().startswith('#'):
            raise CmdlineError('%s: unexpected text %r after the value' % (where, tail.strip()))
        append_prefix = ''
        prefix = re.match(r'^(\$\{%s\}|\$%s)(\s+|$)' % (name, name), value)
        if prefix:
            append_prefix = prefix.group(1) + ' '
            value = value[prefix.end():]
        for bad, label in (('\\', 'a backslash'), ('`', 'a backquote'), ('$', 'a shell expansion'),
                           ("'", 'a single quote')):
            if bad in value:
                raise CmdlineError('%s: the value contains %s; this module cannot edit it safely' % (where, label))
        return _Assignment(number, match.group('lead'), name, append_prefix, split_cmdline(value), tail)

    def ensure(self, name):
        """The segment of variable ``name`` in this file, creating a new assignment line if needed."""
        if name in self.assignments:
            return self.assignments[name].segment
        assignment = _Assignment(None, '', name, '$%s ' % name if self.dropin else '', [], '')
        assignment.segment = Segment([], '%s %s (new line)' % (self.path, name))
        self.assignments[name] = assignment
        self.new_lines.append(assignment)
        self.segments.append(assignment.segment)
        return assignment.segment

    @staticmethod
    def _value(assignment):
        return '"%s%s"' % (assignment.append_prefix, ' '.join(assignment.segment.tokens))

    def render(self):
        lines = list(self.lines)
        for assignment in self.assignments.values():
            if assignment.number is None or not assignment.segment.changed:
                continue
            line = lines[assignment.number]
            ending = line[len(line.rstrip('\r\n')):]
            lines[assignment.number] = '%s%s=%s%s%s' % (
                assignment.lead, assignment.name, self._value(assignment), assignment.tail, ending)
        added = [a for a in self.new_lines if a.segment.tokens]
        if added:
            if not lines and self.dropin:
                lines.append('# Kernel arguments managed by virtdev.libvirt.kernel_cmdline\n')
            if lines and not lines[-1].endswith('\n'):
                lines[-1] += '\n'
            for assignment in added:
                lines.append('%s=%s\n' % (assignment.name, self._value(assignment)))
        if not lines and self.text is None:
            return None
        return ''.join(lines)

    def parse_check(self, text):
        parsed = GrubDefaultsFile(self.path, text, self.dropin, self.display)
        return [parsed.assignments[name].segment.tokens if name in parsed.assignments else []
                for name in GRUB_VARIABLES]

    def expected_check(self):
        return [self.assignments[name].segment.tokens if name in self.assignments else []
                for name in GRUB_VARIABLES]


class KernelstubConfig(ConfigFile):
    """Pop!_OS ``/etc/kernelstub/configuration`` (JSON): kernelstub writes every boot entry's options as
    ``root=UUID=<root> ro`` followed by ``user.kernel_options``, at each kernel update."""

    kind = 'kernelstub'

    def __init__(self, path, text, display=None):
        ConfigFile.__init__(self, path, text)
        where = display or path
        if text is None:
            raise CmdlineError('%s does not exist: kernelstub is not set up here' % where)
        try:
            self.data = json.loads(text)
            options = self.data['user']['kernel_options']
        except (ValueError, KeyError, TypeError) as exc:
            raise CmdlineError('%s: not a kernelstub configuration with user.kernel_options (%s)' % (where, exc))
        if not isinstance(options, list) or not all(isinstance(option, str) for option in options):
            raise CmdlineError('%s: user.kernel_options is not a list of strings' % where)
        self.segments = [Segment(options, '%s user.kernel_options' % path)]

    def render(self):
        data = json.loads(self.text)
        data['user']['kernel_options'] = list(self.segments[0].tokens)
        return json.dumps(data, indent=2) + '\n'

    def parse_check(self, text):
        return [KernelstubConfig(self.path, text).segments[0].tokens]


def bls_entries(root, directory, pattern='*.conf'):
    """The entries of a loader/entries directory, newest (highest sorting name) first."""
    return [BlsEntry(path, read(root, path)) for path in reversed(listing(root, directory, pattern))]


def entry_key(text, key):
    """The value of a ``key value`` line of a BLS entry (``linux``, ``version``), or None."""
    for line in (text or '').splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] == key:
            return parts[1].strip()
    return None


def options(text):
    """The command line of a BLS entry: its ``options`` lines together, in order."""
    return [token for segment in BlsEntry('', text).segments for token in segment.tokens]


_NOT_CARRIED = ('BOOT_IMAGE', 'initrd')  # set per boot by the loader, not part of what is configured


def seed_kernel_cmdline(root, sources):
    """The content of a new ``/etc/kernel/cmdline``: the first of ``sources`` ((label, tokens or None))
    that exists, without per-boot tokens; it must name the root device, or the next kernel installed
    from it would not boot (CmdlineError naming what was looked at)."""
    looked = []
    for label, tokens in sources:
        if tokens is None:
            looked.append(label)
            continue
        tokens = [token for token in tokens if token_key_value(token) is not None
                  and token_key_value(token)[0] not in _NOT_CARRIED]
        if not any(token_key_value(token)[0] == 'root' for token in tokens):
            raise CmdlineError(
                'refusing to create %s from %s: it has no root= (%s), so kernels installed from it would not '
                'find their root file system; write %s with the full command line first'
                % (shown(root, KERNEL_CMDLINE), label, ' '.join(tokens) or 'empty', KERNEL_CMDLINE))
        return tokens, label
    raise CmdlineError('refusing to create %s: no full command line to start from (tried %s: none exists); write '
                       'it with the full command line first' % (shown(root, KERNEL_CMDLINE), ', '.join(looked)))


class Scope(object):
    """One command line as a boot path sees it: live segments in order, and where appends go."""

    def __init__(self, name, files, segments, target, warnings=None):
        self.name = name
        self.files = files
        self.segments = segments
        self.target = target
        self.warnings = warnings or []
        self.outcome = None

    def tokens(self, original=False):
        result = []
        for segment in self.segments:
            if segment.live:
                result.extend(segment.original if original else segment.tokens)
        return result


def file_scope(config):
    return Scope(config.path, [config], config.segments, config.segments[-1])


def kernel_cmdline_scope(root, sources):
    """``/etc/kernel/cmdline`` as kernel-install (and proxmox-boot-tool) read it; when missing, seeded
    from ``sources`` (see seed_kernel_cmdline) so that creating it never drops the root device."""
    text = read(root, KERNEL_CMDLINE)
    if text is not None:
        return file_scope(CmdlineFile(KERNEL_CMDLINE, text))
    try:
        seed, _label = seed_kernel_cmdline(root, sources)
    except CmdlineError as exc:
        return file_scope(CmdlineFile(KERNEL_CMDLINE, None, refusal=str(exc)))
    return file_scope(CmdlineFile(KERNEL_CMDLINE, None, seed=seed))


def entry_sources(root, entries):
    """Seed candidates from loader entries, newest first (one that is missing when there are none, so a
    refusal names it)."""
    return [('%s options' % shown(root, entry.path), entry.tokens()) for entry in entries] or \
        [('a boot entry\'s options', None)]


def kernel_install_sources(root, proc_cmdline, entries):
    """Where a new /etc/kernel/cmdline starts from (BLS, systemd-boot): kernel-install's own fallbacks
    (``/usr/lib/kernel/cmdline``, then ``/proc/cmdline``), then the entries."""
    usr = read(root, '/usr/lib/kernel/cmdline')
    return ([('/usr/lib/kernel/cmdline', None if usr is None else split_cmdline(usr)),
             ('/proc/cmdline', proc_cmdline)] + entry_sources(root, entries))
