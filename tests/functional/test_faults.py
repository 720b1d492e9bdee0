# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Faults while domain_devices writes (docs/concurrency.md, docs/reliability.md).

A private libvirtd of this module's own is killed with SIGKILL in the middle of a 100-guest manifest, and
restarted between tasks; guests are undefined, renamed and edited by another writer between the module's
read and its write (the test holds the guest's lock meanwhile, so the moment is exact, not a race the
test hopes to win). After every fault: each guest's definition is byte-identical to its old or its new
definition, each guest's result says what really happened to it, and a re-run converges.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _guest_lock
from harness import libvirtd  # pylint: disable=import-error
from reliability import Figures, Guests, ModuleProcess, by_domain  # pylint: disable=import-error

GUESTS = 100
# definitions libvirtd has written to disk when it is killed: first guest, middle, last few
KILL_AFTER = (1, 50, 97)
WATCHDOG = "<watchdog model='i6300esb' action='reset'/>"


@pytest.fixture(scope='module')
def figures():
    data = Figures('faults', scenarios=[])
    yield data
    data.save()


@pytest.fixture(scope='module')
def faultd(tmp_path_factory, libvirtd_dir):
    """A private libvirtd these tests may kill (the session's daemon serves the other tests)."""
    directory = str(tmp_path_factory.mktemp('faultd'))
    try:
        uri = libvirtd.start(directory, seed_from=libvirtd_dir)
    except libvirtd.LibvirtdError as exc:
        pytest.fail('cannot start a private libvirtd: %s' % exc)
    try:
        yield directory, uri
    finally:
        libvirtd.stop(directory)


# the guests' data disks: domain_devices refuses a disk whose file is not there (guard source_exists)
IMAGES = tempfile.mkdtemp(prefix='virtdev-faults-images-')


def data_disk(name):
    path = os.path.join(IMAGES, '%s-data.qcow2' % name)
    if not os.path.exists(path):
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', path, '16M'], check=True)
    return path


def devices(index, name):
    """What the manifests declare for guest ``index``: a disk, a NIC and a raw-XML watchdog."""
    return [{'kind': 'disk', 'target': 'vdb', 'format': 'qcow2', 'source': {'file': data_disk(name)}},
            {'kind': 'interface', 'mac': '52:54:00:fa:%02x:%02x' % divmod(index, 256), 'model': 'virtio',
             'source': {'network': 'default'}},
            {'kind': 'xml', 'xml': WATCHDOG}]


def manifest(uri, guests, **extra):
    args = {'uri': uri, 'domains': [{'domain': name, 'config': devices(index, name)}
                                    for index, name in enumerate(guests.names)]}
    args.update(extra)
    return args


def rewritten(directory, before):
    """Guest definitions libvirtd has rewritten on disk since ``before`` (name -> mtime)."""
    qemu = os.path.join(directory, 'root', 'etc', 'libvirt', 'qemu')
    return [name for name, mtime in before.items()
            if _mtime(os.path.join(qemu, name + '.xml')) not in (mtime, None)]


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


def check_outcomes(result, old, now):
    """Each guest's result against its definition now: written means new, not written means old."""
    entries = by_domain(result)
    assert sorted(entries) == sorted(old)
    for name, entry in entries.items():
        if entry['outcome'] == 'written':
            assert entry['changed'] is True and now[name] != old[name], entry
            assert {command['op'] for command in entry['commands']} == {'attach'}, entry
        elif entry['outcome'] == 'not_written':
            assert entry['changed'] is False and entry['commands'] == [] and now[name] == old[name], entry
        else:
            assert entry['outcome'] == 'unknown' and entry['changed'] is True, entry
    return Counter(entry['outcome'] for entry in entries.values())


