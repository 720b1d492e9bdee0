# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reports a person reads: Markdown and HTML tables and a Graphviz DOT graph of the IOMMU groups.

Pure functions over the plain data of ``host.facts.host_facts`` (no sysfs, no libvirt, no Ansible), so
a report can also be rendered later from saved module output. Every value that comes from the host is
escaped for the target format: a device name with ``|``, ``<`` or ``"`` cannot break the table, the
page or the graph.
"""

from __future__ import annotations

import html


VERDICT_TEXT = {'ready': 'ready', 'needs_preparation': 'needs preparation', 'refused': 'refused'}
VERDICT_COLORS = {'ready': '#d9f2d9', 'needs_preparation': '#fff1c2', 'refused': '#f6d0d0'}
UNGROUPED_COLOR = '#eeeeee'


def _text(value):
    if value is None:
        return ''
    if isinstance(value, bool):
        return 'yes' if value else 'no'
    return str(value)


def _device_label(entry):
    """'NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80]', like ``lspci -nn``."""
    ids = '[%s:%s]' % ((entry.get('vendor') or '?').replace('0x', ''), (entry.get('device') or '?').replace('0x', ''))
    return ' '.join(name for name in (entry.get('vendor_name'), entry.get('device_name'), ids) if name)


def _details(entry):
    """One line of why: refusal reasons, else the preparation steps, then warnings."""
    parts = ['%s (%s)' % (reason['message'], reason['guard']) for reason in entry.get('reasons', [])]
    if not parts:
        parts = [step['message'] for step in entry.get('steps', [])]
    parts += ['warning: %s' % warning for warning in entry.get('warnings', [])]
    return '; '.join(parts)


def _used_by(entry):
    uses = []
    for use in entry.get('used_by') or []:
        state = 'running' if use.get('live') else 'defined'
        uses.append('%s (%s)' % (use['domain'], state))
    return ', '.join(uses)


def _sriov(entry):
    sriov = entry.get('sriov')
    if sriov:
        return 'PF %s/%s VFs' % (_text(sriov.get('numvfs')), _text(sriov.get('totalvfs')))
    if entry.get('physfn'):
        return 'VF of %s' % entry['physfn']
    return ''


def _iommu_rows(facts):
    iommu = facts.get('iommu') or {}
    state = 'on' if iommu.get('enabled') else 'off'
    extra = [value for value in (iommu.get('kind'), iommu.get('firmware_table')) if value]
    if extra:
        state += ' (%s)' % ', '.join(extra)
    state += ', %d groups' % (iommu.get('groups') or 0)
    if iommu.get('passthrough_mode'):
        state += ', passthrough mode'
    modules = sorted(name for name, loaded in (iommu.get('modules') or {}).items() if loaded)
    cmdline = ' '.join(key if value is True else '%s=%s' % (key, value)
                       for key, value in sorted((iommu.get('cmdline') or {}).items()))
    remapping, vfio = iommu.get('interrupt_remapping'), iommu.get('vfio_device')
    # read from libvirt's node devices (a remote host), the kernel's state is not known: never 'none' or 'no'
    unknown = 'not known (read from %s)' % iommu['source'] if iommu.get('source') else None
    return [
        ('IOMMU', state),
        ('Interrupt remapping', 'unknown' if remapping is None else _text(remapping)),
        ('/dev/vfio/vfio', 'unknown' if vfio is None else 'present' if vfio else 'missing'),
        ('Loaded modules', unknown or ', '.join(modules) or 'none'),
        ('IOMMU kernel parameters', unknown or cmdline or 'none'),
        ('ACS override', unknown or _text(bool(iommu.get('acs_override')))),
    ]


def _summary(facts):
    counts = facts.get('summary') or {}
    return '%d ready, %d need preparation, %d refused' % (
        counts.get('ready', 0), counts.get('needs_preparation', 0), counts.get('refused', 0))


PCI_COLUMNS = ('Address', 'Device', 'Class', 'Driver', 'Group', 'NUMA', 'SR-IOV', 'Verdict', 'Why / steps',
               'Used by')
USB_COLUMNS = ('Bus.Dev', 'ID', 'Name', 'Controller', 'Verdict', 'Why', 'Used by')
MDEV_COLUMNS = ('Parent', 'Type', 'Name', 'Available', 'Devices')


def _pci_row(entry):
    return (entry['address'], _device_label(entry), entry.get('class_name') or entry.get('class'),
            entry.get('driver') or '-', _text(entry.get('iommu_group')) or '-', _text(entry.get('numa_node')),
            _sriov(entry), VERDICT_TEXT.get(entry.get('verdict'), entry.get('verdict')), _details(entry),
            _used_by(entry))


def _usb_row(entry):
    ident = '%s:%s' % ((entry.get('vendor') or '?').replace('0x', ''), (entry.get('product') or '?').replace('0x', ''))
    name = ' '.join(part for part in (entry.get('manufacturer'), entry.get('product_name')) if part)
    why = '; '.join(reason['message'] for reason in entry.get('reasons', []))
    return ('%s.%s' % (_text(entry.get('bus')), _text(entry.get('device'))), ident, name, entry.get('controller') or '',
            VERDICT_TEXT.get(entry.get('verdict'), entry.get('verdict')), why, _used_by(entry))


def _mdev_row(entry):
    return (entry.get('parent'), entry.get('type'), entry.get('name') or '', _text(entry.get('available_instances')),
            ', '.join(entry.get('devices') or []))


# -- Markdown --------------------------------------------------------------------------------------------

def _md(value):
    text = _text(value).replace('\\', '\\\\').replace('|', '\\|')
    return ' '.join(text.split())  # no newlines inside a table cell


def _md_table(columns, rows):
    lines = ['| %s |' % ' | '.join(columns), '|%s|' % '|'.join('---' for _column in columns)]
    lines += ['| %s |' % ' | '.join(_md(cell) for cell in row) for row in rows]
    return lines


MAPPING_COLUMNS = ('Mapping', 'Device', 'Functions', 'Ids', 'Held by', 'Free', 'Why not free')


def _mapping_rows(facts):
    """One row per candidate of each device mapping (a mapping without one says so)."""
    rows = []
    for mapping in facts.get('mappings') or ():
        name = '%s (%d free, asks %d)' % (mapping['name'], mapping['free'], mapping['count'])
        if mapping.get('description'):
            name = '%s: %s' % (name, mapping['description'])
        if not mapping['candidates'] and mapping.get('parents'):
            # an mdev mapping whose type has no instance yet: where virtdev.libvirt.mdev can create them
            rows.append((name, 'no mdev of the type exists', '', '', '', 'no', '; '.join(
                '%s on %s: available_instances %s' % (parent['mdev_type'], parent['address'],
                                                      parent['available_instances']) for parent in mapping['parents'])))
        elif not mapping['candidates']:
            rows.append((name, 'no device of this host matches', '', '', '', 'no', ''))
        for row in mapping['candidates']:
            functions = ('%s on %s' % (row['mdev_type'], row['parent']) if row.get('uuid')
                         else ', '.join(row['functions']))
            rows.append((name, row['device'], functions, row['ids'] or '',
                         _used_by({'used_by': row['held_by']}), 'yes' if row['free'] else 'no',
                         '; '.join(row['not_free'])))
    return rows


def render_markdown(facts, title=None):
    title = title or 'Host devices'
    lines = ['# %s' % _md(title), '']
    lines += _md_table(('', ''), _iommu_rows(facts)) + ['']
    lines += ['## PCI devices: %s' % _summary(facts), '']
    lines += _md_table(PCI_COLUMNS, [_pci_row(entry) for entry in facts.get('pci_devices', [])]) + ['']
    if facts.get('usb_devices'):
        lines += ['## USB devices', '']
        lines += _md_table(USB_COLUMNS, [_usb_row(entry) for entry in facts['usb_devices']]) + ['']
    if facts.get('mdev_types'):
        lines += ['## Mediated device types', '']
        lines += _md_table(MDEV_COLUMNS, [_mdev_row(entry) for entry in facts['mdev_types']]) + ['']
    if facts.get('iommu_groups'):
        lines += ['## IOMMU groups', '']
        lines += _md_table(('Group', 'Type', 'Devices', 'Held by'), [
            (group['group'], group.get('type') or '', ', '.join(group['devices']),
             _used_by({'used_by': group.get('held_by')})) for group in facts['iommu_groups']
        ]) + ['']
    if facts.get('mappings'):
        lines += ['## Device mappings', '']
        lines += _md_table(MAPPING_COLUMNS, _mapping_rows(facts)) + ['']
    if facts.get('problems'):
        lines += ['## Problems found while reading the host', '']
        lines += ['- %s' % _md(problem) for problem in facts['problems']] + ['']
    return '\n'.join(lines)


# -- HTML ------------------------------------------------------------------------------------------------

_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #bbb; padding: 0.25em 0.5em; text-align: left; vertical-align: top; font-size: 90%; }
th { background: #f0f0f0; }
td.ready { background: #d9f2d9; }
td.needs_preparation { background: #fff1c2; }
td.refused { background: #f6d0d0; }
code { font-size: 95%; }
""".strip()


