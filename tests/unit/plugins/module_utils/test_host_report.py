# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Markdown / HTML / DOT renderers on facts from fixture trees, including hostile names."""

from __future__ import annotations

import copy
import html.parser
import re
import shutil
import subprocess

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import facts as host_facts
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import model
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import report
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import sysfs_source
from ansible_collections.virtdev.libvirt.plugins.module_utils import _pci_ids
from ansible_collections.virtdev.libvirt.tests.unit.sysfs_trees import build

GPU, GPU_AUDIO = '0000:01:00.0', '0000:01:00.1'
HOSTILE = 'Evil | <script>alert(1)</script> "quoted" \\ back\nslash'


def facts_of(name, tmp_path, usage=None):
    root = build(name, tmp_path)
    host = sysfs_source.read_host(root, _pci_ids.PciIds.load(_pci_ids.find_pci_ids(root)))
    return host_facts.host_facts(host, usage)


@pytest.fixture(scope='module')
def desktop(tmp_path_factory):
    usage = {('pci', '0000:03:00.0'): [{'domain': 'fw', 'live': True, 'config': True}],
             ('usb', '0x046d:0xc31c'): [{'domain': 'desk', 'live': False, 'config': True}]}
    return facts_of('desktop', tmp_path_factory.mktemp('report'), usage)


@pytest.fixture(scope='module')
def sriov(tmp_path_factory):
    return facts_of('sriov', tmp_path_factory.mktemp('report'))


@pytest.fixture(scope='module')
def mdev(tmp_path_factory):
    return facts_of('mdev', tmp_path_factory.mktemp('report'))


def hostile(facts):
    facts = copy.deepcopy(facts)
    facts['pci_devices'][0]['device_name'] = HOSTILE
    facts['pci_devices'][0]['driver'] = 'drv"|<b>'
    facts['problems'] = [HOSTILE]
    return facts


