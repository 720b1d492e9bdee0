# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures for functional tests: the collection's modules against a real libvirt QEMU driver.

* ``libvirtd_uri`` (session): one private libvirtd for the whole session (tests/harness/libvirtd.py),
  stopped at the end. Guests started there outlive the process that started them.
* ``embed_uri``: a fresh ``qemu:///embed?root=...`` root in the test's tmp_path, seeded with the QEMU
  capabilities a session-wide template root probed once (saves 3-8 s per root). One process holds an
  embed root for its whole life, so this test process never opens it: use ``virsh`` (a short-lived
  process) to set up fixtures and ``run_module`` to run modules.
* ``VIRTDEV_QEMU_CAPS_CACHE=DIR`` (set by scripts/test.sh): QEMU probe results are taken from and
  saved to ``DIR/embed`` and ``DIR/libvirtd``, so later sessions skip the probes (~8 s each).
* ``run_module(name, args, check_mode=False, diff=False)``: runs
  ``python -m ansible_collections.virtdev.libvirt.plugins.modules.<name> ARGSFILE`` in a subprocess,
  importing the collection from the working tree (no rebuild needed), and returns the module's JSON
  result (``rc`` added). Raises ``ModuleOutputError`` when the output is not JSON. Runs go through a
  session-wide fork server (tests/functional/module_forkserver.py: the same process semantics without
  Python's and ansible-core's start-up each time) unless ``env`` changes the environment or
  ``VIRTDEV_MODULE_FORKSERVER=0``.
* ``virsh(uri, *args, xml=None, check=True)``: runs ``virsh -c URI ARGS``; ``xml`` is written to a
  file whose path replaces the ``{xml}`` argument. Returns stdout; with ``check=False`` the
  ``CompletedProcess``.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
sys.path.insert(0, str(TESTS))

from harness import embed, libvirtd  # noqa: E402  pylint: disable=wrong-import-position

MODULE_PACKAGE = 'ansible_collections.virtdev.libvirt.plugins.modules'
CAPS_CACHE = os.environ.get('VIRTDEV_QEMU_CAPS_CACHE')


def _caps_cache(kind):
    return os.path.join(CAPS_CACHE, kind) if CAPS_CACHE else None


class ModuleOutputError(AssertionError):
    """A module run did not print a JSON result."""


@pytest.fixture(scope='session')
def collection_pythonpath(tmp_path_factory):
    """A directory that makes ``ansible_collections.virtdev.libvirt`` import from the working tree."""
    view = tmp_path_factory.mktemp('pythonpath')
    link = view / 'ansible_collections' / 'virtdev' / 'libvirt'
    link.parent.mkdir(parents=True)
    link.symlink_to(REPO, target_is_directory=True)
    return view


@pytest.fixture(scope='session')
def libvirtd_dir(tmp_path_factory):
    """Directory of a private libvirtd shared by the whole session (sockets, logs, private state)."""
    directory = str(tmp_path_factory.mktemp('libvirtd'))
    cache = _caps_cache('libvirtd')
    embed.seed_capabilities(cache, libvirtd.capabilities_dir(directory))
    try:
        libvirtd.start(directory)
    except libvirtd.LibvirtdError as exc:
        pytest.fail('cannot start a private libvirtd: %s' % exc)
    try:
        yield directory
    finally:
        libvirtd.stop(directory)
        if cache:
            embed.seed_capabilities(libvirtd.capabilities_dir(directory), cache)


@pytest.fixture(scope='session')
def libvirtd_uri(libvirtd_dir):
    """URI of the session's private libvirtd."""
    return libvirtd.libvirtd_uri(libvirtd_dir)


@pytest.fixture(scope='session')
def embed_template(tmp_path_factory):
    """An embed root that has probed QEMU once; fresh roots copy its capabilities cache."""
    root = str(tmp_path_factory.mktemp('embed-template'))
    cache = _caps_cache('embed')
    embed.seed_capabilities(cache, embed.capabilities_dir(root))
    uri = embed.prepare_embed_root(root)
    proc = subprocess.run(['virsh', '-c', uri, 'capabilities'], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=300, check=False)
    if proc.returncode != 0:
        pytest.fail('the embedded QEMU driver does not work (%s): %s' % (uri, proc.stderr.strip()))
    if cache:
        embed.seed_capabilities(embed.capabilities_dir(root), cache)
    return root