def _html_table(columns, rows, verdict_column=None, verdicts=None):
    out = ['<table>', '<tr>%s</tr>' % ''.join('<th>%s</th>' % html.escape(column) for column in columns)]
    for index, row in enumerate(rows):
        cells = []
        for position, cell in enumerate(row):
            css = ''
            if verdict_column is not None and position == verdict_column and verdicts:
                css = ' class="%s"' % html.escape(verdicts[index] or '', quote=True)
            cells.append('<td%s>%s</td>' % (css, html.escape(_text(cell))))
        out.append('<tr>%s</tr>' % ''.join(cells))
    out.append('</table>')
    return out


def render_html(facts, title=None):
    title = title or 'Host devices'
    pci = facts.get('pci_devices', [])
    out = ['<!DOCTYPE html>', '<html lang="en">', '<head>', '<meta charset="utf-8">',
           '<title>%s</title>' % html.escape(title), '<style>', _CSS, '</style>', '</head>', '<body>',
           '<h1>%s</h1>' % html.escape(title)]
    out += _html_table(('', ''), _iommu_rows(facts))
    out.append('<h2>PCI devices: %s</h2>' % html.escape(_summary(facts)))
    out += _html_table(PCI_COLUMNS, [_pci_row(entry) for entry in pci], verdict_column=7,
                       verdicts=[entry.get('verdict') for entry in pci])
    usb = facts.get('usb_devices') or []
    if usb:
        out.append('<h2>USB devices</h2>')
        out += _html_table(USB_COLUMNS, [_usb_row(entry) for entry in usb], verdict_column=4,
                           verdicts=[entry.get('verdict') for entry in usb])
    if facts.get('mdev_types'):
        out.append('<h2>Mediated device types</h2>')
        out += _html_table(MDEV_COLUMNS, [_mdev_row(entry) for entry in facts['mdev_types']])
    if facts.get('mappings'):
        rows = _mapping_rows(facts)
        out.append('<h2>Device mappings</h2>')
        out += _html_table(MAPPING_COLUMNS, rows, verdict_column=5,
                           verdicts=['ready' if row[5] == 'yes' else 'refused' for row in rows])
    if facts.get('problems'):
        out.append('<h2>Problems found while reading the host</h2>')
        out.append('<ul>%s</ul>' % ''.join('<li>%s</li>' % html.escape(problem) for problem in facts['problems']))
    out += ['</body>', '</html>', '']
    return '\n'.join(out)


