# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The tools compared, each a driver that runs one scenario as one separate process tree.

Every driver returns a ``Run``: wall time, the peak RSS of the largest process the tool ran (GNU time's
``%M``, which covers every descendant that was waited for), what the tool reported as changed, the libvirt
calls it made when they can be counted and the write calls it made. The harness adds what it measures
itself (definitions rewritten, correctness).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time

from . import workload as wl

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODULE = 'ansible_collections.virtdev.libvirt.plugins.modules.domain_devices'


class Run:
    def __init__(self):
        self.wall = None
        self.rss_kb = None
        self.cpu = None          # user + system CPU seconds of the tool's processes (not libvirtd's)
        self.changed = None      # bool: did the tool report a change (None: it cannot say)
        self.calls = None        # dict of libvirt calls by name, or None when not countable
        self.writes = None       # write calls (define/attach/update), or None
        self.processes = 1       # client processes started
        self.result_bytes = None  # size of the result the tool returned, as JSON (our module only)
        self.error = ''

    @property
    def total_calls(self):
        return sum(self.calls.values()) if self.calls is not None else None


class Context:
    """Paths and interpreters shared by every driver."""

    def __init__(self, workdir, python, peers_python=None):
        self.workdir = workdir
        self.python = python                  # .venv: ansible-core, libvirt-python, lxml, our collection
        self.peers_python = peers_python      # .venv-bench-peers: the ansible package (community.libvirt)
        self.view = os.path.join(workdir, 'pythonpath')
        link = os.path.join(self.view, 'ansible_collections', 'virtdev', 'libvirt')
        if not os.path.islink(link):
            os.makedirs(os.path.dirname(link), exist_ok=True)
            os.symlink(REPO, link)
        self.counter = 0

    def path(self, name):
        self.counter += 1
        return os.path.join(self.workdir, '%04d-%s' % (self.counter, name))

    def env(self, **extra):
        env = dict(os.environ)
        env.update({'PYTHONPATH': self.view, 'PYTHONDONTWRITEBYTECODE': '1', 'LANG': 'C.UTF-8',
                    'ANSIBLE_HOME': os.path.join(self.workdir, 'ansible-home'), 'ANSIBLE_NOCOLOR': '1',
                    'ANSIBLE_LOCALHOST_WARNING': 'False', 'ANSIBLE_INVENTORY_UNPARSED_WARNING': 'False',
                    'ANSIBLE_PYTHON_INTERPRETER': self.python, 'ANSIBLE_RETRY_FILES_ENABLED': 'False',
                    'ANSIBLE_CALLBACK_PLUGINS': os.path.join(HERE, 'callback'),
                    'ANSIBLE_STDOUT_CALLBACK': 'bench_json'})
        env.update(extra)
        return env


def timed(command, env, stats, timeout=3600):
    """Run ``command`` under GNU time; return (wall s, (peak RSS KiB, CPU s), CompletedProcess)."""
    started = time.monotonic()
    proc = subprocess.run(['/usr/bin/time', '-f', '%M %U %S', '-o', stats] + list(command), env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, check=False)
    wall = time.monotonic() - started
    try:
        with open(stats, encoding='utf-8') as handle:
            rss, user, system = handle.read().strip().splitlines()[-1].split()
        usage = (int(rss), float(user) + float(system))
    except (OSError, ValueError, IndexError):
        usage = (None, None)
    return wall, usage, proc


def _write_json(path, data):
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(data, handle)
    return path


def _add_calls(total, calls):
    for name, count in (calls or {}).items():
        total[name] = total.get(name, 0) + count


def _writes(calls):
    return sum(count for name, count in calls.items() if name in ('define', 'attach', 'detach', 'update'))


class Tool:
    key = ''
    label = ''
    backends = ('embed', 'libvirtd')
    check_mode = True
    ansible = False
    why_not = {}           # backend -> reason the tool cannot run there

    def run(self, ctx, uri, scenario, declared):
        raise NotImplementedError