@pytest.fixture
def embed_uri(tmp_path, embed_template):
    """URI of a fresh embedded QEMU driver root in this test's tmp_path."""
    return embed.prepare_embed_root(str(tmp_path / 'embed'), seed_from=embed_template)


def _module_environ(collection_pythonpath, env=None):
    environ = dict(os.environ)
    environ['PYTHONPATH'] = os.pathsep.join(
        [str(collection_pythonpath)] + [p for p in environ.get('PYTHONPATH', '').split(os.pathsep) if p])
    environ.update(env or {})
    return environ


def _same_environ(one, other):
    """Equal but for pytest's PYTEST_CURRENT_TEST (set anew for every test; no module reads it)."""
    ignored = ('PYTEST_CURRENT_TEST',)
    return ({k: v for k, v in one.items() if k not in ignored}
            == {k: v for k, v in other.items() if k not in ignored})


@pytest.fixture(scope='session')
def module_forkserver(tmp_path_factory, collection_pythonpath):
    """The fork server that runs modules for ``run_module`` (None when switched off)."""
    if os.environ.get('VIRTDEV_MODULE_FORKSERVER', '1') in ('0', 'false', 'no'):
        yield None
        return
    import module_forkserver as forkserver  # pylint: disable=import-outside-toplevel,import-error
    server = forkserver.ForkServer(str(tmp_path_factory.mktemp('forkserver')),
                                   _module_environ(collection_pythonpath), 'ansible_collections.virtdev.libvirt')
    yield server
    server.close()


@pytest.fixture
def run_module(tmp_path, collection_pythonpath, module_forkserver):
    counter = itertools.count(1)   # next() is atomic: tests may run modules from several threads

    def run(name, args, check_mode=False, diff=False, timeout=600, env=None):
        argsfile = tmp_path / ('module-args-%d.json' % next(counter))
        module_args = dict(args)
        module_args['_ansible_check_mode'] = check_mode
        module_args['_ansible_diff'] = diff
        argsfile.write_text(json.dumps({'ANSIBLE_MODULE_ARGS': module_args}), encoding='utf-8')
        environ = _module_environ(collection_pythonpath, env)
        module = '%s.%s' % (MODULE_PACKAGE, name)
        if module_forkserver is not None and _same_environ(environ, module_forkserver.env):
            returncode, stdout, stderr = module_forkserver.run(module, str(argsfile), str(tmp_path), timeout)
            proc = subprocess.CompletedProcess([module], returncode, stdout, stderr)
        else:
            proc = subprocess.run([sys.executable, '-m', module, str(argsfile)],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                                  env=environ, cwd=str(tmp_path), check=False)
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            raise ModuleOutputError('module %s printed no JSON result (rc=%d)\n--- stdout\n%s\n--- stderr\n%s'
                                    % (name, proc.returncode, proc.stdout, proc.stderr)) from None
        if not isinstance(result, dict):
            raise ModuleOutputError('module %s printed %r, not a JSON object' % (name, result))
        result['rc'] = proc.returncode
        return result

    return run


@pytest.fixture
def virsh(tmp_path):
    counter = [0]

    def run(uri, *args, xml=None, check=True, timeout=120):
        args = list(args)
        if xml is not None:
            counter[0] += 1
            path = tmp_path / ('virsh-%d.xml' % counter[0])
            path.write_text(xml, encoding='utf-8')
            args = [str(path) if arg == '{xml}' else arg for arg in args]
            if str(path) not in args:
                args.append(str(path))
        proc = subprocess.run(['virsh', '-q', '-c', uri] + args, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, check=False)
        if not check:
            return proc
        if proc.returncode != 0:
            raise AssertionError('virsh -c %s %s failed (rc=%d): %s'
                                 % (uri, ' '.join(args), proc.returncode, proc.stderr.strip()))
        return proc.stdout

    return run


@pytest.fixture(scope='module')
def boot_files(tmp_path_factory):
    """Kernel and initramfs of the live TCG guests (tests/functional/live_guest.py)."""
    import live_guest  # pylint: disable=import-outside-toplevel,import-error
    try:
        return live_guest.build_boot_files(str(tmp_path_factory.mktemp('boot')))
    except live_guest.testbed.TestbedUnavailable as exc:
        pytest.fail('live guests need a kernel and busybox (scripts/bootstrap.sh installs them): %s' % exc)
