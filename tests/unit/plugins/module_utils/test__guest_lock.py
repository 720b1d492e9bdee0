# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-guest locks between real processes (docs/concurrency.md)."""

from __future__ import annotations

import io
import multiprocessing
import os
import time

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _guest_lock as locks

UUID = '6C1F3C3E-8A55-4E59-9A3C-0D6A2F1B7E01'


def hold(directory, seconds, ready, log=None):
    with locks.GuestLock(directory, UUID, 'web01', 30):
        if log is not None:
            with open(log, 'a', encoding='utf-8') as handle:
                handle.write('in %d\n' % os.getpid())
        ready.set()
        time.sleep(seconds)
        if log is not None:
            with open(log, 'a', encoding='utf-8') as handle:
                handle.write('out %d\n' % os.getpid())


def start_holder(directory, seconds, log=None):
    ready = multiprocessing.Event()
    process = multiprocessing.Process(target=hold, args=(directory, seconds, ready, log))
    process.start()
    assert ready.wait(30)
    return process


def test_lock_dir_follows_the_uri():
    assert locks.lock_dir('qemu:///embed?root=/srv/vm') == '/srv/vm/virtdev-locks'
    # every other URI shares one directory: the key is the domain's UUID, whatever URI reaches it
    assert locks.lock_dir('qemu:///system') == locks.lock_dir('qemu+ssh://host/system')


def test_waits_for_the_holder_and_never_overlaps(tmp_path):
    directory, log = str(tmp_path / 'locks'), str(tmp_path / 'log')
    holders = [start_holder(directory, 0.3, log)]
    holders += [multiprocessing.Process(target=hold, args=(directory, 0.1, multiprocessing.Event(), log))
                for _other in range(3)]
    for process in holders[1:]:
        process.start()
    for process in holders:
        process.join(60)
        assert process.exitcode == 0
    with open(log, encoding='utf-8') as handle:
        lines = [line.split() for line in handle]
    # in, out, in, out, ... each pair by one process: two processes never held the lock at once
    assert [event for event, _pid in lines] == ['in', 'out'] * 4
    assert all(lines[i][1] == lines[i + 1][1] for i in range(0, 8, 2))
    assert not os.path.exists(locks.lock_path(directory, UUID))  # the last holder removed the file


def test_timeout_names_the_guest_the_holder_and_the_file(tmp_path):
    directory = str(tmp_path / 'locks')
    holder = start_holder(directory, 5)
    try:
        started = time.monotonic()
        with pytest.raises(locks.LockError) as caught:
            with locks.GuestLock(directory, UUID, 'web01', 0.3):
                pass
        assert 0.3 <= time.monotonic() - started < 5
        assert str(caught.value) == ('domain web01: another run (pid %d) has held its lock %s for more than 0.3 s; '
                                     'nothing of this domain was written'
                                     % (holder.pid, locks.lock_path(directory, UUID)))
    finally:
        holder.terminate()
        holder.join()


def test_a_dead_holder_frees_the_lock(tmp_path):
    directory = str(tmp_path / 'locks')
    holder = start_holder(directory, 60)
    holder.kill()   # SIGKILL: no clean-up; the kernel drops the lock
    holder.join()
    assert os.path.exists(locks.lock_path(directory, UUID))
    with locks.GuestLock(directory, UUID, 'web01', 5):
        pass
    assert not os.path.exists(locks.lock_path(directory, UUID))


def test_a_directory_others_can_write_to_is_refused(tmp_path):
    directory = tmp_path / 'locks'
    directory.mkdir(mode=0o700)
    directory.chmod(0o777)
    with pytest.raises(locks.LockError, match='refusing the lock directory'):
        with locks.GuestLock(str(directory), UUID, 'web01', 1):
            pass


def test_a_symlinked_lock_file_is_refused(tmp_path):
    directory = tmp_path / 'locks'
    directory.mkdir(mode=0o700)
    target = tmp_path / 'victim'
    target.write_text('keep me', encoding='utf-8')
    os.symlink(str(target), locks.lock_path(str(directory), UUID))
    with pytest.raises(locks.LockError, match='cannot open its lock file'):
        with locks.GuestLock(str(directory), UUID, 'web01', 1):
            pass
    assert target.read_text(encoding='utf-8') == 'keep me'


def test_the_holder_is_named_from_the_kernels_table_of_locks(tmp_path, monkeypatch):
    directory = str(tmp_path / 'locks')
    os.makedirs(directory)
    path = locks.lock_path(directory, UUID)
    with open(path, 'w', encoding='ascii'):
        pass
    info = os.stat(path)
    device = '%02x:%02x' % (os.major(info.st_dev), os.minor(info.st_dev))
    table = {'text': ''}
    real_open = open
    monkeypatch.setattr(locks, 'open', lambda name, *args, **kwargs: io.StringIO(table['text']) if name == '/proc/locks'
                        else real_open(name, *args, **kwargs), raising=False)
    lock = locks.GuestLock(directory, UUID, 'web01', 1)
    file_id = '%s:%d' % (device, info.st_ino)
    table['text'] = ('1: POSIX  ADVISORY  WRITE 11 %s 0 EOF\n2: FLOCK  ADVISORY  WRITE 4321 %s 0 EOF\n'
                     '2: -> FLOCK  ADVISORY  WRITE 99 %s 0 EOF\n' % (file_id, file_id, file_id))
    assert lock._holder() == 'pid 4321'  # pylint: disable=protected-access
    # a stacked filesystem may show another device there: the inode alone decides when it is unambiguous
    table['text'] = '1: FLOCK  ADVISORY  WRITE 777 00:2a:%d 0 EOF\n' % info.st_ino
    assert lock._holder() == 'pid 777'  # pylint: disable=protected-access
    table['text'] = '1: FLOCK  ADVISORY  WRITE 1 00:2a:%d 0 EOF\n2: FLOCK  ADVISORY  WRITE 2 00:2b:%d 0 EOF\n' % (
        info.st_ino, info.st_ino)
    assert lock._holder() == 'pid unknown'  # pylint: disable=protected-access