class Floor(Tool):
    key = 'floor'
    label = '(1) floor: libvirt-python script'

    def run(self, ctx, uri, scenario, declared):
        data = _write_json(ctx.path('floor.json'), {g: [d.xml() for d in devs] for g, devs in declared.items()})
        command = [ctx.python, os.path.join(HERE, 'floor.py'), uri, data] + (['--check'] if scenario == 'check' else [])
        run = Run()
        run.wall, (run.rss_kb, run.cpu), proc = timed(command, ctx.env(), ctx.path('time'))
        if proc.returncode != 0:
            run.error = proc.stderr.strip()[-300:]
            return run
        out = json.loads(proc.stdout)
        run.changed = bool(out['changed'])
        run.calls = out['calls']
        run.writes = _writes(run.calls)
        return run


class ModuleDirect(Tool):
    key = 'module'
    label = '(2m) domain_devices manifest, module process only'

    def run(self, ctx, uri, scenario, declared):
        args = {'ANSIBLE_MODULE_ARGS': {'uri': uri, 'domains': wl.manifest(declared), 'host_checks': False,
                                        '_ansible_check_mode': scenario == 'check', '_ansible_diff': False}}
        argsfile = _write_json(ctx.path('module-args.json'), args)
        run = Run()
        run.wall, (run.rss_kb, run.cpu), proc = timed([ctx.python, '-m', MODULE, argsfile], ctx.env(), ctx.path('time'))
        try:
            out = json.loads(proc.stdout)
        except ValueError:
            run.error = (proc.stdout + proc.stderr).strip()[-300:]
            return run
        if out.get('failed'):
            run.error = out.get('msg', '')[:300]
            return run
        run.changed = bool(out['changed'])
        run.calls = out['libvirt_calls']
        run.writes = _writes(run.calls)
        run.result_bytes = len(proc.stdout.strip().encode('utf-8'))
        return run


class AnsibleTool(Tool):
    ansible = True
    playbook = ''

    def python(self, ctx):
        return ctx.python

    def vars(self, declared):
        return {'bench_manifest': wl.manifest(declared)}

    def run(self, ctx, uri, scenario, declared):
        varsfile = _write_json(ctx.path('vars.json'), self.vars(declared))
        result = ctx.path('result.json')
        ansible_playbook = os.path.join(os.path.dirname(self.python(ctx)), 'ansible-playbook')
        command = [ansible_playbook, '-i', 'localhost,', os.path.join(HERE, 'playbooks', self.playbook),
                   '-e', 'bench_uri=%s' % uri, '-e', 'bench_vars=%s' % varsfile]
        if scenario == 'check':
            command.append('--check')
        run = Run()
        env = ctx.env(BENCH_RESULT_FILE=result, ANSIBLE_COLLECTIONS_PATH=self.collections(ctx))
        run.wall, (run.rss_kb, run.cpu), proc = timed(command, env, ctx.path('time'))
        try:
            with open(result, encoding='utf-8') as handle:
                tasks = json.load(handle)['tasks']
        except (OSError, ValueError, KeyError):
            run.error = (proc.stdout + proc.stderr).strip()[-300:] or 'no result'
            return run
        failed = [t for t in tasks if t['failed']]
        if failed or proc.returncode != 0:
            items = [i for t in failed for i in t.get('items', []) if i['failed']]
            run.error = (items[0]['msg'] if items else failed[0]['msg'] if failed else proc.stderr.strip())[:300]
        run.changed = any(t['changed'] for t in tasks)
        if self.key in ('manifest', 'loop', 'noop'):
            run.result_bytes = sum(t.get('result_bytes') or 0 for t in tasks)
        calls, counted = {}, False
        for task in tasks:
            for item in task.get('items') or [task]:
                if item.get('libvirt_calls') is not None:
                    counted = True
                    _add_calls(calls, item['libvirt_calls'])
        if counted:
            run.calls = calls
            run.writes = _writes(calls)
        return run

    def collections(self, ctx):
        return ctx.view


