# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Where the passthrough guards read the host (sysfs or libvirt's node devices), host_checks values, and the
marks a remote inventory carries."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import nodedev_source, report, source
from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_runner
from ansible_collections.virtdev.libvirt.plugins.modules import host_devices_info
from ansible_collections.virtdev.libvirt.tests.unit import nodedev_docs as docs


@pytest.mark.parametrize('root, uri, sysfs', [
    ('/', 'qemu:///system', True),
    ('/', 'qemu:///system?socket=/run/x/libvirt-sock', True),
    ('/', 'qemu+unix:///system', True),
    ('/', 'qemu:///embed?root=/var/tmp/embed', True),
    ('/', 'qemu+ssh://root@hv1/system', False),
    ('/', 'qemu+tls://hv1.example.org/system?pkipath=/tmp/pki', False),
    ('/', 'qemu+ssh://root@127.0.0.1:2222/system?socket=/run/x/libvirt-sock', False),  # the far end is not assumed
    ('/tmp/fixture', 'qemu+ssh://root@hv1/system', True),  # a fixture tree given explicitly
])
def test_which_host_source_the_guards_read(root, uri, sysfs, tmp_path):
    if root != '/':
        root = str(tmp_path)
    assert source.reads_node_devices(root, uri) is not sysfs


@pytest.mark.parametrize('value, mode', [(True, 'on'), (False, 'off'), ('yes', 'on'), ('false', 'off'),
                                         ('strict', 'strict'), ('Strict', 'strict')])
def test_host_checks_values(value, mode):
    assert _device_runner.host_checks_mode(value) == mode


@pytest.mark.parametrize('value', ['sometimes', 3, ['strict']])
def test_host_checks_refuses_other_values(value):
    with pytest.raises(TypeError):
        _device_runner.host_checks_mode(value)


def test_a_remote_inventory_names_what_node_devices_cannot_tell():
    facts = host_devices_info.remote_facts(nodedev_source.read_host(docs.sriov_host()), usage={})
    gpu = {entry['address']: entry for entry in facts['pci_devices']}[docs.GPU]
    assert gpu['verdict'] == 'ready' and gpu['boot_vga'] is None and 'boot_vga' in gpu['not_available']
    assert [row['guard'] for row in gpu['not_checked']][:3] == ['host_critical'] * 3
    assert facts['kernel_cmdline'] == '' and facts['iommu']['vfio_device'] is True


def test_the_report_of_a_remote_host_does_not_claim_kernel_state_it_cannot_see():
    host = nodedev_source.read_host([doc for doc in docs.sriov_host() if 'vfio-pci' not in doc])
    facts = host_devices_info.remote_facts(host, usage={})
    markdown = report.render(facts, ['markdown'], 'hv1')['markdown']
    assert '| /dev/vfio/vfio | unknown |' in markdown, markdown
    assert '| Loaded modules | not known (read from libvirt node devices) |' in markdown
    assert '| ACS override | not known (read from libvirt node devices) |' in markdown
