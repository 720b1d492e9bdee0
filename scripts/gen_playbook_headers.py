# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Write the comment header of each job-template playbook from its argument spec, and copy the spec to
the Automation Platform patterns that import the playbook.

``playbooks/<name>.meta.yml`` (play argument spec, checked by the play's first task) is the one source of a
playbook's inputs: the header comment of ``playbooks/<name>.yml`` and ``extensions/patterns/*/playbooks/
<name>.meta.yml`` are generated from it. ``tests/unit/test_awx_patterns.py`` fails when either is stale:
run ``.venv/bin/python scripts/gen_playbook_headers.py`` after changing a spec.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import textwrap

import yaml

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLAYBOOKS = os.path.join(CHECKOUT, 'playbooks')
PATTERNS = os.path.join(CHECKOUT, 'extensions', 'patterns')
WIDTH = 110


def _value(value):
    return json.dumps(value) if not isinstance(value, str) else value


def _option_line(name, option, indent):
    facts = [option.get('type', 'str')]
    if option.get('elements'):
        facts[0] += ' of ' + option['elements']
    if option.get('required'):
        facts.append('required')
    elif 'default' in option:
        facts.append('default: ' + _value(option['default']))
    if option.get('choices'):
        facts.append('choices: ' + ', '.join(str(choice) for choice in option['choices']))
    text = '%s  %s (%s)' % (name, option.get('description', ''), '; '.join(facts))
    lines = textwrap.wrap(text, WIDTH - 2 - indent, subsequent_indent='    ')
    lines = ['# ' + ' ' * indent + line for line in lines]
    for sub_name, sub in (option.get('options') or {}).items():
        lines += _option_line(sub_name, sub, indent + 4)
    return lines


def header(name, spec):
    """The comment block that opens playbooks/<name>.yml."""
    play = spec['argument_specs'][name]
    lines = ['# ' + line for line in textwrap.wrap(spec['description'], WIDTH - 2)]
    lines += ['#'] + ['#   ' + line for line in play['examples'].splitlines()] + ['#']
    lines.append('# Inputs (extra vars, survey answers or inventory), checked against %s.meta.yml by the first'
                 % name)
    lines.append('# task of the play (this header is generated from it by scripts/gen_playbook_headers.py):')
    for option_name, option in play['options'].items():
        lines += _option_line(option_name, option, 2)
    return '\n'.join(lines) + '\n'


def with_header(text, new_header):
    """The playbook text with its leading comment block replaced."""
    lines = text.splitlines(keepends=True)
    start = 1 if lines and lines[0].startswith('---') else 0
    end = start
    while end < len(lines) and lines[end].startswith('#'):
        end += 1
    return ''.join(lines[:start]) + new_header + ''.join(lines[end:])


def wanted_files():
    """{path: text} of every generated file."""
    files = {}
    specs = {}
    for meta in sorted(glob.glob(os.path.join(PLAYBOOKS, '*.meta.yml'))):
        name = os.path.basename(meta)[:-len('.meta.yml')]
        with open(meta, encoding='utf-8') as handle:
            specs[name] = handle.read()
        playbook = os.path.join(PLAYBOOKS, name + '.yml')
        with open(playbook, encoding='utf-8') as handle:
            files[playbook] = with_header(handle.read(), header(name, yaml.safe_load(specs[name])))
    for thin in sorted(glob.glob(os.path.join(PATTERNS, '*', 'playbooks', '*.yml'))):
        if thin.endswith('.meta.yml'):
            continue
        name = os.path.basename(thin)[:-len('.yml')]
        if name in specs:
            files[thin[:-len('.yml')] + '.meta.yml'] = specs[name]
    return files


def main():
    stale = []
    for path, text in wanted_files().items():
        current = None
        if os.path.exists(path):
            with open(path, encoding='utf-8') as handle:
                current = handle.read()
        if current == text:
            continue
        stale.append(os.path.relpath(path, CHECKOUT))
        if '--check' not in sys.argv:
            with open(path, 'w', encoding='utf-8') as handle:
                handle.write(text)
    if stale and '--check' in sys.argv:
        sys.stderr.write('stale, run scripts/gen_playbook_headers.py: %s\n' % ', '.join(stale))
        return 1
    for path in stale:
        print('wrote', path)
    return 0


if __name__ == '__main__':
    sys.exit(main())
