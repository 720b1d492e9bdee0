# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs the collection's modules as ``python -m PACKAGE.MODULE ARGSFILE`` would, without paying Python's and
ansible-core's start-up (~0.4 s of CPU) on every run: a server process imports ansible-core's module_utils,
libvirt, lxml and the collection's module_utils once, then forks one child per run. The child is a new
process as far as the module can tell: its own PID, working directory, standard streams (files), argv,
``sys.path[0]`` and exit status, signal handlers back to Python's defaults; the module itself is executed
fresh as ``__main__`` (runpy, as ``-m`` does). The server never opens a libvirt connection, runs no module
and starts no thread, so every child starts from the same untouched state (Python reseeds ``random`` and
``tempfile`` after a fork; libvirt seeds its own random generator on first use, in the child).

A run whose environment differs from the server's is not sent here (conftest.py runs it in a plain
subprocess): some libraries read the environment when they are imported.

Protocol (one Unix socket connection per run): the client sends one JSON line ``{module, argsfile, cwd,
stdout, stderr}``; the child answers ``{"pid": N}`` when it starts and ``{"rc": N}`` when the module is done.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sys
import time

PRELOAD = ('ansible.module_utils.basic', 'libvirt', 'lxml.etree')


def _preload(package):
    """Import what every module run needs; the modules themselves are left to runpy (as ``-m`` runs them)."""
    import importlib  # pylint: disable=import-outside-toplevel
    import pkgutil  # pylint: disable=import-outside-toplevel
    for name in PRELOAD:
        importlib.import_module(name)
    utils = importlib.import_module(package + '.plugins.module_utils')
    for info in pkgutil.walk_packages(utils.__path__, utils.__name__ + '.'):
        importlib.import_module(info.name)


def _child(conn, request):
    """In the forked child: become the module's process, run it, report its exit status."""
    import runpy  # pylint: disable=import-outside-toplevel
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    conn.sendall(json.dumps({'pid': os.getpid()}).encode() + b'\n')
    os.chdir(request['cwd'])
    devnull = os.open(os.devnull, os.O_RDONLY)
    out = os.open(request['stdout'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open(request['stderr'], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    for source, target in ((devnull, 0), (out, 1), (err, 2)):
        os.dup2(source, target)
        os.close(source)
    sys.argv = ['-m', request['argsfile']]
    sys.path[0] = request['cwd']   # as with python -m: the working directory first
    rc = 0
    try:
        runpy.run_module(request['module'], run_name='__main__', alter_sys=True)
    except SystemExit as exc:
        code = exc.code
        if code is None:
            rc = 0
        elif isinstance(code, int):
            rc = code
        else:
            print(code, file=sys.stderr)
            rc = 1
    except BaseException:  # pylint: disable=broad-except
        import traceback  # pylint: disable=import-outside-toplevel
        traceback.print_exc()
        rc = 1
    try:
        import atexit  # pylint: disable=import-outside-toplevel
        atexit._run_exitfuncs()  # pylint: disable=protected-access  # what the interpreter does at exit
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        try:
            conn.sendall(json.dumps({'rc': rc}).encode() + b'\n')
        finally:
            os._exit(rc)  # pylint: disable=protected-access


def serve(socket_path, package):
    _preload(package)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # children are reaped by the kernel
    print('ready', flush=True)
    while True:
        conn, _addr = server.accept()
        try:
            request = json.loads(conn.makefile('rb').readline())
        except ValueError:
            conn.close()
            continue
        if os.fork() == 0:
            server.close()
            try:
                _child(conn, request)
            finally:
                os._exit(70)  # pylint: disable=protected-access
        conn.close()


class ForkServer:
    """Client side: ``run(module, argsfile, cwd, timeout)`` -> (rc, stdout, stderr) like subprocess.run."""

    def __init__(self, directory, env, package):
        self.directory = directory
        self.socket_path = os.path.join(directory, 'forkserver.sock')
        self.env = env
        self.runs = itertools.count()
        import subprocess  # pylint: disable=import-outside-toplevel
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [sys.executable, os.path.abspath(__file__), self.socket_path, package], env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, cwd=directory)
        line = self.proc.stdout.readline()
        if line.strip() != b'ready':
            self.proc.kill()
            raise RuntimeError('the module fork server did not start')

    def run(self, module, argsfile, cwd, timeout):
        import subprocess  # pylint: disable=import-outside-toplevel
        # the streams go to files of the server's directory (not the test's), removed once read
        run = next(self.runs)
        out, err = (os.path.join(self.directory, 'run-%d.%s' % (run, stream)) for stream in ('stdout', 'stderr'))
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        pid = None
        try:
            conn.connect(self.socket_path)
            conn.sendall(json.dumps({'module': module, 'argsfile': argsfile, 'cwd': cwd, 'stdout': out,
                                     'stderr': err}).encode() + b'\n')
            reader = conn.makefile('rb')
            pid = json.loads(reader.readline())['pid']
            line = reader.readline()
            rc = json.loads(line)['rc'] if line else -signal.SIGKILL   # died without a word: killed
            reader.read()   # EOF: the child is exiting
            # like subprocess.run, return once the process is gone: until then it may still hold what it
            # locked (an embed root's driver.pid); the server reaps it at once (SIGCHLD ignored)
            while True:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.002)
        except socket.timeout:
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            raise subprocess.TimeoutExpired([module, argsfile], timeout) from None
        finally:
            conn.close()
        with open(out, encoding='utf-8', errors='replace') as stdout, open(err, encoding='utf-8', errors='replace') as stderr:
            result = rc, stdout.read(), stderr.read()
        os.unlink(out)
        os.unlink(err)
        return result

    def close(self):
        self.proc.kill()
        self.proc.wait()


if __name__ == '__main__':
    serve(sys.argv[1], sys.argv[2])
