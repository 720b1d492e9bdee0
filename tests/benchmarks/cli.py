# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""``python -m tests.benchmarks``: run the benchmark, write the JSON results, the report and the plot.

The default is the full benchmark documented in docs/performance.md (N = 50, 200, 500; M = 10; both
backends; every tool, the slow peers on a sample of guests). ``--sizes 3 --devices 4 --backends embed``
is the smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

from . import report
from . import runner
from . import tools as tl

# Full benchmark, 2 cores: how many guests each slow tool may touch (the rest is scaled, marked in the
# table). Per call: virsh ~0.02 s on libvirtd but ~0.15-0.4 s on embed (every virsh process loads all N
# definitions), virt-xml ~0.4 s, one Ansible loop item ~0.4 s.
FULL_SAMPLES = {
    ('loop', 'embed'): 10, ('loop', 'libvirtd'): 10,
    ('virt', 'libvirtd'): 20,
    ('virsh', 'embed'): 3, ('virsh', 'libvirtd'): 20,
    ('virsh_guarded', 'embed'): 10, ('virsh_guarded', 'libvirtd'): 200,
    ('virtxml', 'libvirtd'): 3,
}
FULL_FLEET = [1, 2, 4, 8]
FULL_SKIP = {
    ('loop', 'libvirtd', 500): 'left out at N=500 (time budget); see N=50 and 200',
    ('virt', 'libvirtd', 500): 'left out at N=500 (time budget); see N=50 and 200',
    ('virsh', 'embed', 500): 'left out at N=500 (time budget)',
    ('virsh', 'libvirtd', 500): 'left out at N=500 (time budget)',
    ('virsh_guarded', 'embed', 500): 'left out at N=500 (time budget)',
    ('virsh_guarded', 'libvirtd', 500): 'left out at N=500 (time budget)',
    ('virtxml', 'libvirtd', 500): 'left out at N=500 (time budget)',
    ('loop', 'embed', 500): 'left out at N=500 (time budget)',
}
# the slow peers are compared at N=200 (the peer targets); at N=50 they add only time on a shared machine
FULL_SKIP.update({(tool, backend, 50): 'left out at N=50 (time budget); see N=200'
                  for tool in ('loop', 'virt', 'virsh', 'virsh_guarded', 'virtxml') for backend in ('embed', 'libvirtd')})
GROWTH_TOOLS = ['floor', 'module']  # growth in M: the module process (linear-in-M target)


def _csv(text, convert=str):
    return [convert(part) for part in text.split(',') if part.strip()]


def _sample_arg(text):
    """TOOL:BACKEND[:N]=K"""
    key, _sep, value = text.partition('=')
    parts = key.split(':')
    if len(parts) not in (2, 3) or not value.isdigit():
        raise argparse.ArgumentTypeError('expected TOOL:BACKEND[:N]=K, got %r' % text)
    if len(parts) == 3:
        parts[2] = int(parts[2])
    return tuple(parts), int(value)


