# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A private libvirtd (plus its own virtlogd) for tests that need guests to outlive a process.

Nothing it does is visible to a system libvirtd:

* its sockets live in DIR (``unix_sock_dir``), no TCP;
* the privileged QEMU driver keeps its state at compiled-in paths (``/etc/libvirt/qemu``,
  ``/var/lib/libvirt``, ``/run/libvirt``, ...) that no configuration option moves, so the daemon runs
  in a private mount namespace (``unshare --mount --propagation private``) where those paths are
  bind mounts of directories below ``DIR/root``; virtlogd runs in the same namespace, so its
  ``/run/libvirt/virtlogd-sock`` is private too;
* its own ``qemu.conf`` runs QEMU as root with no cgroup controllers (nothing is written below
  ``/sys/fs/cgroup``).

The URI is ``qemu:///system?socket=DIR/libvirt-sock``. The first connection probes QEMU (~8 s);
``start`` returns once ``virsh`` gets an answer through the QEMU driver. The probe result is cached
below DIR, so restarting a daemon in the same DIR is fast; ``start(DIR, seed_from=OTHER_DIR)`` copies
the cache of another private daemon (a cache from the embedded driver is not valid here). ``stop`` destroys running
guests, kills any QEMU whose pid file is below ``DIR/root`` and stops both daemons by PID.

Command line::

    python tests/harness/libvirtd.py start DIR [--seed-from OTHER_DIR] [--caps-cache CACHE]  # prints the URI
    python tests/harness/libvirtd.py stop DIR
    python tests/harness/libvirtd.py status DIR