def md_rows(text, header):
    """The rows of the Markdown table whose header starts with ``header``, split into cells."""
    lines = text.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith('| ' + header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            break
        cells = re.split(r'(?<!\\)\|', line)[1:-1]
        rows.append([cell.strip() for cell in cells])
    return rows


def test_markdown_tables(desktop):
    text = report.render_markdown(desktop, 'workstation')
    assert text.startswith('# workstation\n')
    assert '## PCI devices: 1 ready, 3 need preparation, 11 refused' in text
    rows = {row[0]: row for row in md_rows(text, 'Address')}
    assert len(rows) == 15 and all(len(row) == len(report.PCI_COLUMNS) for row in rows.values())
    gpu = rows[GPU]
    assert gpu[1] == 'NVIDIA Corporation GP104 [GeForce GTX 1080] [10de:1b80]'
    assert gpu[2:8] == ['VGA compatible controller', 'nouveau', '1', '0', '', 'needs preparation']
    assert gpu[8] == ('bind 0000:01:00.0 (now nouveau) to vfio-pci; bind group member 0000:01:00.1 '
                      '(now snd_hda_intel) to vfio-pci')
    assert rows['0000:00:02.0'][7:9] == ['refused', 'is host-critical: the boot VGA device (boot_vga=1): the host '
                                                    'console (host_critical)']
    assert rows['0000:03:00.0'][7:] == ['ready', '', 'fw (running)']
    usb = {row[0]: row for row in md_rows(text, 'Bus.Dev')}
    assert usb['1.2'] == ['1.2', '046d:c31c', 'Logitech USB Keyboard', '0000:00:14.0', 'ready', '', 'desk (defined)']
    assert usb['1.4'][4:6] == ['refused', 'the USB device holding /boot/efi (/dev/sdb1)']
    groups = {row[0]: row for row in md_rows(text, 'Group')}
    assert groups['1'] == ['1', 'identity', '0000:00:01.0, 0000:01:00.0, 0000:01:00.1', '']
    held = [row for row in groups.values() if '0000:03:00.0' in row[2]]
    assert [row[3] for row in held] == ['fw (running)']  # the group a running guest holds
    iommu = dict((row[0], row[1]) for row in md_rows(text, ' |'))
    assert iommu['IOMMU'] == 'on (intel, DMAR), 9 groups, passthrough mode'
    assert iommu['Interrupt remapping'] == 'yes' and iommu['IOMMU kernel parameters'] == 'intel_iommu=on iommu=pt'


def test_markdown_sriov_and_mdev(sriov, mdev):
    rows = {row[0]: row for row in md_rows(report.render_markdown(sriov), 'Address')}
    assert rows['0000:41:00.0'][6] == 'PF 4/64 VFs'
    assert rows['0000:41:02.0'][6] == 'VF of 0000:41:00.0'
    assert rows['0000:41:02.0'][5] == '1'
    types = md_rows(report.render_markdown(mdev), 'Parent')
    assert types[0] == ['0000:00:02.0', 'i915-GVTg_V5_4', 'GVTg_V5_4', '1', 'a297db4a-f4c2-11e6-90f6-d3b88d6c9525']
    assert types[3] == ['0000:01:00.0', 'nvidia-223', 'GRID T4-2B', '0', '']


def test_markdown_escapes_cells(desktop):
    text = report.render_markdown(hostile(desktop))
    row = md_rows(text, 'Address')[0]
    assert len(row) == len(report.PCI_COLUMNS)  # the pipe did not split the cell
    assert row[1].startswith('Intel Corporation Evil \\| <script>')
    assert row[3] == 'drv"\\|<b>'
    assert 'back slash' in text and 'back\nslash' not in text


class _Collector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.cells = []
        self.classes = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == 'td':
            self.cells.append('')
            self.classes.append(dict(attrs).get('class'))

    def handle_data(self, data):
        self.text.append(data)
        if self.cells and self.tags and self.tags[-1] == 'td':
            self.cells[-1] += data


def test_html_page(desktop):
    page = report.render_html(desktop, 'workstation <1>')
    assert page.startswith('<!DOCTYPE html>') and page.rstrip().endswith('</html>')
    assert '<title>workstation &lt;1&gt;</title>' in page
    parser = _Collector()
    parser.feed(page)
    assert 'script' not in parser.tags
    assert sorted(set(c for c in parser.classes if c)) == ['needs_preparation', 'ready', 'refused']
    assert parser.classes.count('refused') == 11 + 3  # PCI + USB refusals (usb1, 1-4 hubs; 1-3 holds /boot/efi)
    assert 'bind 0000:01:00.0 (now nouveau) to vfio-pci; bind group member 0000:01:00.1 (now snd_hda_intel) to ' \
           'vfio-pci' in parser.cells


def test_html_escapes(desktop):
    page = report.render_html(hostile(desktop))
    assert '<script>' not in page
    assert '&lt;script&gt;alert(1)&lt;/script&gt; &quot;quoted&quot;' in page
    parser = _Collector()
    parser.feed(page)
    assert 'script' not in parser.tags and 'b' not in parser.tags


def test_dot_graph(desktop, sriov, mdev):
    dot = report.render_dot(desktop)
    assert dot.startswith('digraph iommu_groups {') and dot.rstrip().endswith('}')
    assert dot.count('subgraph "cluster_group_') == 9
    assert 'label="IOMMU group 1 (identity)"' in dot
    assert '"0000:00:01.0" -> "0000:01:00.0";' in dot and '"0000:00:01.0" -> "0000:01:00.1";' in dot
    assert re.search(r'"0000:01:00.0" \[label="0000:01:00.0\\nNVIDIA Corporation GP104 \[GeForce GTX 1080\] '
                     r'\[10de:1b80\]\\nVGA compatible controller\\ndriver: nouveau\\nneeds preparation", '
                     r'fillcolor="#fff1c2"\];', dot)
    assert '"0000:00:01.0" [label=' in dot and 'shape=cds' in dot
    vf_edges = re.findall(r'"0000:41:00.0" -> "(0000:41:02.\d)" \[style=dashed, label="VF"\];', report.render_dot(sriov))
    assert vf_edges == ['0000:41:02.0', '0000:41:02.1', '0000:41:02.2', '0000:41:02.3']
    mdev_dot = report.render_dot(mdev)
    assert '"0000:01:00.0" -> "8c1bd7f6-5c0f-4c8b-9b7e-2f2a3b4c5d6e" [style=dotted, label="mdev"];' in mdev_dot


def test_dot_ungrouped_devices_and_escaping(tmp_path, desktop):
    server = facts_of('server', tmp_path)
    dot = report.render_dot(server)
    outside = dot.rsplit('subgraph', maxsplit=1)[-1].split('  }\n', 1)[1]
    assert '"10000:01:00.0" [label=' in outside  # behind VMD: no IOMMU group, outside the clusters
    text = report.render_dot(hostile(desktop), 'a "title"')
    assert 'label="a \\"title\\""' in text
    assert '\\"quoted\\" \\\\ back slash' in text


@pytest.mark.skipif(shutil.which('dot') is None, reason='Graphviz dot is not installed')
@pytest.mark.parametrize('fixture', ['desktop', 'sriov', 'mdev'])
def test_dot_is_valid_graphviz(request, fixture):
    facts = hostile(request.getfixturevalue(fixture))
    result = subprocess.run(['dot', '-Tsvg'], input=report.render_dot(facts, 'title "x" \\'), capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert '<svg' in result.stdout and result.stderr == ''


def test_render_selects_formats(desktop):
    out = report.render(desktop, ['facts', 'markdown', 'dot'])
    assert sorted(out) == ['dot', 'markdown']
    assert out['markdown'] == report.render_markdown(desktop)


def test_empty_facts_render():
    facts = host_facts.host_facts(model.Host('/nowhere'))
    assert '## PCI devices: 0 ready, 0 need preparation, 0 refused' in report.render_markdown(facts)
    assert report.render_dot(facts).count('\n') == 5
    assert '<h2>PCI devices: 0 ready' in report.render_html(facts)