@pytest.mark.parametrize('kill_after', KILL_AFTER)
def test_daemon_killed_mid_manifest(kill_after, faultd, tmp_path, collection_pythonpath, run_module, figures):
    directory, uri = faultd
    guests = Guests(uri, 'kill%d' % kill_after, GUESTS).connect()
    guests.reset()
    old = guests.definitions()
    qemu = os.path.join(directory, 'root', 'etc', 'libvirt', 'qemu')
    before = {name: _mtime(os.path.join(qemu, name + '.xml')) for name in guests.names}
    run = ModuleProcess(tmp_path, collection_pythonpath, 'domain_devices', manifest(uri, guests), 'killed')
    while run.proc.poll() is None and len(rewritten(directory, before)) < kill_after:
        time.sleep(0.002)
    assert run.proc.poll() is None, 'the manifest finished before libvirtd could be killed'
    libvirtd.crash(directory)
    result = run.result()
    libvirtd.start(directory)
    mid = guests.connect().definitions()

    converge = run_module('domain_devices', manifest(uri, guests))
    assert converge['rc'] == 0, converge.get('msg')
    new = guests.definitions()
    assert run_module('domain_devices', manifest(uri, guests))['changed'] is False

    # every guest is byte-identical to its old or its new definition, never something in between
    torn = [name for name in guests.names if mid[name] not in (old[name], new[name])]
    assert torn == []
    # each guest's result says what really happened to it
    assert result['rc'] != 0 and result['failed'] is True
    assert 'lost the connection' in result['msg']
    outcomes = check_outcomes(result, old, mid)
    assert outcomes['unknown'] <= 1 and outcomes['written'] >= kill_after - 1 and outcomes['not_written'] >= 1
    assert result['changed'] is (outcomes['written'] + outcomes['unknown'] > 0)
    for name, entry in by_domain(result).items():
        if entry['outcome'] == 'written':
            assert mid[name] == new[name]
        elif entry['outcome'] == 'not_written':
            assert entry.get('msg', '').startswith(('not attempted', 'domain %s' % name)), entry
    # the re-run wrote exactly the guests that were not written yet
    assert {name for name, entry in by_domain(converge).items() if entry['changed']} == \
        {name for name in guests.names if mid[name] != new[name]}
    figures.add('faults_injected')
    figures.add('guests_checked', GUESTS)
    figures.append('scenarios', {'name': 'libvirtd killed (SIGKILL) mid-manifest', 'guests': GUESTS,
                                 'killed_after_defines': kill_after, 'outcomes': dict(outcomes), 'torn': len(torn),
                                 'rerun_wrote': sum(1 for e in converge['results'] if e['changed'])})
    guests.remove()


def test_daemon_restarted_between_tasks(faultd, run_module, figures):
    directory, uri = faultd
    guests = Guests(uri, 'restart', 5).connect()
    guests.reset()
    first = run_module('domain_devices', manifest(uri, guests))
    assert first['rc'] == 0 and all(entry['outcome'] == 'written' for entry in first['results'])
    written = guests.definitions()
    libvirtd.stop(directory)
    libvirtd.start(directory)
    again = run_module('domain_devices', manifest(uri, guests))
    assert again['rc'] == 0 and again['changed'] is False
    assert guests.connect().definitions() == written
    more = manifest(uri, guests)
    more['domains'][0]['config'].append({'kind': 'rng', 'backend': '/dev/urandom'})
    changed = run_module('domain_devices', more)
    assert [entry['domain'] for entry in changed['results'] if entry['changed']] == [guests.names[0]]
    figures.add('faults_injected')
    figures.add('guests_checked', len(guests.names))
    figures.append('scenarios', {'name': 'libvirtd restarted between two tasks', 'guests': len(guests.names),
                                 'checked': 'the next task reports no change and the definitions are unchanged; '
                                            'a new change is written to exactly one guest'})
    guests.remove()


class HeldLock:
    """The test holds a guest's lock, so that a module run waits exactly between its read and its write."""

    def __init__(self, uri, uuid):
        self.lock = _guest_lock.GuestLock(_guest_lock.lock_dir(uri), uuid, 'held by the test', 5)

    def __enter__(self):
        self.lock.__enter__()
        return self

    def __exit__(self, *exc):
        return self.lock.__exit__(*exc)


def wait_written(guests, name, timeout=120):
    """Wait until the module has written ``name`` (the guest before the held one)."""
    deadline = time.monotonic() + timeout
    while 'i6300esb' not in guests.definition(name):
        assert time.monotonic() < deadline, 'the module did not write %s' % name
        time.sleep(0.02)


def interrupted_between_read_and_write(faultd, tmp_path, collection_pythonpath, prefix, interfere, **extra):
    """Three guests; the module writes the first, then waits for the second's lock while ``interfere``
    changes the second guest; then the lock is released."""
    _directory, uri = faultd
    guests = Guests(uri, prefix, 3).connect()
    guests.reset()
    old = guests.definitions()
    middle = guests.names[1]
    with HeldLock(uri, guests.uuid(middle)):
        run = ModuleProcess(tmp_path, collection_pythonpath, 'domain_devices', manifest(uri, guests, **extra), prefix)
        wait_written(guests, guests.names[0])
        interfere(guests, middle)
    return guests, old, run.result()