# -- Graphviz DOT ----------------------------------------------------------------------------------------

def _dot_quote(text):
    """A DOT double-quoted string; ``\\n`` separators in labels are added by the caller."""
    return '"%s"' % _text(text).replace('\\', '\\\\').replace('"', '\\"').replace('\n', ' ').replace('\r', ' ')


def _dot_label(*lines):
    escaped = [_text(line).replace('\\', '\\\\').replace('"', '\\"').replace('\n', ' ').replace('\r', ' ')
               for line in lines if line]
    return '"%s"' % '\\n'.join(escaped)


def render_dot(facts, title=None):
    """The IOMMU groups as clusters, devices colored by verdict, bridge -> device and PF -> VF edges."""
    title = title or 'IOMMU groups'
    pci = facts.get('pci_devices', [])
    out = ['digraph iommu_groups {',
           '  graph [rankdir=LR, fontname="sans-serif", label=%s, labelloc=t];' % _dot_quote(title),
           '  node [shape=box, style="rounded,filled", fontname="sans-serif", fontsize=10];',
           '  edge [fontname="sans-serif", fontsize=9];']
    by_group = {}
    for entry in pci:
        by_group.setdefault(entry.get('iommu_group'), []).append(entry)

    def node(entry, indent):
        label = _dot_label(entry['address'], _device_label(entry), entry.get('class_name'),
                           'driver: %s' % (entry.get('driver') or 'none'),
                           VERDICT_TEXT.get(entry.get('verdict'), entry.get('verdict')))
        color = VERDICT_COLORS.get(entry.get('verdict'), UNGROUPED_COLOR)
        shape = '' if entry.get('endpoint', True) else ', shape=cds'
        return '%s%s [label=%s, fillcolor="%s"%s];' % (indent, _dot_quote(entry['address']), label, color, shape)

    groups = facts.get('iommu_groups') or []
    types = {group['group']: group.get('type') for group in groups}
    for number in sorted(key for key in by_group if key is not None):
        label = 'IOMMU group %s' % number
        if types.get(number):
            label += ' (%s)' % types[number]
        out.append('  subgraph %s {' % _dot_quote('cluster_group_%s' % number))
        out.append('    label=%s; style="rounded"; color="#777777";' % _dot_quote(label))
        out += [node(entry, '    ') for entry in by_group[number]]
        out.append('  }')
    out += [node(entry, '  ') for entry in by_group.get(None, [])]
    addresses = {entry['address'] for entry in pci}
    for entry in pci:
        if entry.get('parent') in addresses:
            out.append('  %s -> %s;' % (_dot_quote(entry['parent']), _dot_quote(entry['address'])))
        if entry.get('physfn') in addresses:
            out.append('  %s -> %s [style=dashed, label="VF"];' % (_dot_quote(entry['physfn']),
                                                                   _dot_quote(entry['address'])))
    for mdev in facts.get('mdev_devices') or []:
        out.append('  %s [label=%s, shape=note, fillcolor="#e4ecf7"];'
                   % (_dot_quote(mdev['uuid']), _dot_label('mdev ' + mdev['uuid'], mdev.get('type'))))
        if mdev.get('parent') in addresses:
            out.append('  %s -> %s [style=dotted, label="mdev"];' % (_dot_quote(mdev['parent']),
                                                                     _dot_quote(mdev['uuid'])))
    out.append('}')
    return '\n'.join(out) + '\n'


RENDERERS = {'markdown': render_markdown, 'html': render_html, 'dot': render_dot}


def render(facts, formats, title=None):
    """{format: text} for each of ``formats`` other than ``facts``."""
    return {name: RENDERERS[name](facts, title) for name in formats if name in RENDERERS}
