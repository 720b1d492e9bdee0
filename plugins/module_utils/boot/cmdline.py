# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Kernel arguments: parsing, the parameters that repeat or hold lists, and reconcile."""

from __future__ import annotations

import re

# The kernel keeps at most COMMAND_LINE_SIZE bytes of its command line, the terminating NUL included
# (Documentation/admin-guide/kernel-parameters.rst; x86 and arm64: 2048, arch/x86/include/asm/setup.h);
# what does not fit is cut off at boot, so an argument past it would silently not take effect.
COMMAND_LINE_SIZE = 2048

# The parameter naming the root file system: state absent never removes it (normalized key).
ROOT_DEVICE = ('root',)

# Parameters whose occurrences add up instead of replacing each other, and parameters whose value is a
# comma-separated list. Present adds the missing values (a new occurrence, or new list items) and never
# replaces what is there; absent key=value removes those values only. Keys as normalize_key gives them.
#   key: (may repeat, value is a comma list, documented in)
MULTI_VALUE = {
    'rd.driver.pre': (True, True, 'dracut.cmdline(7)'),
    'rd.driver.post': (True, True, 'dracut.cmdline(7)'),
    'rd.driver.blacklist': (True, True, 'dracut.cmdline(7)'),
    'rd.lvm.lv': (True, False, 'dracut.cmdline(7)'),
    'rd.lvm.vg': (True, False, 'dracut.cmdline(7)'),
    'rd.luks.uuid': (True, False, 'dracut.cmdline(7)'),
    'rd.luks.name': (True, False, 'systemd-cryptsetup-generator(8)'),
    'rd.md.uuid': (True, False, 'dracut.cmdline(7)'),
    'ip': (True, False, 'dracut.cmdline(7)'),
    'nameserver': (True, False, 'dracut.cmdline(7)'),
    'modprobe.blacklist': (True, True, 'modprobe.d(5)'),
    'module_blacklist': (False, True, 'kernel-parameters.txt'),
    'console': (True, False, 'kernel-parameters.txt (serial-console.rst)'),
    'vfio_pci.ids': (False, True, 'vfio-pci module parameter "ids"'),
    'pci_stub.ids': (False, True, 'pci-stub module parameter "ids"'),
}

_KEY_RE = re.compile(r'^[A-Za-z0-9_][A-Za-z0-9_.\-]*$')
# Characters the shell (GRUB defaults are sourced) or GRUB's script parser treats specially outside
# quotes: grub.cfg's linux lines (Debian's 10_linux writes the arguments unquoted) and BLS options (read by
# GRUB's blscfg on RHEL and Fedora) go through that parser, so ``;`` would run a GRUB command at boot and
# ``| & < > { }`` make grub-mkconfig's syntax check fail. ``#`` starts a comment only at a word start,
# which the key's syntax already excludes.
_FORBIDDEN = {
    '"': 'a double quote',
    "'": 'a single quote',
    '`': 'a backquote',
    '$': 'a dollar sign',
    '\\': 'a backslash',
    ';': 'a semicolon',
    '|': 'a pipe',
    '&': 'an ampersand',
    '<': 'a less-than sign',
    '>': 'a greater-than sign',
    '{': 'a brace',
    '}': 'a brace',
}


class CmdlineError(Exception):
    """Bad input, or a boot configuration that cannot be edited safely. The message is meant for the user."""


def normalize_key(key):
    """The kernel treats ``-`` and ``_`` alike in parameter names (``vfio-pci.ids`` = ``vfio_pci.ids``)."""
    return key.replace('-', '_')


class Arg(object):
    """One kernel argument: ``key`` or ``key=value``."""

    __slots__ = ('text', 'key', 'norm', 'value', 'repeats', 'listed')

    def __init__(self, text, key, value):
        self.text = text
        self.key = key
        self.norm = normalize_key(key)
        self.value = value
        self.repeats, self.listed, _doc = MULTI_VALUE.get(self.norm, (False, False, None))
        if value is None:
            self.repeats = self.listed = False

    def __repr__(self):
        return 'Arg(%r)' % self.text

    @property
    def items(self):
        """The values this argument stands for: the list items of a comma list, else the value."""
        return [item for item in self.value.split(',') if item] if self.listed else [self.value]

    def matches_key(self, token):
        parsed = token_key_value(token)
        return parsed is not None and parsed[0] == self.norm

    def matches(self, token):
        parsed = token_key_value(token)
        return parsed is not None and parsed[0] == self.norm and parsed[1] == self.value

    def token_items(self, token):
        value = token_key_value(token)[1]
        if value is None:
            return []
        return [item for item in value.split(',') if item] if self.listed else [value]


