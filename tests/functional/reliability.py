# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the fault and race tests (test_faults.py, test_races.py); they publish their figures.

* ``Figures(name)``: counters a test module fills; ``save()`` writes them as JSON to
  ``$VIRTDEV_RELIABILITY_DIR/<name>.json`` (set by scripts/test.sh), from which
  scripts/render_reliability.py writes docs/reliability.md.
* ``Guests``: many guests defined, reset and read back quickly through one libvirt connection of the test
  process (a private libvirtd, never the embedded driver: one process at a time holds an embed root).
* ``ModuleProcess``: a module run as Ansible runs it, a process of its own, started without waiting, so
  several can race.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid

import libvirt

MODULE_PACKAGE = 'ansible_collections.virtdev.libvirt.plugins.modules'

BARE = ("<domain type='qemu'><name>%s</name><uuid>%s</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
        "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator></devices></domain>")


def _quiet(_ctx, _err):
    """libvirt prints every error to stderr by default; the tests look at the exceptions."""


class Figures:
    """What a test module measured, published for docs/reliability.md."""

    def __init__(self, name, **fields):
        self.name = name
        self.data = dict(fields)
        self.started = time.monotonic()

    def add(self, key, amount=1):
        self.data[key] = self.data.get(key, 0) + amount

    def append(self, key, item):
        self.data.setdefault(key, []).append(item)

    def save(self):
        self.data['duration_s'] = round(time.monotonic() - self.started, 1)
        directory = os.environ.get('VIRTDEV_RELIABILITY_DIR')
        if not directory:
            return None
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, '%s.json' % self.name)
        with open(path + '.tmp', 'w', encoding='utf-8') as handle:
            json.dump(self.data, handle, indent=1, sort_keys=True)
        os.replace(path + '.tmp', path)
        return path


class Guests:
    """Bare guests ``prefix-NNN`` on a private libvirtd, with their definitions read as libvirt keeps them."""

    def __init__(self, uri, prefix, count):
        libvirt.registerErrorHandler(_quiet, None)
        self.uri = uri
        self.names = ['%s-%03d' % (prefix, index) for index in range(count)]
        self.conn = None

    def connect(self):
        """(Re)connect: after the daemon restarted, the old connection is dead."""
        if self.conn is not None:
            try:
                self.conn.close()
            except libvirt.libvirtError:
                pass
        self.conn = libvirt.open(self.uri)
        return self

    def uuid(self, name):
        return str(uuid.uuid5(uuid.NAMESPACE_URL, 'virtdev-reliability/%s/%s' % (self.uri, name)))

    def reset(self):
        """Every guest bare again (undefined first if it exists)."""
        for name in self.names:
            self.undefine(name)
            self.conn.defineXML(BARE % (name, self.uuid(name)))

    def undefine(self, name):
        try:
            self.conn.lookupByName(name).undefine()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                raise

    def definition(self, name):
        """The persistent definition exactly as libvirt returns it (secrets included)."""
        return self.conn.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)

    def definitions(self):
        return {name: self.definition(name) for name in self.names}

    def remove(self):
        for name in self.names:
            self.undefine(name)
        self.conn.close()


class ModuleProcess:
    """One module run in a process of its own, as Ansible runs it; ``result()`` waits for its JSON."""

    def __init__(self, workdir, pythonpath, name, args, tag):
        self.name = name
        argsfile = os.path.join(str(workdir), 'args-%s.json' % tag)
        with open(argsfile, 'w', encoding='utf-8') as handle:
            json.dump({'ANSIBLE_MODULE_ARGS': dict(args, _ansible_check_mode=False, _ansible_diff=False)}, handle)
        environ = dict(os.environ)
        environ['PYTHONPATH'] = os.pathsep.join([str(pythonpath)] + [p for p in environ.get('PYTHONPATH', '').split(
            os.pathsep) if p])
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, '-m', '%s.%s' % (MODULE_PACKAGE, name), argsfile], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(workdir), env=environ)

    def result(self, timeout=600):
        stdout, stderr = self.proc.communicate(timeout=timeout)
        try:
            result = json.loads(stdout)
        except ValueError:
            raise AssertionError('module %s printed no JSON result (rc=%d)\n--- stdout\n%s\n--- stderr\n%s'
                                 % (self.name, self.proc.returncode, stdout, stderr)) from None
        result['rc'] = self.proc.returncode
        return result


def by_domain(result):
    """A manifest result's per-guest entries by guest name."""
    return {entry['domain']: entry for entry in result['results']}
