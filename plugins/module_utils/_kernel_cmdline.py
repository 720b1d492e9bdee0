# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Pure core of the kernel_cmdline module (no Ansible, no libvirt).

It reads the places where a kernel command line is configured, under a ``root``:

* ``grub``: ``/etc/default/grub`` and the ``/etc/default/grub.d/*.cfg`` drop-ins sourced after it
  (``GRUB_CMDLINE_LINUX`` and ``GRUB_CMDLINE_LINUX_DEFAULT``), followed by a grub config update;
* ``bls``: Boot Loader Specification entries ``/boot/loader/entries/*.conf`` (``options`` lines) as
  GRUB with blscfg reads them (RHEL, Fedora), plus ``/etc/kernel/cmdline`` and ``GRUB_CMDLINE_LINUX``
  when they exist, since kernel-install and grub2-mkconfig regenerate entries from them;
* ``systemd-boot``: ``/etc/kernel/cmdline`` (kernel-install) and the entries on the ESP.

and plans the smallest edit that makes the requested arguments present or absent, as new file
texts.  Writing is left to the caller.  Nothing here raises anything but :class:`CmdlineError`
for bad input or files it cannot edit safely.
"""

from __future__ import annotations

import glob
import os
import re

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import root as _host_root

BOOTLOADERS = ('grub', 'bls', 'systemd-boot')
GRUB_VARIABLES = ('GRUB_CMDLINE_LINUX', 'GRUB_CMDLINE_LINUX_DEFAULT')

GRUB_MAIN = '/etc/default/grub'
GRUB_DROPIN_DIR = '/etc/default/grub.d'
BLS_DIR = '/boot/loader/entries'
KERNEL_CMDLINE = '/etc/kernel/cmdline'
ESP_CANDIDATES = ('/boot/efi', '/efi', '/boot')

_KEY_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.\-]*$')
_FORBIDDEN = {
    '"': 'a double quote',
    "'": 'a single quote',
    '`': 'a backquote',
    '$': 'a dollar sign',
    '\\': 'a backslash',
}
_ASSIGN_RE = re.compile(
    r'^(?P<lead>\s*(?:export\s+)?)(?P<name>GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=(?P<rest>.*)$'
)


# The kernel keeps at most COMMAND_LINE_SIZE bytes of its command line, the terminating NUL included
# (Documentation/admin-guide/kernel-parameters.rst; x86 and arm64: 2048, arch/x86/include/asm/setup.h);
# what does not fit is cut off at boot, so an argument past it would silently not take effect.
COMMAND_LINE_SIZE = 2048


class CmdlineError(Exception):
    """Bad input, or a file that cannot be edited safely. The message is meant for the user."""


# --------------------------------------------------------------------------- arguments


class Arg(object):
    """One kernel argument: ``key`` or ``key=value``."""

    __slots__ = ('text', 'key', 'norm', 'value')

    def __init__(self, text, key, value):
        self.text = text
        self.key = key
        self.norm = normalize_key(key)
        self.value = value

    def __repr__(self):
        return 'Arg(%r)' % self.text

    def matches_key(self, token):
        parsed = token_key_value(token)
        return parsed is not None and parsed[0] == self.norm

    def matches(self, token):
        parsed = token_key_value(token)
        return parsed is not None and parsed[0] == self.norm and parsed[1] == self.value


def normalize_key(key):
    """The kernel treats ``-`` and ``_`` alike in parameter names (``vfio-pci.ids`` = ``vfio_pci.ids``)."""
    return key.replace('-', '_')


def parse_arg(value, where='args'):
    """Validate one user-given argument; raise :class:`CmdlineError` naming it when malformed."""
    if not isinstance(value, str):
        raise CmdlineError('%s: %r is not a string' % (where, value))
    if value == '' or value.strip() == '':
        raise CmdlineError('%s: empty kernel argument %r' % (where, value))
    if len(value.encode('utf-8', 'surrogatepass')) >= COMMAND_LINE_SIZE:
        raise CmdlineError('%s: kernel argument %r... (%d bytes) is longer than the kernel command line can be '
                           '(COMMAND_LINE_SIZE %d bytes, the final NUL included)'
                           % (where, value[:40], len(value.encode('utf-8', 'surrogatepass')), COMMAND_LINE_SIZE))
    if any(ch.isspace() for ch in value):
        raise CmdlineError(
            '%s: kernel argument %r contains whitespace; give one argument per list item '
            '(values with spaces are not supported)' % (where, value))
    for ch, label in _FORBIDDEN.items():
        if ch in value:
            raise CmdlineError('%s: kernel argument %r contains %s, which is not supported' % (where, value, label))
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise CmdlineError('%s: kernel argument %r contains a control character' % (where, value))
    key, sep, val = value.partition('=')
    if key == '':
        raise CmdlineError('%s: kernel argument %r has no key before "="' % (where, value))
    if not _KEY_RE.match(key):
        raise CmdlineError(
            '%s: kernel argument %r has an invalid key %r (letters, digits, "_", "-" and "." only)'
            % (where, value, key))
    return Arg(value, key, val if sep else None)


def parse_args(values, state='present'):
    """Validate the ``args`` option: a list of distinct, non-contradicting arguments."""
    if not values:
        raise CmdlineError('args: give at least one kernel argument')
    result = []
    seen = {}
    for index, value in enumerate(values):
        arg = parse_arg(value, 'args[%d]' % index)
        previous = seen.get(arg.norm)
        if previous is not None:
            if previous.value == arg.value:
                continue  # the same argument twice: harmless
            if state == 'present':
                raise CmdlineError(
                    'args: %r and %r set the same parameter to different values' % (previous.text, arg.text))
        seen.setdefault(arg.norm, arg)
        result.append(arg)
    total = len(' '.join(arg.text for arg in result).encode('utf-8', 'surrogatepass'))
    if state == 'present' and total >= COMMAND_LINE_SIZE:
        raise CmdlineError('args: together %d bytes, more than the kernel command line can hold (COMMAND_LINE_SIZE '
                           '%d bytes, the final NUL included)' % (total, COMMAND_LINE_SIZE))
    return result


def split_cmdline(text):
    """Split a kernel command line into tokens the way the kernel does (double quotes group)."""
    tokens = []
    current = []
    in_quote = False
    started = False
    for ch in text:
        if ch == '"':
            in_quote = not in_quote
            current.append(ch)
            started = True
        elif ch.isspace() and not in_quote:
            if started:
                tokens.append(''.join(current))
                current = []
                started = False
        else:
            current.append(ch)
            started = True
    if started:
        tokens.append(''.join(current))
    return tokens


def token_key_value(token):
    """(normalized key, value or None) of a command line token, or None for opaque tokens (``$var``)."""
    if token.startswith('$') or token.startswith('"$'):
        return None
    key, sep, value = token.partition('=')
    key = key.lstrip('"')
    if not sep:
        key = key.rstrip('"')
        return normalize_key(key), None
    if value.startswith('"'):
        value = value[1:]
    if value.endswith('"'):
        value = value[:-1]
    return normalize_key(key), value


# --------------------------------------------------------------------------- reconcile


class Segment(object):
    """A run of tokens stored in one place of one file (a GRUB variable, an options line...)."""

    def __init__(self, tokens, label, live=True):
        self.tokens = list(tokens)
        self.original = list(tokens)
        self.label = label
        self.live = live

    @property
    def changed(self):
        return self.tokens != self.original


class Outcome(object):
    def __init__(self):
        self.added = []
        self.removed = []
        self.replaced = []
        self.duplicates = []


def reconcile(segments, target, args, state):
    """Edit ``segments`` (live ones, in effective order) in place; appends go to ``target``.

    present ``key=value``: keep the first exact occurrence, or turn the first occurrence of the key
    (another value, or the bare key) into the wanted argument in place; drop every later occurrence of
    the key (duplicates and contradicting values); append when the key is absent.
    absent ``key``: remove every occurrence of the key, with any value; absent ``key=value``: remove
    the occurrences with exactly that value.
    """
    outcome = Outcome()
    live = [segment for segment in segments if segment.live]
    for arg in args:
        places = [(segment, index) for segment in live for index, token in enumerate(segment.tokens)
                  if arg.matches_key(token)]
        if state == 'absent':
            drop = [(segment, index) for segment, index in places
                    if arg.value is None or arg.matches(segment.tokens[index])]
            for segment, index in drop:
                outcome.removed.append({'arg': segment.tokens[index], 'location': segment.label})
            _delete(drop)
            continue
        exact = [place for place in places if arg.matches(place[0].tokens[place[1]])]
        if exact:
            keep = exact[0]
        elif places:
            keep = places[0]
            segment, index = keep
            outcome.replaced.append({'before': segment.tokens[index], 'after': arg.text, 'location': segment.label})
            segment.tokens[index] = arg.text
        else:
            target.tokens.append(arg.text)
            outcome.added.append({'arg': arg.text, 'location': target.label})
            continue
        drop = [place for place in places if place != keep]
        for segment, index in drop:
            token = segment.tokens[index]
            if arg.matches(token):
                outcome.duplicates.append({'arg': token, 'location': segment.label})
            else:
                outcome.replaced.append({'before': token, 'after': arg.text, 'location': segment.label})
        _delete(drop)
    return outcome


def _delete(places):
    by_segment = {}
    for segment, index in places:
        by_segment.setdefault(id(segment), (segment, set()))[1].add(index)
    for segment, indexes in by_segment.values():
        segment.tokens = [token for index, token in enumerate(segment.tokens) if index not in indexes]


def satisfied(tokens, args, state, exact=False):
    """Whether a flat token list already reflects ``args``.

    With ``exact`` a present argument must occur exactly once with no other value (how a file should
    look after an edit); without it the last occurrence wins, as the kernel parses ``/proc/cmdline``.
    """
    for arg in args:
        values = [token_key_value(token)[1] for token in tokens if arg.matches_key(token)]
        if state == 'present':
            if (values != [arg.value]) if exact else (not values or values[-1] != arg.value):
                return False
        elif arg.value is None and values:
            return False
        elif arg.value is not None and arg.value in values:
            return False
    return True


def reboot_required(proc_tokens, args, state):
    """True when the running kernel's command line does not reflect ``args`` yet."""
    return not satisfied(proc_tokens, args, state)


# --------------------------------------------------------------------------- files


def under(root, path):
    """``path`` (absolute, as on the target system) inside ``root``: every link on the way resolved
    inside it (``_host_root.real_path``); CmdlineError naming the path when it would leave root."""
    try:
        return _host_root.real_path(root, path)
    except _host_root.OutsideRoot as exc:
        raise CmdlineError(str(exc))


def _read(root, path):
    real = under(root, path)
    if not os.path.exists(real):
        return None
    if not os.path.isfile(real):
        raise CmdlineError('%s is not a regular file' % real)
    with open(real, 'rb') as handle:
        data = handle.read()
    try:
        return data.decode('utf-8')
    except UnicodeDecodeError:
        raise CmdlineError('%s is not valid UTF-8 text' % real)


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

    def __init__(self, path, text, seed=None):
        ConfigFile.__init__(self, path, text)
        tokens = split_cmdline(text) if text is not None else list(seed or [])
        self.segments = [Segment(tokens, path)]

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


# --------------------------------------------------------------------------- scopes


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


def grub_scope(root, grub_file, variable, required=True):
    """The GRUB defaults chain: main file, then ``grub.d/*.cfg`` in the order grub-mkconfig sources them."""
    grub_file = '/' + grub_file.lstrip('/')
    directory, base = os.path.split(grub_file)
    if grub_file != GRUB_MAIN and not (directory == GRUB_DROPIN_DIR and base.endswith('.cfg')):
        raise CmdlineError(
            'grub_file: %r is neither %s nor a %s/*.cfg drop-in, so grub-mkconfig would not read it'
            % (grub_file, GRUB_MAIN, GRUB_DROPIN_DIR))
    main_text = _read(root, GRUB_MAIN)
    if main_text is None and required:
        raise CmdlineError('%s not found' % under(root, GRUB_MAIN))
    paths = [GRUB_MAIN] + sorted(
        '%s/%s' % (GRUB_DROPIN_DIR, os.path.basename(path))
        for path in glob.glob(os.path.join(under(root, GRUB_DROPIN_DIR), '*.cfg')))
    if grub_file not in paths:
        paths.append(grub_file)
        paths = [GRUB_MAIN] + sorted(paths[1:])
    files = []
    for path in paths:
        text = main_text if path == GRUB_MAIN else _read(root, path)
        files.append(GrubDefaultsFile(path, text, dropin=path != GRUB_MAIN, display=under(root, path)))
    target_file = [f for f in files if f.path == grub_file][0]
    target = target_file.ensure(variable)

    # Liveness: a plain assignment resets the variable, "$VAR ..." extends it.
    order = {name: [] for name in GRUB_VARIABLES}
    for grub in files:
        for name in GRUB_VARIABLES:
            assignment = grub.assignments.get(name)
            if assignment is None:
                continue
            if not assignment.append_prefix:
                for earlier in order[name]:
                    earlier.segment.live = False
            order[name].append(assignment)
    if not target.live:
        overriding = [a for a in order[variable] if a.segment.live and not a.append_prefix][0]
        owner = [f for f in files if overriding in f.assignments.values()][0]
        raise CmdlineError(
            '%s line %d sets %s without including $%s, so it overrides the value in %s; '
            'edit that file instead (grub_file=%s) or make it append ("$%s ...")'
            % (under(root, owner.path), overriding.number + 1, variable, variable, grub_file, owner.path, variable))
    segments = [a.segment for name in GRUB_VARIABLES for a in order[name]]
    return Scope('grub:' + ','.join(f.path for f in files if f.exists or f is target_file),
                 [f for f in files if f.exists or f is target_file], segments, target)


def file_scope(config):
    segments = config.segments
    return Scope(config.path, [config], segments, segments[-1])


def bls_entries(root, directory):
    paths = sorted(glob.glob(os.path.join(under(root, directory), '*.conf')), reverse=True)
    entries = []
    for real in paths:
        path = '%s/%s' % (directory.rstrip('/'), os.path.basename(real))
        entries.append(BlsEntry(path, _read(root, path)))
    return entries


def find_esp(root):
    for esp in ESP_CANDIDATES:
        if os.path.isfile(under(root, esp + '/loader/loader.conf')):
            return esp
    return None


def detect_bootloader(root):
    """Which layout configures the kernel command line under ``root``."""
    if find_esp(root):
        return 'systemd-boot'
    if glob.glob(os.path.join(under(root, BLS_DIR), '*.conf')):
        return 'bls'
    if os.path.isfile(under(root, GRUB_MAIN)):
        return 'grub'
    if os.path.isfile(under(root, KERNEL_CMDLINE)):
        return 'systemd-boot'
    raise CmdlineError(
        'could not detect the bootloader under %s: none of %s, %s/*.conf, an ESP loader/loader.conf '
        'or %s exists; set bootloader explicitly' % (root, GRUB_MAIN, BLS_DIR, KERNEL_CMDLINE))


def read_proc_cmdline(root):
    text = _read(root, '/proc/cmdline')
    return None if text is None else split_cmdline(text)


def kernel_install_seed(root):
    """What kernel-install uses when /etc/kernel/cmdline is missing."""
    text = _read(root, '/usr/lib/kernel/cmdline')
    if text is None:
        text = _read(root, '/proc/cmdline') or ''
    return [token for token in split_cmdline(text)
            if not token.startswith('BOOT_IMAGE=') and not token.startswith('initrd=')]


def build_scopes(root, bootloader, grub_file=GRUB_MAIN, grub_variable='GRUB_CMDLINE_LINUX'):
    """All the command lines the bootloader layout uses, first the primary one."""
    if bootloader == 'grub':
        return [grub_scope(root, grub_file, grub_variable)]
    scopes = []
    if bootloader == 'bls':
        entries = bls_entries(root, BLS_DIR)
        if not entries:
            raise CmdlineError('no boot loader entries found in %s' % under(root, BLS_DIR))
        scopes.extend(file_scope(entry) for entry in entries)
        if os.path.isfile(under(root, KERNEL_CMDLINE)):
            scopes.append(file_scope(CmdlineFile(KERNEL_CMDLINE, _read(root, KERNEL_CMDLINE))))
        if os.path.isfile(under(root, GRUB_MAIN)):
            scopes.append(grub_scope(root, grub_file, grub_variable))
    elif bootloader == 'systemd-boot':
        text = _read(root, KERNEL_CMDLINE)
        scopes.append(file_scope(CmdlineFile(KERNEL_CMDLINE, text,
                                             seed=None if text is not None else kernel_install_seed(root))))
        esp = find_esp(root)
        if esp is not None:
            scopes.extend(file_scope(entry) for entry in bls_entries(root, esp + '/loader/entries'))
            if glob.glob(os.path.join(under(root, esp + '/EFI/Linux'), '*.efi')):
                scopes[0].warnings.append(
                    'unified kernel images in %s/EFI/Linux embed their own command line; they change only '
                    'when rebuilt from %s' % (esp, KERNEL_CMDLINE))
    else:
        raise CmdlineError('bootloader: unknown value %r (one of %s)' % (bootloader, ', '.join(BOOTLOADERS)))
    return scopes


class Plan(object):
    """The result of planning: scopes with their edited segments, and the file texts to write."""

    def __init__(self, bootloader, scopes, changes, warnings):
        self.bootloader = bootloader
        self.scopes = scopes
        self.changes = changes  # list of (ConfigFile, before_text or None, after_text)
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


def plan(root, bootloader, args, state, grub_file=GRUB_MAIN, grub_variable='GRUB_CMDLINE_LINUX'):
    """Plan the edit of every place ``bootloader`` reads under ``root``; nothing is written."""
    if state not in ('present', 'absent'):
        raise CmdlineError('state: unknown value %r' % state)
    if grub_variable not in GRUB_VARIABLES:
        raise CmdlineError('grub_variable: unknown value %r (one of %s)' % (grub_variable, ', '.join(GRUB_VARIABLES)))
    if bootloader == 'auto':
        bootloader = detect_bootloader(root)
    scopes = build_scopes(root, bootloader, grub_file, grub_variable)
    warnings = []
    for scope in scopes:
        scope.outcome = reconcile(scope.segments, scope.target, args, state)
        warnings.extend(scope.warnings)
        if '$kernelopts' in scope.tokens():
            warnings.append('%s uses $kernelopts; the arguments stored in grubenv are not seen here '
                            '(grubby manages them)' % scope.name)
    changes = []
    seen = set()
    for scope in scopes:
        for config in scope.files:
            if id(config) in seen:
                continue
            seen.add(id(config))
            if not any(segment.changed for segment in config.segments):
                continue
            after = config.render()
            if after is not None and after != config.text:
                changes.append((config, config.text, after))
    return Plan(bootloader, scopes, changes, warnings)


def validate(config, text):
    """Re-parse ``text`` as written and check it holds exactly the planned tokens."""
    expected = config.expected_check() if isinstance(config, GrubDefaultsFile) else \
        [segment.tokens for segment in config.segments]
    try:
        found = config.parse_check(text)
    except CmdlineError as exc:
        raise CmdlineError('validation of the new %s failed: %s' % (config.path, exc))
    if isinstance(config, BlsEntry) and not config.option_lines:
        expected = [tokens for tokens in expected if tokens] or [[]]
    if found != expected:
        raise CmdlineError('validation of the new %s failed: expected %r, parsed %r' % (config.path, expected, found))