class ManifestTask(AnsibleTool):
    key = 'manifest'
    label = '(2) domain_devices, `domains:` manifest in one task'
    playbook = 'manifest.yml'


class LoopTask(AnsibleTool):
    key = 'loop'
    label = '(3) domain_devices in an Ansible loop'
    playbook = 'loop.yml'


class FleetTask(AnsibleTool):
    """Not a tool of the comparison: the manifest task on several hypervisors at once (``run_fleet``)."""
    key = 'fleet'
    label = '(2) manifest task on K hypervisors, forks = K'
    playbook = 'fleet.yml'

    def run_fleet(self, ctx, uris, scenario, declared):
        """One ansible-playbook over one inventory host per URI; returns a Run (failed hosts in ``error``)."""
        hosts = {'hv%02d' % index: {'ansible_connection': 'local', 'ansible_python_interpreter': ctx.python,
                                    'bench_uri': uri} for index, uri in enumerate(uris)}
        inventory = _write_json(ctx.path('inventory.json'), {'all': {'hosts': hosts}})
        varsfile = _write_json(ctx.path('vars.json'), self.vars(declared))
        result = ctx.path('result.json')
        command = [os.path.join(os.path.dirname(ctx.python), 'ansible-playbook'), '-i', inventory,
                   '-f', str(len(uris)), os.path.join(HERE, 'playbooks', self.playbook), '-e', 'bench_vars=%s' % varsfile]
        run = Run()
        env = ctx.env(BENCH_RESULT_FILE=result, ANSIBLE_COLLECTIONS_PATH=ctx.view, ANSIBLE_HOST_KEY_CHECKING='False')
        run.wall, (run.rss_kb, run.cpu), proc = timed(command, env, ctx.path('time'))
        try:
            with open(result, encoding='utf-8') as handle:
                tasks = json.load(handle)['tasks']
        except (OSError, ValueError, KeyError):
            run.error = (proc.stdout + proc.stderr).strip()[-300:] or 'no result'
            return run
        failed = [t for t in tasks if t['failed']]
        if failed or proc.returncode != 0 or len(tasks) != len(uris):
            run.error = (failed[0]['msg'] if failed else 'tasks %d of %d hosts: %s' % (
                len(tasks), len(uris), proc.stderr.strip()[-200:]))[:300]
        run.changed = any(t['changed'] for t in tasks)
        run.calls = {}
        for task in tasks:
            _add_calls(run.calls, task.get('libvirt_calls'))
        run.writes = _writes(run.calls)
        run.result_bytes = sum(t.get('result_bytes') or 0 for t in tasks)
        return run


class NoopTask(AnsibleTool):
    """Not a tool: the same manifest through ansible-playbook to a module that does nothing with it; the
    manifest task minus this is the collection's own work."""
    key = 'noop'
    label = 'do-nothing module, same manifest'
    playbook = 'noop.yml'


class StartupTask(AnsibleTool):
    """Not a tool: the fixed cost of one domain_devices task run through ansible-playbook."""
    key = 'startup'
    label = 'module start-up (one task, no connection)'
    playbook = 'startup.yml'


class VirtDefine(AnsibleTool):
    key = 'virt'
    label = '(4) community.libvirt virt define, templated XML, loop'
    playbook = 'virt_define.yml'
    backends = ('libvirtd',)
    why_not = {'embed': 'community.libvirt opens the URI without an event loop; qemu:///embed refuses that'}

    def python(self, ctx):
        return ctx.peers_python

    def collections(self, ctx):
        return os.path.join(ctx.workdir, 'no-collections')  # only the ansible package's own collections

    def vars(self, declared):
        entries = wl.manifest(declared)
        for entry in entries:
            entry['uuid'] = wl.guest_uuid(entry['domain'])
        return {'bench_manifest': entries}