``crash(DIR)`` kills the daemon with SIGKILL (fault-injection tests); ``start(DIR)`` brings it back with
the definitions it had on disk.
"""

from __future__ import annotations

import argparse
import glob
import os
import signal
import subprocess
import sys
import time

try:
    from .embed import seed_capabilities
except ImportError:  # run as a script: tests/harness is sys.path[0]
    from embed import seed_capabilities  # type: ignore[no-redef]  # pylint: disable=import-error

# Paths the privileged daemon and its QEMU driver use; each becomes a private bind mount.
PRIVATE_PATHS = ('/etc/libvirt', '/var/lib/libvirt', '/var/cache/libvirt', '/var/log/libvirt', '/run/libvirt')

QEMU_CONF = '''\
# Written by tests/harness/libvirtd.py for a private libvirtd.
user = "root"
group = "root"
# Keep guests out of the host's cgroups: nothing is written below /sys/fs/cgroup.
cgroup_controllers = [ ]
'''

SOCKET_PATH_MAX = 107  # sun_path is 108 bytes including the terminating NUL


class LibvirtdError(Exception):
    """The private daemon could not be started or stopped."""


def _paths(directory):
    directory = os.path.abspath(directory)
    return {
        'dir': directory,
        'root': os.path.join(directory, 'root'),
        'socket': os.path.join(directory, 'libvirt-sock'),
        'libvirtd_conf': os.path.join(directory, 'libvirtd.conf'),
        'virtlogd_conf': os.path.join(directory, 'virtlogd.conf'),
        'libvirtd_pid': os.path.join(directory, 'libvirtd.pid'),
        'virtlogd_pid': os.path.join(directory, 'virtlogd.pid'),
        'libvirtd_log': os.path.join(directory, 'libvirtd.log'),
        'virtlogd_log': os.path.join(directory, 'virtlogd.log'),
        'console': os.path.join(directory, 'daemon.out'),
    }


def capabilities_dir(directory):
    """Where the private daemon of ``directory`` caches its QEMU probe results."""
    return os.path.join(_paths(directory)['root'], 'var/cache/libvirt/qemu/capabilities')


def libvirtd_uri(directory):
    """The URI of the private daemon whose sockets are in ``directory``."""
    return 'qemu:///system?socket=%s' % _paths(directory)['socket']


def _write(path, text):
    with open(path, 'w', encoding='utf-8') as handle:
        handle.write(text)


def _read_pid(path):
    try:
        with open(path, encoding='utf-8') as handle:
            return int(handle.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _reap(pid):
    """Collect ``pid`` if it is our child and has exited (no zombie left behind)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _alive(pid):
    _reap(pid)
    try:
        with open('/proc/%d/stat' % pid, encoding='utf-8') as handle:
            state = handle.read().rsplit(')', 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ('Z', 'X')


def _exe_name(pid):
    try:
        return os.path.basename(os.readlink('/proc/%d/exe' % pid))
    except OSError:
        return ''


def _pid_of(path, program):
    """The PID recorded in ``path`` if that process is alive and runs ``program``."""
    pid = _read_pid(path)
    if pid and _alive(pid) and _exe_name(pid).startswith(program):
        return pid
    return None


def _terminate(pid, timeout):
    """SIGTERM ``pid``, wait up to ``timeout`` s, then SIGKILL. Returns True if it had to kill."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return False
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return True


def _virsh(uri, *args, timeout=60):
    return subprocess.run(['virsh', '-q', '-c', uri] + list(args), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _tail(path, lines=30):
    try:
        with open(path, encoding='utf-8', errors='replace') as handle:
            return ''.join(handle.readlines()[-lines:])
    except OSError:
        return ''


def is_running(directory):
    """True when the daemon recorded in ``directory`` is alive."""
    return _pid_of(_paths(directory)['libvirtd_pid'], 'libvirtd') is not None


def _configure(paths):
    if len(paths['socket']) > SOCKET_PATH_MAX:
        raise LibvirtdError('socket path %s is longer than %d bytes: use a shorter directory'
                            % (paths['socket'], SOCKET_PATH_MAX))
    for path in PRIVATE_PATHS:
        os.makedirs(os.path.join(paths['root'], path.lstrip('/')), mode=0o755, exist_ok=True)
    os.makedirs(os.path.join(paths['root'], 'etc/libvirt/qemu'), exist_ok=True)
    _write(os.path.join(paths['root'], 'etc/libvirt/qemu.conf'), QEMU_CONF)
    _write(paths['libvirtd_conf'], '\n'.join((
        '# Written by tests/harness/libvirtd.py: a private libvirtd, UNIX sockets only.',
        'unix_sock_dir = "%s"' % paths['dir'],
        'unix_sock_ro_perms = "0700"',
        'unix_sock_rw_perms = "0700"',
        'unix_sock_admin_perms = "0700"',
        'auth_unix_ro = "none"',
        'auth_unix_rw = "none"',
        'log_outputs = "3:file:%s"' % paths['libvirtd_log'],
        '',
    )))
    _write(paths['virtlogd_conf'], '\n'.join((
        '# Written by tests/harness/libvirtd.py.',
        'log_outputs = "3:file:%s"' % paths['virtlogd_log'],
        '',
    )))


def _inner(directory):
    """Runs inside the new mount namespace: make the private bind mounts, start virtlogd, exec libvirtd."""
    paths = _paths(directory)
    for path in PRIVATE_PATHS:
        source = os.path.join(paths['root'], path.lstrip('/'))
        # The mount point must exist; on a host without libvirt-daemon-system it may not.
        os.makedirs(path, mode=0o755, exist_ok=True)
        subprocess.run(['mount', '--bind', source, path], check=True)
    subprocess.run(['virtlogd', '--daemon', '--config', paths['virtlogd_conf'], '--pid-file', paths['virtlogd_pid']],
                   check=True)
    os.execvp('libvirtd', ['libvirtd', '--config', paths['libvirtd_conf'], '--pid-file', paths['libvirtd_pid']])


def start(directory, timeout=120, seed_from=None):
    """Start a private libvirtd with its state in ``directory`` (created if needed); return its URI.

    Does nothing but return the URI when that daemon is already running. ``seed_from``: the directory
    of another private daemon whose QEMU capabilities cache is copied in.
    """
    paths = _paths(directory)
    uri = libvirtd_uri(directory)
    os.makedirs(paths['dir'], mode=0o700, exist_ok=True)
    if is_running(directory):
        return uri
    _configure(paths)
    if seed_from:
        seed_capabilities(capabilities_dir(seed_from), capabilities_dir(directory))
    for stale in (paths['libvirtd_pid'], paths['virtlogd_pid']):
        if os.path.exists(stale):
            os.unlink(stale)
    with open(paths['console'], 'ab') as console:
        # unshare without --fork execs its command, and _inner execs libvirtd: proc.pid is libvirtd's PID.
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            ['unshare', '--mount', '--propagation', 'private', '--',
             sys.executable, os.path.abspath(__file__), '_inner', paths['dir']],
            stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            stop(directory)
            raise LibvirtdError('libvirtd exited with status %s during start-up\n%s\n%s'
                                % (proc.returncode, _tail(paths['console']), _tail(paths['libvirtd_log'])))
        if os.path.exists(paths['socket']):
            # 'version' goes through the QEMU driver, so it also waits for the first QEMU probe.
            try:
                last = _virsh(uri, 'version', timeout=max(1, int(deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                break
            if last.returncode == 0:
                return uri
        time.sleep(0.2)
    stop(directory)
    raise LibvirtdError('libvirtd did not answer on %s within %d s: %s\n%s'
                        % (uri, timeout, last.stderr.strip() if last else 'no socket', _tail(paths['libvirtd_log'])))


def _qemu_pids(paths):
    pids = []
    for pidfile in glob.glob(os.path.join(paths['root'], 'run/libvirt/qemu/*.pid')):
        pid = _read_pid(pidfile)
        if pid and _alive(pid) and _exe_name(pid).startswith('qemu-'):
            pids.append(pid)
    return pids


def stop(directory, timeout=30):
    """Stop the private daemon of ``directory``: destroy its guests, then stop QEMU, libvirtd, virtlogd.

    Returns a list of what was stopped; does nothing when nothing runs.
    """
    paths = _paths(directory)
    stopped = []
    libvirtd_pid = _pid_of(paths['libvirtd_pid'], 'libvirtd')
    if libvirtd_pid and os.path.exists(paths['socket']):
        uri = libvirtd_uri(directory)
        try:
            running = _virsh(uri, 'list', '--name', '--state-running', timeout=timeout)
            for name in running.stdout.split():
                _virsh(uri, 'destroy', name, timeout=timeout)
                stopped.append('guest %s' % name)
        except subprocess.TimeoutExpired:
            pass
    for pid in _qemu_pids(paths):
        _terminate(pid, 5)
        stopped.append('qemu %d' % pid)
    if libvirtd_pid:
        _terminate(libvirtd_pid, timeout)
        stopped.append('libvirtd %d' % libvirtd_pid)
    virtlogd_pid = _pid_of(paths['virtlogd_pid'], 'virtlogd')
    if virtlogd_pid:
        _terminate(virtlogd_pid, timeout)
        stopped.append('virtlogd %d' % virtlogd_pid)
    return stopped


def crash(directory, timeout=10):
    """SIGKILL the private libvirtd of ``directory`` (a daemon crash: no clean-up of any kind), then stop
    its virtlogd by PID so that ``start`` brings both up again in a fresh namespace. Returns the PID killed."""
    paths = _paths(directory)
    pid = _pid_of(paths['libvirtd_pid'], 'libvirtd')
    if pid is None:
        raise LibvirtdError('no libvirtd runs for %s' % directory)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    virtlogd_pid = _pid_of(paths['virtlogd_pid'], 'virtlogd')
    if virtlogd_pid:
        _terminate(virtlogd_pid, timeout)
    return pid


def main(argv=None):
    parser = argparse.ArgumentParser(description='Start or stop a private libvirtd.')
    parser.add_argument('command', choices=('start', 'stop', 'status', 'uri', '_inner'))
    parser.add_argument('directory')
    parser.add_argument('--timeout', type=int, default=120)
    parser.add_argument('--seed-from', metavar='DIR', help='copy the QEMU capabilities cache of this daemon directory')
    parser.add_argument('--caps-cache', metavar='CACHE',
                        help='seed from this capabilities directory and save the probe result back to it')
    args = parser.parse_args(argv)
    try:
        if args.command == '_inner':
            _inner(args.directory)
        elif args.command == 'start':
            if args.caps_cache:
                os.makedirs(os.path.abspath(args.directory), mode=0o700, exist_ok=True)
                seed_capabilities(args.caps_cache, capabilities_dir(args.directory))
            uri = start(args.directory, timeout=args.timeout, seed_from=args.seed_from)
            if args.caps_cache:
                seed_capabilities(capabilities_dir(args.directory), args.caps_cache)
            print(uri)
        elif args.command == 'stop':
            for item in stop(args.directory):
                print('stopped %s' % item)
        elif args.command == 'status':
            running = is_running(args.directory)
            print('running' if running else 'stopped')
            return 0 if running else 3
        else:
            print(libvirtd_uri(args.directory))
    except LibvirtdError as exc:
        print('error: %s' % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