def test_guest_undefined_between_read_and_write(faultd, tmp_path, collection_pythonpath, figures):
    guests, old, result = interrupted_between_read_and_write(
        faultd, tmp_path, collection_pythonpath, 'undef', lambda guests, name: guests.undefine(name),
        on_error='continue')
    first, middle, last = guests.names
    entries = by_domain(result)
    assert result['rc'] != 0
    assert entries[middle]['outcome'] == 'not_written' and entries[middle]['changed'] is False
    assert entries[middle]['msg'] == ('domain %s was undefined while the task ran (after it was read); nothing of it '
                                      'was written' % middle)
    assert entries[first]['outcome'] == entries[last]['outcome'] == 'written'  # on_error=continue went on
    assert result['msg'].startswith('1 of 3 domains failed: domain %s was undefined' % middle)
    assert 'written: %s, %s' % (first, last) in result['msg']
    assert guests.conn.listDefinedDomains().count(middle) == 0  # not re-created by the module
    assert guests.definition(first) != old[first]
    figures.add('faults_injected')
    figures.add('guests_checked', 3)
    figures.append('scenarios', {'name': 'guest undefined between read and write', 'guests': 3,
                                 'checked': 'not written, not re-created, the message names it; on_error=continue '
                                            'writes the others'})
    guests.remove()


def test_guest_renamed_between_read_and_write(faultd, tmp_path, collection_pythonpath, figures):
    renamed = {}

    def rename(guests, name):
        renamed['xml'] = guests.definition(name)
        guests.conn.lookupByName(name).rename(name + '-new', 0)

    guests, old, result = interrupted_between_read_and_write(faultd, tmp_path, collection_pythonpath, 'rename', rename,
                                                             on_error='stop')
    first, middle, last = guests.names
    entries = by_domain(result)
    assert result['rc'] != 0 and result['changed'] is True  # the first guest was written
    assert entries[middle]['msg'] == ('domain %s was renamed to %s-new while the task ran (after it was read); '
                                      'nothing of it was written' % (middle, middle))
    assert entries[middle]['outcome'] == 'not_written'
    # on_error=stop: the guest after it was not attempted, and says so
    assert entries[last]['outcome'] == 'not_written' and entries[last]['changed'] is False
    assert entries[last]['msg'] == 'not attempted: on_error=stop and domain %s failed' % middle
    assert guests.definition(last) == old[last]
    assert guests.definition(middle + '-new') == renamed['xml'].replace(middle, middle + '-new')
    figures.add('faults_injected')
    figures.add('guests_checked', 3)
    figures.append('scenarios', {'name': 'guest renamed between read and write', 'guests': 3,
                                 'checked': 'not written (a name is a name), the message names both names; '
                                            'on_error=stop reports the next guest as not attempted'})
    guests.undefine(middle + '-new')
    guests.remove()


def test_other_writer_between_read_and_write_is_kept(faultd, tmp_path, collection_pythonpath, figures):
    """A writer that does not take the lock (virsh edit, another controller) changes the guest after the
    module read it: the module plans again from the new definition, so both changes survive."""
    def add_sound(guests, name):
        xml = guests.definition(name).replace('</devices>', "<sound model='ich9'/></devices>")
        guests.conn.defineXML(xml)

    guests, _old, result = interrupted_between_read_and_write(faultd, tmp_path, collection_pythonpath, 'other',
                                                              add_sound)
    assert result['rc'] == 0, result.get('msg')
    middle = guests.names[1]
    final = guests.definition(middle)
    assert "<sound model='ich9'>" in final and 'i6300esb' in final and "dev='vdb'" in final
    assert [command['kind'] for command in by_domain(result)[middle]['commands']] == ['disk', 'interface', 'watchdog']
    figures.add('faults_injected')
    figures.add('guests_checked', 3)
    figures.append('scenarios', {'name': 'another writer changed the guest between read and write', 'guests': 3,
                                 'checked': 'planned again from the new definition: both changes are kept'})
    guests.remove()