class ShellTool(Tool):
    """A generated bash script; each successful write command prints W, each failed one E."""
    check_mode = False

    def script(self, ctx, uri, scenario, declared):
        raise NotImplementedError

    def run(self, ctx, uri, scenario, declared):
        path = ctx.path('%s.sh' % self.key)
        with open(path, 'w', encoding='utf-8') as handle:
            handle.write('set -u\nURI=%s\n' % shlex.quote(uri))
            handle.write(self.script(ctx, uri, scenario, declared))
        run = Run()
        run.wall, (run.rss_kb, run.cpu), proc = timed(['bash', path], ctx.env(), ctx.path('time'))
        marks = proc.stdout.split()
        run.writes = marks.count('W')
        run.processes = marks.count('P')
        run.changed = run.writes > 0
        errors = marks.count('E')
        if errors:
            run.error = '%d command(s) failed, e.g. %s' % (errors, (proc.stderr.strip().splitlines() or [''])[0][:200])
        return run


def _q(text):
    return shlex.quote(text)


class VirshLoop(ShellTool):
    key = 'virsh'
    label = '(5) shell loop: virsh attach-device --config per device'
    guarded = False

    def script(self, ctx, uri, scenario, declared):
        lines = []
        files = os.path.join(ctx.workdir, 'devices')
        os.makedirs(files, exist_ok=True)
        for guest, devices in declared.items():
            if self.guarded:
                lines.append('echo P; XML=$(virsh -q -c "$URI" dumpxml --inactive %s) || echo E' % _q(guest))
            for device in devices:
                text = device.xml()
                name = os.path.join(files, '%s.xml' % hashlib.sha1(text.encode('utf-8')).hexdigest())
                if not os.path.exists(name):
                    with open(name, 'w', encoding='utf-8') as handle:
                        handle.write(text)
                command = ('echo P; if virsh -q -c "$URI" attach-device {g} {f} --config >/dev/null; then echo W; '
                           'else echo P; if virsh -q -c "$URI" update-device {g} {f} --config >/dev/null; then echo W; '
                           'else echo E; fi; fi').format(g=_q(guest), f=_q(name))
                if self.guarded:
                    command = 'if ! grep -qF -- %s <<<"$XML"; then %s; fi' % (_q(device.grep_marker()), command)
                lines.append(command)
        return '\n'.join(lines) + '\n'


class VirshGuarded(VirshLoop):
    key = 'virsh_guarded'
    label = '(5g) shell loop, guarded: dumpxml once per guest, attach what grep misses'
    guarded = True


class VirtXml(ShellTool):
    key = 'virtxml'
    label = '(6) virt-xml --add-device per device'
    backends = ('libvirtd',)
    check_mode = True
    why_not = {'embed': 'virt-xml cannot open qemu:///embed (no event loop registered)'}

    def script(self, ctx, uri, scenario, declared):
        lines = []
        for guest, devices in declared.items():
            for device in devices:
                if scenario == 'change':
                    if not device.is_changed:
                        continue
                    args = ['--edit', 'target=%s' % device.target, '--disk', 'path=%s' % device.path]
                else:
                    args = ['--add-device'] + device.virt_xml_args()
                if scenario == 'check':
                    args.append('--print-diff')
                command = ' '.join(_q(a) for a in ['virt-xml', '-c', uri, guest] + args)
                lines.append('echo P; if OUT=$(%s 2>&1 </dev/null); then case "$OUT" in *"defined successfully"*) echo W;; esac; '
                             'else echo E; echo "$OUT" >&2; fi' % command)
        return '\n'.join(lines) + '\n'


TOOLS = [Floor(), ManifestTask(), ModuleDirect(), LoopTask(), VirtDefine(), VirshLoop(), VirshGuarded(), VirtXml()]
TOOLS_BY_KEY = {tool.key: tool for tool in TOOLS}
STARTUP = StartupTask()
FLEET = FleetTask()
NOOP = NoopTask()


def peers_python_default():
    candidate = os.path.join(REPO, '.venv-bench-peers', 'bin', 'python')
    return candidate if os.path.exists(candidate) else None


def python_default():
    candidate = os.path.join(REPO, '.venv', 'bin', 'python')
    return candidate if os.path.exists(candidate) else sys.executable
