# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""On qemu:///embed, a task during which libvirt probed QEMU says so, and why it will again when it will
(docs/deploying.md, "The embedded driver re-probes QEMU on every task"). Each probe costs a few seconds."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import tempfile

import pytest

from harness import embed

from ansible_collections.virtdev.libvirt.plugins.module_utils import _embed_probe

QEMU_USER = 'libvirt-qemu'   # Debian's build default for the user libvirt runs QEMU as
# The harness's qemu.conf without user/group: QEMU runs as the build default.
DEFAULT_USER_CONF = '\n'.join(line for line in embed.QEMU_CONF.splitlines()
                              if not line.startswith(('user ', 'group '))) + '\n'


GUEST = ("<domain type='qemu'><name>probe-guest</name><memory unit='MiB'>64</memory>"
         "<os><type arch='x86_64'>hvm</type></os></domain>")


@pytest.fixture
def probe_root():
    """A root whose driver may really probe QEMU: the probe's QMP socket lives below ROOT/lib/qemu, and a UNIX
    socket path holds at most 107 bytes (unix(7)), which a root below pytest's basetemp can exceed; the probe then
    fails and nothing is cached, or rewritten."""
    root = tempfile.mkdtemp(prefix='vdp-', dir='/tmp')
    yield os.path.join(root, 'embed')
    shutil.rmtree(root, ignore_errors=True)


def _with_guest(virsh, uri):
    """Define a guest: the driver then needs QEMU's capabilities as soon as it starts (it loads the guest)."""
    virsh(uri, 'define', xml=GUEST)


def _absent(run_module, uri):
    """A task with no change, in a root with a guest: libvirt looks QEMU's capabilities up once."""
    result = run_module('domain', {'uri': uri, 'name': 'virtdev-no-such-guest', 'state': 'absent'})
    assert result['rc'] == 0 and result.get('changed') is False, result
    return str(result.get('warnings'))


def test_no_warning_when_the_cache_holds(embed_uri, run_module, virsh):
    _with_guest(virsh, embed_uri)
    assert 'probed QEMU' not in _absent(run_module, embed_uri)


def test_a_stale_cache_is_reported_once(probe_root, embed_template, run_module, virsh):
    embed_uri = embed.prepare_embed_root(probe_root, seed_from=embed_template)
    _with_guest(virsh, embed_uri)
    root = _embed_probe.embed_root(embed_uri)
    files = glob.glob(os.path.join(embed.capabilities_dir(root), '*.xml'))
    assert files
    for path in files:   # as if libvirt had been upgraded since the probe
        with open(path, encoding='utf-8') as handle:
            text = handle.read()
        with open(path, 'w', encoding='utf-8') as handle:
            handle.write(re.sub(r'<selfctime>\d+</selfctime>', '<selfctime>1</selfctime>', text, count=1))
    first = _absent(run_module, embed_uri)
    assert 'probed QEMU during this task' in first and 'judged its cached capabilities stale' in first, first
    assert 'probed QEMU' not in _absent(run_module, embed_uri)


def _read(path):
    with open(path, 'rb') as handle:
        return handle.read()


def _kvm_conflict_possible():
    if os.geteuid() != 0:
        return 'needs root (the probe then runs with the right to override file permissions)'
    if not os.path.exists(_embed_probe.KVM_DEVICE):
        return 'no /dev/kvm'
    try:
        user = pwd.getpwnam(QEMU_USER)
    except KeyError:
        return 'no %s account' % QEMU_USER
    if _embed_probe.accessible_as(_embed_probe.KVM_DEVICE, user.pw_uid, user.pw_gid) is not False:
        return '%s can open /dev/kvm on this machine' % QEMU_USER
    return None


def test_a_qemu_user_without_kvm_is_named_with_the_fixes_on_every_task(probe_root, embed_template, run_module,
                                                                       virsh):
    reason = _kvm_conflict_possible()
    if reason:
        pytest.skip(reason)
    template_caps = glob.glob(os.path.join(embed.capabilities_dir(embed_template), '*.xml'))
    if not any(_embed_probe.KVM_FLAG in _read(path) for path in template_caps):
        pytest.skip('QEMU found no usable KVM here, so libvirt records none and keeps its cache')
    root = probe_root
    uri = embed.prepare_embed_root(root, seed_from=embed_template)
    _with_guest(virsh, uri)   # QEMU as root: the seeded cache holds
    with open(os.path.join(root, 'etc', 'qemu.conf'), 'w', encoding='utf-8') as handle:
        handle.write(DEFAULT_USER_CONF)
    for _task in range(2):   # the cache never holds: every task probes again
        warnings = _absent(run_module, uri)
        assert 'probed QEMU during this task' in warnings, warnings
        assert 'will do so on every task' in warnings, warnings
        assert 'QEMU runs as %s' % QEMU_USER in warnings and 'cannot open /dev/kvm' in warnings, warnings
        assert 'user = "root" and group = "root" in %s/etc/qemu.conf' % root in warnings, warnings