def parser():
    p = argparse.ArgumentParser(prog='python -m tests.benchmarks', description=__doc__.splitlines()[0])
    p.add_argument('--sizes', type=lambda t: _csv(t, int), default=[50, 200, 500], help='guest counts N (50,200,500)')
    p.add_argument('--devices', type=int, default=10, help='devices per guest M (10)')
    p.add_argument('--m-growth', type=lambda t: _csv(t, int), default=None,
                   help='extra M values run at the middle N on the embedded driver with %s (default 5,20 for the '
                        'full run, none otherwise)' % ', '.join(GROWTH_TOOLS))
    p.add_argument('--backends', type=_csv, default=['embed', 'libvirtd'], help='embed,libvirtd')
    p.add_argument('--tools', type=_csv, default=[t.key for t in tl.TOOLS],
                   help='tools, in the order of the first block (%s)' % ','.join(t.key for t in tl.TOOLS))
    p.add_argument('--sample', type=_sample_arg, action='append', default=[],
                   help='TOOL:BACKEND[:N]=K: run TOOL on K guests only and scale (repeatable)')
    p.add_argument('--full-samples', action='store_true',
                   help='the documented full run: its samples and N=500 exclusions, growth in M, the fleet rows (K=%s) '
                        'and the cProfile section (default when --sizes is not given)' % ','.join(str(k) for k in FULL_FLEET))
    p.add_argument('--profile', type=int, default=None,
                   help='cProfile the module process at this N on the embedded driver (full run: the middle N; 0: off)')
    p.add_argument('--fleet', type=lambda t: _csv(t, int), default=None,
                   help='numbers of hypervisors K for the fleet rows, each a private libvirtd (full run: %s; default none)'
                        % ','.join(str(k) for k in FULL_FLEET))
    p.add_argument('--fleet-guests', type=int, default=100, help='guests per hypervisor in the fleet rows (100)')
    p.add_argument('--fleet-repeat', type=int, default=3,
                   help='rounds per fleet measurement, each from bare guests; the median is reported (3)')
    p.add_argument('--repeat', type=int, default=1, help='runs per scenario; the median is reported (1)')
    p.add_argument('--workdir', help='scratch directory (default: a new one under /tmp, removed at the end)')
    p.add_argument('--caps-cache', default=os.environ.get('VIRTDEV_QEMU_CAPS_CACHE') or
                   os.path.join(tl.REPO, '.state', 'qemu-caps'),
                   help='QEMU capabilities cache directory, read and written (default: .state/qemu-caps in the checkout, '
                        'or $VIRTDEV_QEMU_CAPS_CACHE)')
    p.add_argument('--python', default=tl.python_default(), help='interpreter with ansible-core and libvirt-python')
    p.add_argument('--peers-python', default=tl.peers_python_default(),
                   help='interpreter of the venv with the ansible package (community.libvirt)')
    p.add_argument('--json', help='write the raw results here')
    p.add_argument('--markdown', help='write the report here (e.g. docs/performance.md)')
    p.add_argument('--png', help='write the plot here (needs matplotlib in --plot-python)')
    p.add_argument('--plot-python', default=tl.peers_python_default(), help='interpreter with matplotlib')
    p.add_argument('--from-json', metavar='FILE',
                   help='do not run the benchmark: rewrite the report and plot from these saved results (with --profile N, '
                        'redo only the cProfile section)')
    p.add_argument('--merge-fleet', metavar='FILE',
                   help='with --from-json: take the fleet rows from these saved results (a run with --sizes "" --fleet ...)')
    p.add_argument('--notes', metavar='FILE', help='Markdown inserted after the targets table (analysis of this run)')
    p.add_argument('--command-line', default=None, help=argparse.SUPPRESS)  # the program, as run.sh was called
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    full = args.full_samples or not any(a.startswith('--sizes') for a in argv)
    unknown = [t for t in args.tools if t not in tl.TOOLS_BY_KEY]
    if unknown:
        print('unknown tool(s): %s' % ', '.join(unknown), file=sys.stderr)
        return 2
    samples = dict(FULL_SAMPLES) if full else {}
    samples.update(dict(args.sample))
    m_growth = args.m_growth if args.m_growth is not None else ([5, 20] if full else [])
    middle = args.sizes[len(args.sizes) // 2] if args.sizes else None  # --sizes '': the fleet rows only
    extra = [('embed', middle, m, [t for t in GROWTH_TOOLS if t in args.tools]) for m in m_growth if m != args.devices]
    plan = runner.Plan(args.sizes, args.devices, args.backends, args.tools, samples=samples, extra_blocks=extra,
                       repeat=args.repeat, skip=FULL_SKIP if full else {},
                       profile_n=(args.profile if args.profile is not None else (middle if full else None)) or None,
                       fleet=args.fleet if args.fleet is not None else (FULL_FLEET if full else []),
                       fleet_n=args.fleet_guests, fleet_repeat=args.fleet_repeat)
    workdir = args.workdir or tempfile.mkdtemp(prefix='vdb-', dir='/tmp')  # short: libvirtd socket path limit
    try:
        if args.from_json:
            with open(args.from_json, encoding='utf-8') as handle:
                results = json.load(handle)
            if args.merge_fleet:
                with open(args.merge_fleet, encoding='utf-8') as handle:
                    results['fleet'] = json.load(handle)['fleet']
            if args.profile:
                ctx = runner.tl.Context(workdir, args.python, args.peers_python)
                results['profile'] = runner.profile_module(ctx, args.profile, results['devices'], workdir,
                                                           args.caps_cache, print)
        else:
            results = runner.run_plan(plan, workdir, args.python, args.peers_python, args.caps_cache)
            results['command'] = recorded_command(args.command_line, argv)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as handle:
            json.dump(results, handle, indent=1)
    if args.png and args.plot_python:
        data = args.json or os.path.join(tempfile.gettempdir(), 'bench-results-%d.json' % os.getpid())
        if not args.json:
            with open(data, 'w', encoding='utf-8') as handle:
                json.dump(results, handle)
        proc = subprocess.run([args.plot_python, os.path.join(os.path.dirname(__file__), 'plot.py'), data, args.png,
                               report.fleet_png(args.png)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print('plot failed: %s' % proc.stderr.strip(), file=sys.stderr)
    if args.markdown:
        with open(args.markdown, 'w', encoding='utf-8') as handle:
            notes = ''
            if args.notes:
                with open(args.notes, encoding='utf-8') as notes_file:
                    notes = notes_file.read().strip()
            handle.write(report.markdown(results, png=os.path.basename(args.png) if args.png else None, notes=notes,
                                         fleet_png=os.path.basename(report.fleet_png(args.png)) if args.png else None))
    print(report.summary(results))
    return 0


def recorded_command(program, argv):
    """The command line as a user can paste it again: each argument quoted for the shell ('' for an empty one)."""
    words, skip = [], False
    for word in argv:
        if skip or word.startswith('--command-line'):
            skip = word == '--command-line'
            continue
        words.append(word)
    return '%s %s' % (program or '.venv/bin/python -m tests.benchmarks', shlex.join(words))
