# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Root directories for libvirt's embedded QEMU driver (``qemu:///embed?root=DIR``).

The embedded driver runs inside the process that opens the URI and keeps every definition, state
file and log below DIR, so nothing touches a system libvirtd. It reads ``DIR/etc/qemu.conf``; without
``user``/``group`` set to root it tries to run QEMU as ``libvirt-qemu``. Only one process at a time may
hold a root (for that process's whole life), so tests open it through subprocesses or ``virsh``.

Every new root probes QEMU once (3-8 s) and caches the result in ``DIR/cache/qemu/capabilities``;
``prepare_embed_root(DIR, seed_from=OTHER_ROOT)`` copies that cache from a root that already probed,
which brings the first call on a fresh root down to a few milliseconds (libvirt still validates the
cache against the QEMU binary and itself, and re-probes when it is stale).

Command line: ``python tests/harness/embed.py prepare DIR [--seed-from ROOT] [--caps-cache CACHE]``
creates the root and prints its URI. ``--caps-cache`` seeds the root from the capabilities directory
CACHE, makes libvirt probe (or validate) them with ``virsh capabilities`` and saves them back to CACHE.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

QEMU_CONF = '''\
# Written by tests/harness/embed.py for libvirt's embedded QEMU driver.
user = "root"
group = "root"
# QEMU's console/log output goes to files below this root (no virtlogd needed).
stdio_handler = "file"
# Keep guests out of the host's cgroups: nothing is written below /sys/fs/cgroup.
cgroup_controllers = [ ]
'''


def embed_uri(directory):
    """The URI that opens the embedded QEMU driver rooted at ``directory``."""
    return 'qemu:///embed?root=%s' % os.path.abspath(directory)


def capabilities_dir(directory):
    """Where the embedded driver rooted at ``directory`` caches its QEMU probe results."""
    return os.path.join(os.path.abspath(directory), 'cache', 'qemu', 'capabilities')


def seed_capabilities(source_dir, target_dir):
    """Copy cached QEMU capabilities (``*.xml``) that ``target_dir`` lacks or has in an older version.

    Returns how many files were copied. libvirt checks every cached file against the QEMU binary and
    itself before using it, so a stale copy only costs the probe it would have cost anyway.
    """
    if not source_dir or not os.path.isdir(source_dir):
        return 0
    os.makedirs(target_dir, mode=0o755, exist_ok=True)
    copied = 0
    for entry in sorted(os.listdir(source_dir)):
        source = os.path.join(source_dir, entry)
        target = os.path.join(target_dir, entry)
        if not entry.endswith('.xml') or not os.path.isfile(source):
            continue
        if os.path.exists(target) and os.path.getmtime(target) >= os.path.getmtime(source):
            continue
        partial = '%s.%d.tmp' % (target, os.getpid())  # several test runs may share a cache
        shutil.copy2(source, partial)
        os.replace(partial, target)
        copied += 1
    return copied


def prepare_embed_root(directory, seed_from=None):
    """Create ``directory`` (if needed) with the qemu.conf the embedded driver needs; return its URI.

    Existing definitions below ``directory`` are kept, so a root can be reused across runs.
    ``seed_from``: another embed root whose QEMU capabilities cache is copied in (skips the probe).
    """
    directory = os.path.abspath(directory)
    if seed_from:
        seed_capabilities(capabilities_dir(seed_from), capabilities_dir(directory))
    etc = os.path.join(directory, 'etc')
    os.makedirs(etc, mode=0o700, exist_ok=True)
    conf = os.path.join(etc, 'qemu.conf')
    current = None
    if os.path.exists(conf):
        with open(conf, encoding='utf-8') as handle:
            current = handle.read()
    if current != QEMU_CONF:
        with open(conf + '.tmp', 'w', encoding='utf-8') as handle:
            handle.write(QEMU_CONF)
        os.replace(conf + '.tmp', conf)
    return embed_uri(directory)


def probe(directory, timeout=300):
    """Make the embedded driver of ``directory`` probe QEMU (or validate its cache); raise on failure."""
    proc = subprocess.run(['virsh', '-c', embed_uri(directory), 'capabilities'], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError('virsh -c %s capabilities failed: %s' % (embed_uri(directory), proc.stderr.strip()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest='command', required=True)
    prepare = sub.add_parser('prepare', help='create DIR/etc/qemu.conf and print the URI')
    prepare.add_argument('directory')
    prepare.add_argument('--seed-from', metavar='ROOT', help='copy the QEMU capabilities cache of this root')
    prepare.add_argument('--caps-cache', metavar='CACHE',
                         help='seed from this capabilities directory, probe, and save the result back to it')
    uri = sub.add_parser('uri', help='print the URI of DIR without touching it')
    uri.add_argument('directory')
    args = parser.parse_args(argv)
    if args.command == 'prepare':
        uri = prepare_embed_root(args.directory, seed_from=args.seed_from)
        if args.caps_cache:
            seed_capabilities(args.caps_cache, capabilities_dir(args.directory))
            try:
                probe(args.directory)
            except RuntimeError as exc:
                print('error: %s' % exc, file=sys.stderr)
                return 1
            seed_capabilities(capabilities_dir(args.directory), args.caps_cache)
        print(uri)
    else:
        print(embed_uri(args.directory))
    return 0


if __name__ == '__main__':
    sys.exit(main())