def parse_arg(value, where='args'):
    """Validate one user-given argument; raise :class:`CmdlineError` naming it when malformed."""
    if not isinstance(value, str):
        raise CmdlineError('%s: %r is not a string' % (where, value))
    if value == '' or value.strip() == '':
        raise CmdlineError('%s: empty kernel argument %r' % (where, value))
    size = len(value.encode('utf-8', 'surrogatepass'))
    if size >= COMMAND_LINE_SIZE:
        raise CmdlineError('%s: kernel argument %r... (%d bytes) is longer than the kernel command line can be '
                           '(COMMAND_LINE_SIZE %d bytes, the final NUL included)'
                           % (where, value[:40], size, COMMAND_LINE_SIZE))
    if any(ch.isspace() for ch in value):
        raise CmdlineError(
            '%s: kernel argument %r contains whitespace; give one argument per list item '
            '(values with spaces are not supported)' % (where, value))
    for ch, label in _FORBIDDEN.items():
        if ch in value:
            raise CmdlineError('%s: kernel argument %r contains %s (%s), which the shell or GRUB\'s script parser '
                               'would interpret; not supported' % (where, value, label, ch))
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
        if state == 'absent' and arg.norm in ROOT_DEVICE:
            raise CmdlineError('args[%d]: %r with state absent would remove the root device from the command line; '
                               'a kernel booted or installed without it does not find its root file system'
                               % (index, value))
        previous = seen.get(arg.norm)
        if previous is not None:
            if previous.value == arg.value:
                continue  # the same argument twice: harmless
            if state == 'present' and not (arg.repeats or arg.listed):
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
    the key (duplicates and contradicting values); append when the key is absent. Parameters of the
    MULTI_VALUE table only gain the missing values (see _reconcile_multi).
    absent ``key``: remove every occurrence of the key, with any value; absent ``key=value``: remove
    the occurrences with exactly that value (the list items, for a comma list).
    """
    outcome = Outcome()
    live = [segment for segment in segments if segment.live]
    for arg in args:
        places = [(segment, index) for segment in live for index, token in enumerate(segment.tokens)
                  if arg.matches_key(token)]
        if arg.repeats or arg.listed:
            _reconcile_multi(arg, places, target, state, outcome)
            continue
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


def _reconcile_multi(arg, places, target, state, outcome):
    """A parameter that repeats (every occurrence counts) or holds a comma list: add or remove values,
    never replace the others. A list that does not repeat (``vfio-pci.ids``) is read by the kernel from
    its last occurrence, so that is the one that gains the missing items."""
    if state == 'absent':
        drop = []
        for segment, index in places:
            token = segment.tokens[index]
            items = arg.token_items(token)
            kept = [item for item in items if item not in arg.items]
            if len(kept) == len(items):
                continue
            if kept:
                new = '%s=%s' % (token.partition('=')[0], ','.join(kept))
                outcome.replaced.append({'before': token, 'after': new, 'location': segment.label})
                segment.tokens[index] = new
            else:
                outcome.removed.append({'arg': token, 'location': segment.label})
                drop.append((segment, index))
        _delete(drop)
        return
    counted = places if arg.repeats else places[-1:]
    have = [item for segment, index in counted for item in arg.token_items(segment.tokens[index])]
    missing = [item for item in arg.items if item not in have]
    if not missing:
        return
    if arg.listed and not arg.repeats and places:
        segment, index = places[-1]
        token = segment.tokens[index]
        new = '%s=%s' % (token.partition('=')[0], ','.join(arg.token_items(token) + missing))
        outcome.replaced.append({'before': token, 'after': new, 'location': segment.label})
        segment.tokens[index] = new
        return
    new = '%s=%s' % (arg.key, ','.join(missing))
    target.tokens.append(new)
    outcome.added.append({'arg': new, 'location': target.label})


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
    Parameters of the MULTI_VALUE table are satisfied when every wanted value is there.
    """
    for arg in args:
        occurrences = [token for token in tokens if arg.matches_key(token)]
        if arg.repeats or arg.listed:
            counted = occurrences if (arg.repeats or state == 'absent') else occurrences[-1:]
            have = [item for token in counted for item in arg.token_items(token)]
            if state == 'present' and any(item not in have for item in arg.items):
                return False
            if state == 'absent' and any(item in have for item in arg.items):
                return False
            continue
        values = [token_key_value(token)[1] for token in occurrences]
        if state == 'present':
            if (values != [arg.value]) if exact else (not values or values[-1] != arg.value):
                return False
        elif arg.value is None and values:
            return False
        elif arg.value is not None and arg.value in values:
            return False
    return True


def missing(tokens, args, state):
    """The arguments of ``args`` a command line (``/proc/cmdline``) does not reflect."""
    return [arg.text for arg in args if not satisfied(tokens, [arg], state)]