def test_lock_of_a_dead_holder_is_free(faultd, tmp_path, collection_pythonpath, run_module, figures):
    _directory, uri = faultd
    guests = Guests(uri, 'holder', 1).connect()
    guests.reset()
    name = guests.names[0]
    holder = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, '-c', 'import sys, time; from ansible_collections.virtdev.libvirt.plugins.module_utils import '
         '_guest_lock as g; l = g.GuestLock(g.lock_dir(sys.argv[1]), sys.argv[2], "x", 5); l.__enter__(); '
         'print("held", flush=True); time.sleep(600)', uri, guests.uuid(name)],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(collection_pythonpath)))
    try:
        assert holder.stdout.readline().strip() == 'held'
        timed_out = run_module('domain_devices', dict(manifest(uri, guests), lock_timeout=1))
        assert timed_out['rc'] != 0 and timed_out['changed'] is False
        assert ('domain %s: another run (pid %d) has held its lock' % (name, holder.pid)) in timed_out['msg']
        assert 'nothing of this domain was written' in timed_out['msg']
        run = ModuleProcess(tmp_path, collection_pythonpath, 'domain_devices', manifest(uri, guests), 'dead-holder')
        time.sleep(0.5)
        holder.send_signal(signal.SIGKILL)  # the kernel drops its lock with it
        result = run.result()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    assert result['rc'] == 0 and by_domain(result)[name]['outcome'] == 'written'
    figures.add('faults_injected', 2)
    figures.add('guests_checked', 2)
    figures.append('scenarios', {'name': 'lock holder hangs (timeout), then dies (SIGKILL)', 'guests': 1,
                                 'checked': 'the timeout names the guest and the holder\'s PID and writes nothing; '
                                            'the lock of a killed holder is free'})
    guests.remove()


def test_missing_guest_writes_nothing_or_only_the_others(libvirtd_uri, run_module, figures):
    guests = Guests(libvirtd_uri, 'missing', 3).connect()
    guests.reset()
    old = guests.definitions()
    args = manifest(libvirtd_uri, guests, on_error='stop')
    args['domains'].insert(2, {'domain': 'no-such-guest', 'config': [{'kind': 'rng', 'backend': '/dev/urandom'}]})
    stopped = run_module('domain_devices', args)
    assert stopped['rc'] != 0 and stopped['changed'] is False
    assert guests.definitions() == old
    entries = by_domain(stopped)
    assert [entries[name]['changed'] for name in guests.names] == [False] * 3
    assert [entries[name]['outcome'] for name in guests.names] == ['not_written'] * 3
    assert entries['no-such-guest']['msg'] == "domain 'no-such-guest' is not defined on %s" % libvirtd_uri
    assert {entries[name]['msg'] for name in guests.names} == {
        'not attempted: on_error=stop and domain no-such-guest failed before anything was written'}
    assert 'written: none' in stopped['msg']

    continued = run_module('domain_devices', dict(args, on_error='continue'))
    entries = by_domain(continued)
    assert continued['rc'] != 0 and continued['changed'] is True
    assert [entries[name]['outcome'] for name in guests.names] == ['written'] * 3
    assert continued['msg'].startswith("1 of 4 domains failed: domain 'no-such-guest' is not defined")
    figures.add('guests_checked', 6)
    figures.append('scenarios', {'name': 'a missing guest in a manifest (on_error stop and continue)', 'guests': 4,
                                 'checked': 'stop: nothing written and no guest reported changed; continue: the '
                                            'others written, the task fails naming the missing guest'})
    guests.remove()


def test_libvirt_rejection_names_guest_and_device(libvirtd_uri, run_module, figures):
    guests = Guests(libvirtd_uri, 'reject', 20).connect()
    guests.reset()
    old = guests.definitions()
    args = manifest(libvirtd_uri, guests, on_error='continue')
    bad = guests.names[13]
    args['domains'][13]['config'] = [{'kind': 'xml', 'xml': "<watchdog model='no-such-model'/>"}]
    result = run_module('domain_devices', args)
    entries = by_domain(result)
    entry = entries[bad]
    assert entry['outcome'] == 'not_written' and entry['changed'] is False and entry['failed'] is True
    # libvirt's schema rejection is told per device (the device validated alone, _schema): guest, entry, device
    assert entry['msg'].startswith("domain %s: libvirt's schema refuses domains[13].config[0].xml (watchdog model "
                                   "no-such-model): " % bad), entry['msg']
    assert 'the persistent definition was not changed' in entry['msg']
    assert result['msg'].startswith("1 of 20 domains failed: domain %s: libvirt's schema refuses" % bad)
    assert [name for name, other in entries.items() if other.get('failed')] == [bad]
    assert sum(other['outcome'] == 'written' for other in entries.values()) == 19
    assert guests.definition(bad) == old[bad]
    single = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': bad, 'config': args['domains'][13]['config']})
    assert single['rc'] != 0 and single['changed'] is False and single['outcome'] == 'not_written'
    assert single['restart_required'] is False and single['commands'] == []
    assert single['msg'].startswith("domain %s: libvirt's schema refuses config[0].xml (watchdog" % bad), single['msg']
    figures.add('guests_checked', 21)
    figures.append('scenarios', {'name': 'libvirt rejects one guest of a manifest at define', 'guests': 20,
                                 'checked': 'the message names the guest, the device and its config path; the '
                                            'guest is unchanged; a single-domain failure still returns '
                                            'restart_required'})
    guests.remove()
