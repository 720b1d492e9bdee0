# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the benchmark: every (backend, N, M) block, every tool, every scenario; return result rows.

Per block the guests are defined bare, then each tool runs, in an order that alternates from block to
block (forward, then reversed), the scenarios check -> first -> nochange -> change:

* check and first start from bare guests, change from the reference applied state (bare guests plus the
  declared device XML, defined by the harness), nochange from whatever the tool's own first apply left;
* before and after each run the persistent definition files are fingerprinted (inode, mtime, size): a
  define, attach --config or update --config rewrites the file, so "definitions rewritten" is measured the
  same way for every tool, whatever the tool says;
* the rewritten files are then parsed and the managed devices compared with the declaration (correct).

Tools too slow to run on every guest within the time budget run on the first k guests of the N defined
ones (``sample``); their wall time is then scaled: fixed cost + (wall - fixed cost) x N / k, where the fixed
cost is the same tool run on zero guests. Scaled rows are marked.
"""

from __future__ import annotations

import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import time

from . import tools as tl
from . import workload as wl

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(tl.REPO, 'tests'))
from harness import embed as embed_harness  # noqa: E402  pylint: disable=wrong-import-position,import-error
from harness import libvirtd as libvirtd_harness  # noqa: E402  pylint: disable=wrong-import-position,import-error


class Backend:
    def __init__(self, name, directory, caps_cache):
        self.name = name
        self.directory = directory
        self.caps_cache = caps_cache
        self.uri = None

    def start(self):
        if self.name == 'embed':
            cache = os.path.join(self.caps_cache, 'embed') if self.caps_cache else None
            embed_harness.seed_capabilities(cache, embed_harness.capabilities_dir(self.directory))
            self.uri = embed_harness.prepare_embed_root(self.directory)
            embed_harness.probe(self.directory)
            if cache:
                embed_harness.seed_capabilities(embed_harness.capabilities_dir(self.directory), cache)
            self.defs = os.path.join(self.directory, 'etc', 'qemu')
        else:
            cache = os.path.join(self.caps_cache, 'libvirtd') if self.caps_cache else None
            os.makedirs(self.directory, exist_ok=True)
            embed_harness.seed_capabilities(cache, libvirtd_harness.capabilities_dir(self.directory))
            self.uri = libvirtd_harness.start(self.directory)
            if cache:
                embed_harness.seed_capabilities(libvirtd_harness.capabilities_dir(self.directory), cache)
            self.defs = os.path.join(self.directory, 'root', 'etc', 'libvirt', 'qemu')
        return self.uri

    def stop(self):
        if self.name == 'libvirtd':
            libvirtd_harness.stop(self.directory)

    def definition(self, guest):
        return os.path.join(self.defs, guest + '.xml')


def fingerprint(backend, guests):
    result = {}
    for guest in guests:
        try:
            st = os.stat(backend.definition(guest))
            result[guest] = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            result[guest] = None
    return result


def define_all(ctx, backend, definitions):
    path = ctx.path('state.json')
    with open(path, 'w', encoding='utf-8') as handle:
        json.dump(definitions, handle)
    proc = subprocess.run([ctx.python, os.path.join(HERE, 'state.py'), backend.uri, path], env=ctx.env(),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise RuntimeError('could not define the benchmark guests on %s: %s' % (backend.uri, proc.stderr[-500:]))


def check_correct(backend, declared):
    """(number of guests whose definition holds exactly the declared devices, first problem)."""
    good, problem = 0, ''
    for guest, devices in declared.items():
        reason = wl.compare(wl.expected_signature(devices), wl.signature(wl.parse_definition(backend.definition(guest))))
        if reason:
            problem = problem or '%s: %s' % (guest, reason)
        else:
            good += 1
    return good, problem


class Plan:
    """What to run: sizes, devices, backends, tools, and how many guests each tool may touch."""

    def __init__(self, sizes, devices, backends, tools, samples=None, extra_blocks=(), repeat=1,
                 skip=None, profile_n=None, fleet=(), fleet_n=100, fleet_repeat=3):
        self.sizes = sorted(sizes)
        self.devices = devices
        self.backends = backends
        self.tools = tools
        self.samples = samples or {}       # (tool, backend) -> max guests, or (tool, backend, N) -> max
        self.extra_blocks = list(extra_blocks)  # (backend, N, M, [tools]) for the growth-in-M rows
        self.repeat = repeat
        self.skip = skip or {}             # (tool, backend, N) -> reason the tool is left out of that block
        self.profile_n = profile_n         # N of the cProfile runs of the module (embed), or None
        self.fleet = sorted(fleet)         # numbers of hypervisors K of the fleet rows (none: no fleet)
        self.fleet_n = fleet_n             # guests per hypervisor in the fleet rows
        self.fleet_repeat = fleet_repeat   # rounds per fleet measurement (the median is reported)

    def blocks(self):
        for backend in self.backends:
            for size in self.sizes:
                yield backend, size, self.devices, list(self.tools)
        for block in self.extra_blocks:
            if block[0] in self.backends:
                yield block

    def sample(self, tool, backend, size):
        cap = self.samples.get((tool, backend, size), self.samples.get((tool, backend)))
        return min(size, cap) if cap else size


def run_tool(ctx, backend, load, tool, sample, repeat, log):
    """All scenarios of one tool on one block; returns rows."""
    guests = load.guests[:sample]
    rows = []
    bare = {g: wl.bare_xml(g) for g in load.guests}
    applied = {g: load.full_xml(g) for g in guests}
    fixed = None
    if sample < len(load.guests):
        # the same tool on zero guests: what does not grow with N (interpreter, ansible-playbook, ...)
        fixed = min(tool.run(ctx, backend.uri, 'first', {}).wall for _attempt in range(2))
    for scenario in wl.SCENARIOS:
        if scenario == 'check' and not tool.check_mode:
            rows.append({'scenario': scenario, 'skipped': 'no check mode'})
            continue
        runs = []
        for _attempt in range(repeat):
            if scenario in ('check', 'first'):
                define_all(ctx, backend, bare)
            elif scenario == 'change' or (scenario == 'nochange' and _attempt > 0):
                define_all(ctx, backend, applied)
            declared = load.declared(scenario, guests)
            before = fingerprint(backend, load.guests)
            run = tool.run(ctx, backend.uri, scenario, declared)
            after = fingerprint(backend, load.guests)
            runs.append((run, before, after))
        runs.sort(key=lambda r: r[0].wall)
        run, before, after = runs[len(runs) // 2]
        rewritten = sum(1 for g in load.guests if before[g] != after[g])
        expected = declared if scenario != 'check' else {g: [] for g in guests}
        good, problem = check_correct(backend, expected)
        row = {'scenario': scenario, 'wall': run.wall, 'cpu': run.cpu, 'load': os.getloadavg()[0],
               'walls': sorted(r[0].wall for r in runs), 'rss_kb': run.rss_kb,
               'changed': run.changed, 'calls': run.calls, 'total_calls': run.total_calls, 'writes': run.writes,
               'processes': run.processes, 'rewritten': rewritten, 'correct': good, 'checked': len(guests),
               'problem': problem, 'error': run.error, 'sample': sample, 'fixed': fixed,
               'result_bytes': run.result_bytes}
        if fixed is not None:
            scale = len(load.guests) / float(sample)
            row['scaled_wall'] = fixed + max(0.0, run.wall - fixed) * scale
            row['scaled_rewritten'] = rewritten * scale
            if run.writes is not None:
                row['scaled_writes'] = run.writes * scale
        rows.append(row)
        log('    %-14s %-9s %7.2fs rss=%sMB changed=%s writes=%s rewritten=%d correct=%d/%d %s%s' % (
            tool.key, scenario, run.wall, (run.rss_kb or 0) // 1024, run.changed, run.writes, rewritten, good,
            len(guests), problem[:80], (' ERROR ' + run.error[:120]) if run.error else ''))
    return rows


def measure_noop(ctx, backend, load, repeat=3):
    """The manifest of the no-change run through ansible-playbook to a module that does nothing (median of
    ``repeat``): Ansible's own cost of shipping that manifest, the baseline of the targets."""
    runs = sorted((tl.NOOP.run(ctx, backend.uri, 'nochange', load.declared('nochange')) for _attempt in range(repeat)),
                  key=lambda run: run.wall)
    run = runs[len(runs) // 2]
    if run.error:
        raise RuntimeError('the do-nothing module failed: %s' % run.error)
    return {'tool': 'noop', 'scenario': 'nochange', 'wall': run.wall, 'cpu': run.cpu, 'load': os.getloadavg()[0],
            'walls': [r.wall for r in runs], 'rss_kb': run.rss_kb, 'result_bytes': run.result_bytes}


def measure_startup(ctx, repeat=3):
    walls = []
    for _attempt in range(repeat):
        run = tl.STARTUP.run(ctx, 'test:///default', 'first', {})
        if run.error:
            raise RuntimeError('the start-up playbook failed: %s' % run.error)
        walls.append(run.wall)
    return sorted(walls)[len(walls) // 2]


def environment():
    def version(command):
        try:
            return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60).stdout.strip()
        except OSError:
            return 'not installed'
    return {
        'host': '%s, %d cores, %s' % (platform.machine(), os.cpu_count() or 0, platform.platform()),
        'python': platform.python_version(),
        'libvirt': version(['libvirtd', '--version']).split()[-1] if shutil.which('libvirtd') else 'absent',
        'qemu': (version(['qemu-system-x86_64', '--version']).splitlines() or ['?'])[0],
        'virt-xml': version(['virt-xml', '--version']),
        'commit': '%s%s' % (version(['git', '-C', tl.REPO, 'rev-parse', '--short', 'HEAD']),
                            ' (plugins/ modified)' if version(['git', '-C', tl.REPO, 'status', '--porcelain', '--',
                                                              'plugins']) else ''),
    }


def run_plan(plan, workdir, python, peers_python, caps_cache, log=print):
    os.makedirs(workdir, exist_ok=True)
    ctx = tl.Context(workdir, python, peers_python)
    started = time.monotonic()
    results = {'env': environment(), 'rows': [], 'startup': None, 'notes': [], 'devices': plan.devices,
               'sizes': plan.sizes, 'repeat': plan.repeat}
    results['startup'] = measure_startup(ctx)
    log('module start-up through ansible-playbook: %.2fs' % results['startup'])
    for number, (backend_name, size, devices, tool_keys) in enumerate(plan.blocks()):
        load = wl.Workload(size, devices, os.path.join(workdir, 'images'))
        results.setdefault('mix', load.class_mix())
        load.make_images()
        backend = Backend(backend_name, os.path.join(workdir, '%s-%d-%d' % (backend_name[:2], size, devices)), caps_cache)
        t0 = time.monotonic()
        backend.start()
        log('[%s N=%d M=%d] %s (ready in %.1fs)' % (backend_name, size, devices, backend.uri, time.monotonic() - t0))
        try:
            define_all(ctx, backend, {g: wl.bare_xml(g) for g in load.guests})
            order = tool_keys if number % 2 == 0 else list(reversed(tool_keys))
            if 'manifest' in tool_keys:
                # a median of three for the documented sizes; once for the smoke run (CI time)
                results['rows'].append(dict(measure_noop(ctx, backend, load, repeat=3 if size >= 50 else 1),
                                            backend=backend_name, n=size, m=devices))
            for key in order:
                tool = tl.TOOLS_BY_KEY[key]
                base = {'backend': backend_name, 'n': size, 'm': devices, 'tool': key, 'label': tool.label}
                reason = tool.why_not.get(backend_name) if backend_name not in tool.backends else None
                reason = reason or plan.skip.get((key, backend_name, size))
                if key == 'virt' and not peers_python:
                    reason = 'peers venv (.venv-bench-peers) not installed'
                if reason:
                    results['rows'].append(dict(base, skipped=reason))
                    log('    %-14s skipped: %s' % (key, reason))
                    continue
                for row in run_tool(ctx, backend, load, tool, plan.sample(key, backend_name, size), plan.repeat, log):
                    results['rows'].append(dict(base, **row))
        finally:
            backend.stop()
            if backend_name == 'embed':
                shutil.rmtree(backend.directory, ignore_errors=True)
    if plan.fleet:
        results['fleet'] = run_fleet(ctx, plan.fleet, plan.fleet_n, plan.devices, workdir, caps_cache, log,
                                     plan.fleet_repeat)
    if plan.profile_n:
        results['profile'] = profile_module(ctx, plan.profile_n, plan.devices, workdir, caps_cache, log)
    results['runtime'] = time.monotonic() - started
    return results


FLEET_SCENARIOS = ('first', 'nochange')


def run_fleet(ctx, counts, size, devices, workdir, caps_cache, log=print, repeat=3):
    """Fleet rows: K = each of ``counts`` private libvirtds (one per inventory host, each its own socket and
    ``size`` guests), one ansible-playbook with forks = K, first apply then no-change. Each host is also run
    alone (same playbook, one host): a fleet row compares its wall time with the slowest of its hosts alone.
    Every measurement (a host alone, a fleet row) is the median of ``repeat`` rounds, each from bare guests: a
    single run of a few seconds varies by more than the 1.3 x the targets allow."""
    load = wl.Workload(size, devices, os.path.join(workdir, 'images'))
    load.make_images()
    bare = {g: wl.bare_xml(g) for g in load.guests}
    backends = [Backend('libvirtd', os.path.join(workdir, 'fl%d' % index), caps_cache) for index in range(max(counts))]
    rows, alone = [], {scenario: [] for scenario in FLEET_SCENARIOS}

    def converge(hosts, scenario):
        before = [fingerprint(b, load.guests) for b in hosts]
        run = tl.FLEET.run_fleet(ctx, [b.uri for b in hosts], scenario, load.declared(scenario))
        rewritten = sum(1 for b, old in zip(hosts, before) for g, now in fingerprint(b, load.guests).items()
                        if old[g] != now)
        good = sum(check_correct(b, load.declared(scenario))[0] for b in hosts)
        return run, rewritten, good

    def rounds(hosts):
        """{scenario: [(run, rewritten, good, load average)] of each round}, every round from bare guests."""
        found = {scenario: [] for scenario in FLEET_SCENARIOS}
        for _round in range(repeat):
            for backend in hosts:
                define_all(ctx, backend, bare)
            for scenario in FLEET_SCENARIOS:
                load_avg = os.getloadavg()[0]
                found[scenario].append(converge(hosts, scenario) + (load_avg,))
        return found

    def median_round(measured):
        return sorted(measured, key=lambda found: found[0].wall)[len(measured) // 2]

    try:
        for backend in backends:
            backend.start()
        log('[fleet] %d private libvirtds, %d guests x %d devices each, median of %d rounds' % (
            len(backends), size, devices, repeat))
        for index, backend in enumerate(backends):
            for scenario, measured in rounds([backend]).items():
                run, _rewritten, good, _load = median_round(measured)
                alone[scenario].append(run.wall)
                log('    host %d alone %-9s %6.2fs (rounds %s) correct=%d/%d %s' % (
                    index, scenario, run.wall, ' '.join('%.2f' % m[0].wall for m in measured), good, size, run.error))
        for count in counts:
            hosts = backends[:count]
            for scenario, measured in rounds(hosts).items():
                run, rewritten, good, load_avg = median_round(measured)
                slowest = max(alone[scenario][:count])
                rows.append({'k': count, 'n': size, 'm': devices, 'scenario': scenario, 'wall': run.wall,
                             'walls': [m[0].wall for m in measured], 'cpu': run.cpu, 'load': load_avg,
                             'slowest_alone': slowest, 'alone': alone[scenario][:count], 'ratio': run.wall / slowest,
                             'changed': run.changed, 'writes': run.writes, 'rewritten': rewritten, 'correct': good,
                             'checked': count * size, 'result_bytes': run.result_bytes,
                             'error': next((m[0].error for m in measured if m[0].error), None)})
                log('    K=%d %-9s %6.2fs (rounds %s; slowest host alone %.2fs, x%.2f) cpu=%.1fs load=%.1f correct=%d/%d %s'
                    % (count, scenario, run.wall, ' '.join('%.2f' % m[0].wall for m in measured), slowest,
                       run.wall / slowest, run.cpu or 0, load_avg, good, count * size, rows[-1]['error'] or ''))
    finally:
        for backend in backends:
            backend.stop()
            shutil.rmtree(backend.directory, ignore_errors=True)
    return rows


def _where(func):
    filename, line, name = func
    if '/plugins/' in filename:
        filename = filename[filename.index('/plugins/') + 1:]
    elif filename.startswith('~') or filename.startswith('<'):
        return name
    else:
        filename = os.path.basename(filename)
    return '%s:%d %s' % (filename, line, name)


def profile_module(ctx, size, devices, workdir, caps_cache, log, top=12):
    """cProfile the module process (embed) on first apply and no-change; return a Markdown section."""
    load = wl.Workload(size, devices, os.path.join(workdir, 'images'))
    backend = Backend('embed', os.path.join(workdir, 'profile-%d' % size), caps_cache)
    backend.start()
    sections = []
    try:
        define_all(ctx, backend, {g: wl.bare_xml(g) for g in load.guests})
        for scenario in ('first', 'nochange'):
            args = {'ANSIBLE_MODULE_ARGS': {'uri': backend.uri, 'domains': wl.manifest(load.declared(scenario)),
                                            'host_checks': False}}
            argsfile = ctx.path('profile-args.json')
            with open(argsfile, 'w', encoding='utf-8') as handle:
                json.dump(args, handle)
            out = ctx.path('profile.out')
            proc = subprocess.run([ctx.python, '-m', 'cProfile', '-o', out, '-m', tl.MODULE, argsfile], env=ctx.env(),
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900, check=False)
            if proc.returncode != 0 or not os.path.exists(out) or '"failed": true' in proc.stdout:
                sections.append('cProfile run of %s failed: %s' % (scenario, proc.stderr[-300:]))
                continue
            stats = pstats.Stats(out)
            total = stats.total_tt
            entries = stats.stats  # pylint: disable=no-member
            own = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
            ours = sorted(((f, v) for f, v in entries.items() if '/plugins/' in f[0] or f[2] in (
                'XMLDesc', 'defineXMLFlags', 'lookupByName', 'lookupByUUIDString', 'virConnectOpen')),
                key=lambda kv: kv[1][3], reverse=True)[:top]
            title = '### %s, N=%d, M=%d, embed: %.2f s under cProfile' % (wl.SCENARIO_TITLES[scenario], size, devices, total)
            lines = [title, '',
                     '| own time: function | calls | own s | cumulative s |', '|---|---:|---:|---:|']
            lines += ['| %s | %d | %.3f | %.3f |' % (_where(f), v[1], v[2], v[3]) for f, v in own]
            lines += ['', '| cumulative: collection code and libvirt calls | calls | own s | cumulative s |',
                      '|---|---:|---:|---:|']
            lines += ['| %s | %d | %.3f | %.3f |' % (_where(f), v[1], v[2], v[3]) for f, v in ours]
            sections.append('\n'.join(lines))
            log('profiled %s: %.2fs' % (scenario, total))
    finally:
        shutil.rmtree(backend.directory, ignore_errors=True)
    return '\n\n'.join(sections)
