# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""virtdev.libvirt.domain: power states on a real guest, free PCIe root ports."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _domain_spec

import live_guest  # noqa: E402  pylint: disable=wrong-import-order,import-error


def test_running_and_shutoff_are_graceful_and_idempotent(libvirtd_uri, run_module, virsh, tmp_path):
    try:
        kernel, initrd = live_guest.build_boot_files(str(tmp_path))
    except live_guest.testbed.TestbedUnavailable as exc:
        pytest.fail('needs a kernel and busybox (scripts/bootstrap.sh installs them): %s' % exc)
    console = str(tmp_path / 'console.log')
    virsh(libvirtd_uri, 'define', '{xml}', xml=live_guest.domain_xml('power', 'pc', kernel, initrd, console))
    args = {'uri': libvirtd_uri, 'name': 'power'}
    try:
        assert run_module('domain', dict(args, state='running'), check_mode=True)['commands'] == ['start']
        started = run_module('domain', dict(args, state='running'))
        assert started['commands'] == ['start'] and started['domain']['active'] is True
        assert live_guest.wait_for(console, live_guest.READY)
        assert run_module('domain', dict(args, state='running'))['changed'] is False

        grown = run_module('domain', dict(args, memory=320))
        assert grown['changed'] is True and grown['restart_required'] is True  # memory changes at next boot

        assert run_module('domain', dict(args, state='shutoff'), check_mode=True)['commands'] == ['shutdown']
        stopped = run_module('domain', dict(args, state='shutoff', shutdown_timeout=90))
        assert stopped['commands'] == ['shutdown'], stopped   # no 'destroy': the guest powered off itself
        assert live_guest.wait_for(console, live_guest.POWEROFF)
        assert run_module('domain', dict(args, state='shutoff'))['changed'] is False
    finally:
        virsh(libvirtd_uri, 'destroy', 'power', check=False)
        virsh(libvirtd_uri, 'undefine', 'power', check=False)


@pytest.mark.parametrize('ports', [0, 2, 5])
def test_pcie_root_ports_counts_free_ports(ports, embed_uri, run_module, virsh):
    created = run_module('domain', {'uri': embed_uri, 'name': 'ports', 'type': 'qemu', 'machine': 'q35',
                                    'pcie_root_ports': ports})
    assert created['changed'] is True
    xml = virsh(embed_uri, 'dumpxml', '--inactive', 'ports')
    assert _domain_spec.free_root_ports(xml) >= ports
    # devices added later take ports; the domain module does not fight that on later runs
    nics = [{'kind': 'interface', 'mac': '52:54:00:30:00:%02x' % i, 'source': {'user': True}, 'model': 'virtio'}
            for i in range(2)]
    assert run_module('domain_devices', {'uri': embed_uri, 'domain': 'ports', 'config': nics})['changed'] is True
    assert run_module('domain', {'uri': embed_uri, 'name': 'ports', 'pcie_root_ports': ports})['changed'] is False
