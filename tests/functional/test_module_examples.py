# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The EXAMPLES of the libvirt modules run against real libvirt, so the docs cannot rot.

``domain``, ``domain_devices`` (and the guest NIC of ``network``'s) examples run for real, in their order,
on one embedded-driver root (the guests the domain examples define are the ones the device examples
change); the ``network`` module's examples run in check mode on the private libvirtd (the embedded driver has no network driver, and a hostdev
pool cannot start without a real SR-IOV PF). What an example needs that this host has not is listed
below with the exact outcome it must give instead. The host modules' examples: tests/unit/test_module_examples.py.
"""

from __future__ import annotations

import json
import re

import pytest

from ansible_collections.virtdev.libvirt.tests.unit.test_module_examples import example_tasks

# Guests the device examples refer to that no domain example defines.
GUESTS = {
    'db01': None,
    'all-or-nothing': '3f0c1a52-6a47-4a2b-8f7e-3d1e4a2b9c11',
}
GUEST_XML = ("<domain type='qemu'><name>{name}</name>{uuid}<memory unit='MiB'>64</memory>"
             "<os><type arch='x86_64' machine='q35'>hvm</type></os></domain>")
# Examples run in check mode here, with why.
CHECK_MODE = {
    # the examples' guests are type kvm with host CPU settings: they cannot boot under TCG here
    'Start it': 'KVM guests do not boot on this machine',
}
# Examples whose real outcome on this host is a refusal, and the refusal (the arguments were accepted).
REFUSED = {
    'Pass a PCI device through (persistent definition)': 'there is no PCI device 0000:01:00.0 on this host',
}
IMAGES = '/var/lib/libvirt/images/'
WITHOUT_HOST_CHECKS = {
    # the LVM volume /dev/vg0/db01-data is not on this machine (the guard source_exists would refuse it)
    'Converge a whole host manifest in one task',
}


def _with_images(args, images):
    """The example's arguments with its disk images in ``images``, where they exist (the source_exists guard
    refuses a missing one; this machine's own image directory is not written)."""
    text = json.dumps(args)
    for name in set(re.findall(re.escape(IMAGES) + r'([\w.-]+)', text)):
        (images / name).touch()
    return json.loads(text.replace(IMAGES, str(images) + '/'))


def _run_examples(run_module, uri, modules, check_mode=False, only=None, images=None):
    """Run the example tasks of ``modules`` (those calling one of ``only``, default all) on ``uri``, with their
    disk images in ``images`` when given."""
    ran = []
    for module in modules:
        for task, name, args in example_tasks(module):
            if only and name not in only:
                continue
            check = check_mode or task in CHECK_MODE
            if images is not None:
                args = _with_images(args, images)
            if task in WITHOUT_HOST_CHECKS:
                args = dict(args, host_checks=False)
            result = run_module(name, dict(args, uri=uri), check_mode=check)
            if task in REFUSED:
                assert result.get('failed') and REFUSED[task] in result['msg'], '%s: %s' % (task, result)
                assert result.get('changed') is False, result
            else:
                assert result['rc'] == 0 and not result.get('failed'), '%s: %s' % (task, result.get('msg', result))
            ran.append(task)
    return ran


def test_domain_and_domain_devices_examples_run_on_the_embedded_driver(embed_uri, run_module, virsh, tmp_path):
    for name, uuid in GUESTS.items():
        virsh(embed_uri, 'define', '{xml}',
              xml=GUEST_XML.format(name=name, uuid='<uuid>%s</uuid>' % uuid if uuid else ''))
    ran = _run_examples(run_module, embed_uri, ['domain', 'domain_devices', 'network'],
                        only={'domain', 'domain_devices'}, images=tmp_path)
    assert len(ran) == sum(1 for module in ('domain', 'domain_devices', 'network')
                           for _task, name, _args in example_tasks(module) if name != 'network')
    # what the examples asked is what the guests now have
    web01 = virsh(embed_uri, 'dumpxml', 'web01', '--inactive')
    assert "<watchdog model='i6300esb' action='reset'" in web01
    assert '52:54:00:12:34:56' in web01 and 'e1000' not in web01   # state: overridden kept only that NIC
    assert "/dev/urandom" in virsh(embed_uri, 'dumpxml', 'all-or-nothing', '--inactive')


@pytest.mark.parametrize('module', ['network'])
def test_network_examples_are_accepted_by_a_libvirtd(libvirtd_uri, run_module, module):
    ran = _run_examples(run_module, libvirtd_uri, [module], check_mode=True, only={module})
    assert len(ran) == sum(1 for _task, name, _args in example_tasks(module) if name == module) > 0
