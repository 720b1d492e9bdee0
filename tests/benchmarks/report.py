# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Turn benchmark results into docs/performance.md: tables, targets with verdicts, growth, hot spots."""

from __future__ import annotations

from . import tools as tl
from . import workload as wl

OURS = ('manifest', 'module', 'loop')


def _rows(results, **match):
    return [r for r in results['rows'] if all(r.get(k) == v for k, v in match.items())]


def _row(results, **match):
    rows = [r for r in _rows(results, **match) if 'skipped' not in r]
    return rows[0] if rows else None


def wall(row):
    """The wall time to compare: scaled to N when the tool ran on a sample."""
    if row is None or row.get('wall') is None:
        return None
    return row.get('scaled_wall', row['wall'])


def _fmt_s(value):
    if value is None:
        return 'n/a'
    return '%.2f' % value if value < 10 else '%.1f' % value if value < 100 else '%.0f' % value


def _time_cell(row):
    if row is None:
        return ''
    if 'skipped' in row:
        return 'n/a'
    text = _fmt_s(wall(row))
    return ('≈%s' % text) if 'scaled_wall' in row else text


def _calls_cell(row):
    if row.get('calls') is None:
        return 'not measured'
    calls = row['calls']
    detail = ', '.join('%s %d' % (k, v) for k, v in sorted(calls.items()))
    return '%d (%s)' % (row['total_calls'], detail)


def _writes_cell(row):
    if row.get('writes') is None:
        return 'not counted'
    text = '%d' % row['writes']
    if 'scaled_writes' in row:
        text += ' (≈%d)' % row['scaled_writes']
    return text


def _rewritten_cell(row):
    text = '%d' % row['rewritten']
    if 'scaled_rewritten' in row:
        text += ' (≈%d)' % row['scaled_rewritten']
    return text


def _correct_cell(row):
    ok = row['correct'] == row['checked']
    text = 'yes' if ok else 'no: %d/%d' % (row['correct'], row['checked'])
    if not ok and row.get('problem'):
        text += ' (%s)' % row['problem'].split(': ', 1)[-1].replace('|', '/')
    return text


def _changed_cell(row):
    changed = row.get('changed')
    if row['scenario'] == 'nochange':
        if changed is None:
            return 'cannot tell'
        if changed:
            return '**changed: not idempotent**'
        return 'no change' + (' (but rewrote %d definitions)' % row['rewritten'] if row['rewritten'] else '')
    if changed is None:
        return 'cannot tell'
    return 'changed' if changed else 'no change'


def _kb(size):
    if size is None:
        return ''
    return '%.1f' % (size / 1024.0) if size < 10240 else '%.0f' % (size / 1024.0)


def fleet_png(png):
    """The fleet plot beside the main one: docs/performance.png -> docs/performance-fleet.png."""
    root, ext = png.rsplit('.', 1) if '.' in png else (png, 'png')
    return '%s-fleet.%s' % (root, ext)


def _sample_note(row, n):
    return ' (%d of %d guests, scaled)' % (row['sample'], n) if row.get('sample', n) < n else ''


def detail_table(results, backend, n, m):
    lines = ['| tool | scenario | wall s | CPU s (client) | libvirt calls | write calls | definitions rewritten '
             '| peak RSS MB | result KB | result | correct | errors |',
             '|---|---|---:|---:|---|---:|---:|---:|---:|---|---|---|']
    for tool in tl.TOOLS + [tl.NOOP]:
        rows = _rows(results, backend=backend, n=n, m=m, tool=tool.key)
        if not rows:
            continue
        for row in rows:
            if 'skipped' in row and 'scenario' not in row:
                lines.append('| %s | all | n/a | | | | | | | %s | | |' % (tool.label, row['skipped']))
                break
            if 'skipped' in row:
                lines.append('| %s | %s | n/a | | | | | | | %s | | |' % (tool.label, row['scenario'], row['skipped']))
                continue
            if tool is tl.NOOP:  # not a tool: Ansible's own cost of the manifest, subtracted from (2) for own work
                lines.append('| %s | (all) | %s | %s | | | | %s | %s | | | |' % (
                    tool.label, _time_cell(row), _fmt_s(row.get('cpu')),
                    '%d' % (row['rss_kb'] // 1024) if row.get('rss_kb') else '?', _kb(row.get('result_bytes'))))
                continue
            lines.append('| %s%s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
                tool.label, _sample_note(row, n), row['scenario'], _time_cell(row), _fmt_s(row.get('cpu')),
                _calls_cell(row), _writes_cell(row), _rewritten_cell(row),
                '%d' % (row['rss_kb'] // 1024) if row.get('rss_kb') else '?', _kb(row.get('result_bytes')),
                _changed_cell(row), _correct_cell(row),
                row['error'].replace('|', '/').replace('\n', ' ')[:140] if row.get('error') else ''))
    return '\n'.join(lines)


def summary_table(results, n, m):
    backends = [b for b in ('embed', 'libvirtd') if _rows(results, backend=b, n=n, m=m)]
    head = '| tool |' + ''.join(' %s %s |' % (b, s) for b in backends for s in wl.SCENARIOS)
    lines = [head, '|---|' + '---:|' * (len(backends) * len(wl.SCENARIOS))]
    for tool in tl.TOOLS:
        if not _rows(results, n=n, m=m, tool=tool.key):
            continue
        cells = []
        for backend in backends:
            for scenario in wl.SCENARIOS:
                rows = _rows(results, backend=backend, n=n, m=m, tool=tool.key)
                row = next((r for r in rows if r.get('scenario') == scenario), None) or (rows[0] if rows else None)
                cells.append(_time_cell(row) if row else '')
        lines.append('| %s | %s |' % (tool.label, ' | '.join(cells)))
    return '\n'.join(lines)


def _ratio(a, b):
    return a / b if a is not None and b else None


def _cpu_at(row, n):
    """CPU seconds of a peer's processes for all N guests: a sampled run's CPU times N / sample (its fixed
    cost counted N / sample times too, so this errs in the peer's favour)."""
    cpu = row.get('cpu')
    return cpu * n / float(row['sample']) if cpu is not None and row.get('sample') and row['sample'] < n else cpu


def _peer_verdict(ratio, peer):
    """Faster than a peer counts only against a peer that did the job: a script that failed is no measure."""
    if peer.get('correct') != peer.get('checked'):
        return 'not comparable (the peer left %s of %s guests correct)' % (peer.get('correct'), peer.get('checked'))
    return 'met' if ratio >= 10 else 'missed: %.1fx' % ratio


def like_for_like(results, n, m):
    """The shell-loop peers are scripts that talk to libvirt directly, without Ansible: set against them the
    module process alone, also a process talking to libvirt directly, on wall and on CPU seconds. (Through
    ansible-playbook our side alone pays the playbook's start-up and the manifest's shipping.)"""
    out = []
    for backend in ('libvirtd', 'embed'):
        direct = _row(results, backend=backend, n=n, m=m, tool='module', scenario='nochange')
        for peer in ('virsh', 'virsh_guarded'):
            other = _row(results, backend=backend, n=n, m=m, tool=peer, scenario='nochange')
            if not direct or not other:
                continue
            ratio = _ratio(wall(other), wall(direct))
            cpu_ratio = _ratio(_cpu_at(other, n), direct.get('cpu'))
            out.append(('≥ 10x faster than %s, no-change, N=%d (%s), like for like: the module process alone against '
                        'the script, neither through ansible-playbook' % (tl.TOOLS_BY_KEY[peer].label, n, backend),
                        'wall %ss vs %s%ss: %.1fx; CPU %ss vs %s%ss: %s (load %.1f / %.1f)' % (
                            _fmt_s(wall(direct)), '≈' if 'scaled_wall' in other else '', _fmt_s(wall(other)), ratio,
                            _fmt_s(direct.get('cpu')), '≈' if 'scaled_wall' in other else '',
                            _fmt_s(_cpu_at(other, n)), '%.1fx' % cpu_ratio if cpu_ratio else '?',
                            direct.get('load') or 0, other.get('load') or 0),
                        'wall: %s; CPU: %s' % (_peer_verdict(ratio, other), _peer_verdict(cpu_ratio or 0, other))))
    return out


def targets(results):
    """[(target, measured, verdict)]."""
    out = []
    sizes, m = results['sizes'], results['devices']
    if sizes:
        out += _size_targets(results, sizes, m)
    out += _fleet_targets(results)
    nochange = [r for r in results['rows'] if r.get('tool') in OURS + ('floor',) and r.get('scenario') == 'nochange'
                and 'skipped' not in r]
    if nochange:
        bad = [r for r in nochange if r.get('writes') or r['rewritten']]
        ran = [label for key, label in (('floor', 'floor'), ('manifest', '(2)'), ('module', '(2m)'), ('loop', '(3)'))
               if any(r['tool'] == key for r in nochange)]
        out.append(('no write call on a no-change run', '%d no-change runs of %s: write calls %s, definitions rewritten '
                    '%s' % (len(nochange), '/'.join(ran), sum(r.get('writes') or 0 for r in nochange),
                            sum(r['rewritten'] for r in nochange)),
                    'met' if not bad else 'missed in %d runs' % len(bad)))
    return out


def _own_work_verdict(own, limit):
    if own < 0:  # the task took less than Ansible's own cost of shipping the manifest: the rows' noise is larger
        return 'not measurable (below zero: the two runs differ by more than the work; use --repeat)'
    return 'met' if own <= limit else 'missed by %ss (%.0f%%)' % (_fmt_s(own - limit), 100.0 * (own - limit) / limit)


def _size_targets(results, sizes, m):
    out = []
    n200 = 200 if 200 in sizes else sizes[len(sizes) // 2]
    for scenario, factor, name in (('nochange', 1.5, 'no-change re-apply'), ('first', 2.0, 'first apply'),
                                   ('change', 2.0, 'one device changed per guest')):
        for backend in ('embed', 'libvirtd'):
            for n in sizes:
                ours, floor = _row(results, backend=backend, n=n, m=m, tool='manifest', scenario=scenario), \
                    _row(results, backend=backend, n=n, m=m, tool='floor', scenario=scenario)
                direct = _row(results, backend=backend, n=n, m=m, tool='module', scenario=scenario)
                noop = _row(results, backend=backend, n=n, m=m, tool='noop')
                if not ours or not floor or not noop:
                    continue
                own = wall(ours) - wall(noop)
                limit = factor * wall(floor) + 0.5
                # CPU seconds of the client processes: steadier than wall time on a shared machine
                own_cpu = (ours.get('cpu') or 0) - (noop.get('cpu') or 0)
                limit_cpu = factor * (floor.get('cpu') or 0) + 0.5
                measured = ('wall: own work %ss (manifest task %ss - do-nothing module with the same manifest %ss) vs '
                            'limit %.1f x floor %ss + 0.5s = %ss; CPU: own %ss vs limit %ss; module process alone %ss '
                            '(%.1f x floor); load %.1f' % (
                                _fmt_s(own), _fmt_s(wall(ours)), _fmt_s(wall(noop)), factor, _fmt_s(wall(floor)),
                                _fmt_s(limit), _fmt_s(own_cpu), _fmt_s(limit_cpu), _fmt_s(wall(direct)),
                                _ratio(wall(direct), wall(floor)) or 0, ours.get('load') or 0))
                cpu_verdict = ('not measurable (below zero)' if own_cpu < 0 else 'met' if own_cpu <= limit_cpu
                               else 'missed by %ss' % _fmt_s(own_cpu - limit_cpu))
                verdict = '%s; CPU: %s' % (_own_work_verdict(own, limit), cpu_verdict)
                out.append(('%s: own work ≤ %.1f x floor + 0.5 s (%s, N=%d)' % (name, factor, backend, n), measured,
                            verdict))
    for backend in ('embed', 'libvirtd'):
        ours = _row(results, backend=backend, n=max(sizes), m=m, tool='manifest', scenario='nochange')
        direct = _row(results, backend=backend, n=max(sizes), m=m, tool='module', scenario='nochange')
        measured_by = ours if ours and ours.get('result_bytes') else direct   # the task, else the module process
        if measured_by and measured_by.get('result_bytes'):
            size = measured_by['result_bytes'] / 1024.0
            first = _row(results, backend=backend, n=max(sizes), m=m, tool=measured_by['tool'], scenario='first')
            where = ('as the controller holds it (module output %s KB)' % _kb(direct.get('result_bytes'))
                     if measured_by is ours and direct else 'the module process\'s output')
            out.append(('result of a no-change run < 50 KB (%s, N=%d, M=%d)' % (backend, max(sizes), m),
                        '%.1f KB, %s; a first apply, every guest changed: %s KB' % (
                            size, where, _kb(first.get('result_bytes')) if first else '?'),
                        'met' if size < 50 else 'missed by %.1f KB' % (size - 50)))
    for backend in ('libvirtd', 'embed'):
        ours = _row(results, backend=backend, n=n200, m=m, tool='manifest', scenario='nochange')
        for peer in ('virt', 'virsh', 'virsh_guarded'):
            other = _row(results, backend=backend, n=n200, m=m, tool=peer, scenario='nochange')
            if not ours or not other:
                continue
            ratio = _ratio(wall(other), wall(ours))
            label = tl.TOOLS_BY_KEY[peer].label
            unlike = ('; the task through ansible-playbook against a script without Ansible, not like for like'
                      if peer in ('virsh', 'virsh_guarded') else '')
            out.append(('≥ 10x faster than %s, no-change, N=%d (%s)%s' % (label, n200, backend, unlike),
                        '%ss vs %s%ss: %.1fx%s' % (
                            _fmt_s(wall(ours)), '≈' if 'scaled_wall' in other else '', _fmt_s(wall(other)), ratio,
                            '' if other['correct'] == other['checked'] else ' (the peer is not correct/idempotent there)'),
                        _peer_verdict(ratio, other)))
    out += like_for_like(results, n200, m)
    for backend in ('embed', 'libvirtd'):
        for tool in ('module', 'manifest'):
            for scenario in ('first', 'nochange'):
                rows = [(n, _row(results, backend=backend, n=n, m=m, tool=tool, scenario=scenario)) for n in sizes]
                rows = [(n, r) for n, r in rows if r is not None and r.get('cpu') is not None]
                if len(rows) < 3:
                    continue

                def slopes(values):
                    return [(t2 - t1) / (n2 - n1) for (n1, t1), (n2, t2) in zip(values, values[1:])]
                cpu = slopes([(n, r['cpu']) for n, r in rows])
                walls = slopes([(n, wall(r)) for n, r in rows])
                growth = cpu[-1] / cpu[0] if cpu[0] > 0 else float('inf')
                out.append(('linear in N: %s %s (%s)' % (tl.TOOLS_BY_KEY[tool].label, scenario, backend),
                            'CPU ms per added guest: %s (last/first %.2f; a quadratic step would give ≈%.1f); wall ms '
                            'per added guest: %s' % (
                                ', '.join('%d→%d: %.1f' % (a[0], b[0], 1000 * c) for a, b, c in zip(rows, rows[1:], cpu)),
                                growth, (rows[-1][0] + rows[-2][0]) / float(rows[1][0] + rows[0][0]),
                                ', '.join('%.1f' % (1000 * w) for w in walls)),
                            'met' if growth < 1.5 else 'missed (slope grows %.2fx)' % growth))
    m_rows = {}
    for row in results['rows']:
        if row.get('tool') == 'module' and row.get('backend') == 'embed' and row.get('n') == n200 and 'skipped' not in row:
            m_rows.setdefault(row['scenario'], []).append((row['m'], wall(row)))
    for scenario in ('first', 'nochange'):
        points = sorted(m_rows.get(scenario, []))
        if len(points) >= 3:
            slopes = [(t2 - t1) / (m2 - m1) for (m1, t1), (m2, t2) in zip(points, points[1:])]
            growth = slopes[-1] / slopes[0] if slopes[0] > 0 else float('inf')
            out.append(('linear in M: module process, %s (embed, N=%d)' % (scenario, n200),
                        'ms per device-slot between M values: %s (last/first slope %.2f)' % (
                            ', '.join('%d→%d: %.0f' % (a[0], b[0], 1000 * s) for a, b, s in zip(points, points[1:], slopes)),
                            growth),
                        'met' if growth < 1.5 else 'missed (slope grows %.2fx)' % growth))
    nmax = max(sizes)
    rss = [r['rss_kb'] for r in _rows(results, tool='module', n=nmax, m=m) if r.get('rss_kb')]
    if rss:
        peak = max(rss) / 1024.0
        out.append(('module peak RSS ≤ 100 MB at N=%d, M=%d' % (nmax, m), '%.0f MB (largest over scenarios and backends;'
                    ' embed includes the in-process QEMU driver)' % peak, 'met' if peak <= 100 else 'missed by %.0f MB' % (peak - 100)))
    return out


def _fleet_targets(results):
    out = []
    for row in results.get('fleet') or ():
        if row['scenario'] != 'nochange' and row['k'] > 2:
            continue
        measured = ('%ss for %d hypervisors x %d guests vs slowest host alone %ss: %.2f x (load %.1f)' % (
            _fmt_s(row['wall']), row['k'], row['n'], _fmt_s(row['slowest_alone']), row['ratio'], row['load']))
        if row['k'] <= 2:
            verdict = 'met' if row['ratio'] <= 1.3 and not row['error'] else 'missed (%.2f x)%s' % (
                row['ratio'], ', ' + row['error'][:80] if row['error'] else '')
            out.append(('fleet %s, K=%d: wall ≤ 1.3 x slowest host alone' % (row['scenario'], row['k']), measured, verdict))
        else:
            out.append(('fleet %s, K=%d: growth reported (2 cores: CPU-bound)' % (row['scenario'], row['k']), measured,
                        'reported' + (' (%s)' % row['error'][:80] if row['error'] else '')))
    return out


def growth_table(results):
    m = results['devices']
    lines = ['| backend | tool | scenario | ' + ' | '.join('N=%d' % n for n in results['sizes']) + ' | ms/guest at largest N |',
             '|---|---|---|' + '---:|' * (len(results['sizes']) + 1)]
    for backend in ('embed', 'libvirtd'):
        for tool in ('floor', 'module', 'manifest'):
            for scenario in wl.SCENARIOS:
                cells = [wall(_row(results, backend=backend, n=n, m=m, tool=tool, scenario=scenario)) for n in results['sizes']]
                if all(c is None for c in cells):
                    continue
                last = cells[-1]
                lines.append('| %s | %s | %s | %s | %s |' % (backend, tl.TOOLS_BY_KEY[tool].label, scenario,
                                                             ' | '.join(_fmt_s(c) for c in cells),
                                                             '%.1f' % (1000 * last / results['sizes'][-1]) if last else ''))
    return '\n'.join(lines)


def m_table(results):
    rows = [r for r in results['rows'] if r.get('m') != results['devices'] and 'skipped' not in r]
    if not rows:
        return ''
    n = rows[0]['n']
    ms = sorted({r['m'] for r in rows} | {results['devices']})
    lines = ['| tool (embed, N=%d) | scenario | ' % n + ' | '.join('M=%d' % x for x in ms) + ' |',
             '|---|---|' + '---:|' * len(ms)]
    for tool in ('floor', 'module', 'manifest'):
        for scenario in wl.SCENARIOS:
            cells = [wall(_row(results, backend='embed', n=n, m=x, tool=tool, scenario=scenario)) for x in ms]
            if all(c is None for c in cells):
                continue
            lines.append('| %s | %s | %s |' % (tl.TOOLS_BY_KEY[tool].label, scenario, ' | '.join(_fmt_s(c) for c in cells)))
    return '\n'.join(lines)


def fleet_table(results):
    lines = ['| K hypervisors | guests | scenario | wall s (median) | rounds s | slowest host alone s | wall / slowest | '
             'CPU s (controller and modules) | load | result KB | write calls | correct | errors |',
             '|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|']
    for row in results['fleet']:
        lines.append('| %d | %d x %d | %s | %s | %s | %s | %.2f | %s | %.1f | %s | %s | %s | %s |' % (
            row['k'], row['k'], row['n'], row['scenario'], _fmt_s(row['wall']),
            ' '.join(_fmt_s(wall) for wall in row.get('walls', [row['wall']])), _fmt_s(row['slowest_alone']),
            row['ratio'], _fmt_s(row.get('cpu')), row['load'], _kb(row.get('result_bytes')), row.get('writes'),
            'yes' if row['correct'] == row['checked'] else 'no: %d/%d' % (row['correct'], row['checked']),
            (row.get('error') or '').replace('|', '/')[:100]))
    return '\n'.join(lines)


def markdown(results, png=None, notes='', fleet_png=None):
    env = results['env']
    m = results['devices']
    mix = results.get('mix', {})
    parts = [
        '# Performance',
        '',
        '<!-- GENERATED by tests/benchmarks (python -m tests.benchmarks); edit the harness, not this file. -->',
        '',
        'How much does converging a host\'s guest devices with `virtdev.libvirt.domain_devices` cost, next to '
        'the least a libvirt-python script must do (the floor) and next to what admins use today? Every number '
        'below comes from one run of the harness in `tests/benchmarks/` on one machine.',
        '',
        '## How to run it',
        '',
        '```sh',
        'scripts/bootstrap.sh                 # .venv, Debian packages (virtinst for virt-xml)',
        'tests/benchmarks/run.sh              # creates .venv-bench-peers, runs everything, rewrites this page',
        '# or, with both venvs in place:',
        '.venv/bin/python -m tests.benchmarks --json bench.json --markdown docs/performance.md --png docs/performance.png',
        '# a quick look (a few minutes): .venv/bin/python -m tests.benchmarks --sizes 20 --devices 10 --backends embed',
        '# this page again from saved results, with the hand-written analysis:',
        '.venv/bin/python -m tests.benchmarks --from-json .state/bench-results.json \\',
        '    --notes tests/benchmarks/analysis.md --markdown docs/performance.md --png docs/performance.png',
        '```',
        '',
        'The smoke test `tests/benchmarks/test_bench_smoke.py` runs the same harness at N=3, M=4 on the embedded '
        'driver and asserts the correctness and idempotency columns; it is part of the test suite, the full run is not.',
        '',
        'This run: `%s`%s.' % (results.get('command', ''), ', %.0f s in all' % results['runtime']
                               if results.get('runtime') else ''),
        '',
        '- Code measured: commit %s.' % results['env'].get('commit', '?'),
        '- Machine: %s; Python %s; libvirt %s; %s; virt-xml %s. Load average at the start of each row is in the raw '
        'JSON; on a machine shared with other work single wall times carry noise of a few tenths of a second or '
        'more (CPU seconds of the tool\'s own processes are given beside them; --repeat reports medians).' % (
            env['host'], env['python'], env['libvirt'], env['qemu'], env['virt-xml']),
        '- Workload: N guests (i440fx, TCG, never started) x M=%d devices each: %s. The "change" scenario gives '
        'disk `%s` of every guest a new image. The "check" scenario is the first apply in check mode: its "correct" '
        'means it wrote nothing and left every guest bare (whether the module\'s prediction equals the real run is '
        'tested by `tests/functional`, not here).' % (
            m, '; '.join('%s: %s' % (cls, ', '.join(names)) for cls, names in sorted(mix.items())), wl.CHANGED_TARGET),
        '- Backends: `embed` = `qemu:///embed?root=DIR`, the QEMU driver inside the tool\'s own process (every tool '
        'run, and every virsh call, opens the root and loads all N definitions); `libvirtd` = a private libvirtd '
        'over its UNIX socket (its memory is not in the peak RSS column).',
        '- One module start-up (one `domain_devices` task through `ansible-playbook` that opens no connection): '
        '**%.2f s**.' % results['startup'],
        '',
    ]
    if png:
        parts += ['![wall time against N, per tool and scenario](%s)' % png, '']
    parts += ['## Targets', '',
              'How to read them. *Own work* is the `domains:` manifest task (2) through `ansible-playbook` minus the '
              'do-nothing module given the same manifest through `ansible-playbook` (the row "do-nothing module, same '
              'manifest", measured once per N: what Ansible spends templating and shipping the manifest does not depend '
              'on the scenario); *floor* is the floor script in the same scenario. A difference of two runs carries the '
              'noise of both: a negative one is reported as not measurable, and `--repeat` reports medians. *Linear in '
              'N* compares the CPU seconds per added guest between consecutive N: met while the last step is under 1.5 '
              'x the first (a cost that grows with N squared would make it about (N3 + N2) / (N2 + N1)). *Peak RSS* is '
              'the module process alone (2m); the RSS column of the (2) rows is the largest process of the '
              '`ansible-playbook` run, the controller.',
              '', '| target | measured | verdict |', '|---|---|---|']
    for target, measured, verdict in targets(results):
        parts.append('| %s | %s | %s |' % (target, measured, verdict))
    parts += ['']
    if notes:
        parts += [notes, '']
    if results['sizes']:  # a fleet-only run (--sizes '') has no rows of its own
        n200 = 200 if 200 in results['sizes'] else results['sizes'][len(results['sizes']) // 2]
        parts += ['## Wall time at N=%d, M=%d (seconds; ≈ = measured on a sample of guests, scaled)' % (n200, m), '',
                  summary_table(results, n200, m), '',
                  '## Growth with N (wall seconds, M=%d)' % m, '', growth_table(results), '']
    mt = m_table(results)
    if mt:
        parts += ['## Growth with M', '', mt, '']
    if results.get('fleet'):
        parts += ['## Fleet: K hypervisors in one run', '',
                  'Each inventory host is one hypervisor: a private libvirtd with its own socket and its own %d guests '
                  '(M=%d), converged by one manifest task per host; `ansible-playbook -f K` (forks = K) with every host '
                  '`ansible_connection: local`, so the controller, the K module processes and the K libvirtds share this '
                  'machine\'s 2 cores. "slowest host alone" is the same playbook run on that host only (the slowest of '
                  'the K). Each figure is the median of %d rounds, each from bare guests.' % (
                      results['fleet'][0]['n'], results['devices'], len(results['fleet'][0].get('walls', [0]))), '',
                  fleet_table(results), '']
        if fleet_png:
            parts += ['![fleet wall time against K](%s)' % fleet_png, '']
    if results.get('profile'):
        parts += ['## Where the module spends its time', '', results['profile'], '']
    parts += ['## The tools', '',
              'Each is named by its key for `--tools`.',
              '',
              '1. **floor** (`floor`): `tests/benchmarks/floor.py`, one process: per guest `lookupByName`, `XMLDesc`, lxml '
              'edits (add the missing device, replace one whose declared attributes differ, keep its `<address>`), '
              '`defineXML` only when something changed. No validation, no read-back, no results.',
              '2. **(2) manifest** (`manifest`): one `virtdev.libvirt.domain_devices` task with `domains:` for all guests, through '
              '`ansible-playbook` (ansible-core from `.venv`). **(2m)** (`module`) is the same module run directly as '
              '`python -m ansible_collections.virtdev.libvirt.plugins.modules.domain_devices ARGS.json`: the module '
              'process alone, which is where the peak RSS target is measured.',
              '3. **(3) loop** (`loop`): the same module with `domain:`/`config:` in a `loop:` over the guests.',
              '4. **(4) community.libvirt** (`virt`) %s `virt` with `command: define` and `xml: "{{ lookup(\'template\', ...) }}"` '
              'of the whole domain, in a loop (ansible from `.venv-bench-peers`, see `requirements/bench.txt`). It '
              'calls `defineXML` on every run, so its write calls equal the definitions rewritten.' % 'from the `ansible` package:',
              '5. **(5) virsh loop** (`virsh`): a bash script with one `virsh attach-device DOMAIN FILE --config` per device '
              '(and `update-device --config` when attach fails), the loop many roles run. **(5g)** (`virsh_guarded`) adds the guard such '
              'roles add: one `virsh dumpxml --inactive` per guest and `grep -F` for each device, attaching only what is '
              'missing. Each successful attach/update is one write call (counted); other libvirt calls are not.',
              '6. **(6) virt-xml** (`virtxml`, Debian `virtinst`): one `virt-xml DOMAIN --add-device --network|--disk|--rng|'
              '--watchdog|--hostdev ...` per device; check mode is `--print-diff`; the change is `--edit target=vdb '
              '--disk path=...` (virt-xml has no way to find out what changed). Its `--hostdev` looks the address up '
              'as a host node device, so the workload\'s (host-independent) PCI hostdev cannot be added with it.',
              '',
              'Correctness is checked by the harness, not taken from the tools: after each run the persistent '
              'definition file of every guest is parsed and its interfaces, disks, RNGs, watchdogs and hostdevs are '
              'compared, as a multiset, with the declaration. "definitions rewritten" compares each definition '
              'file\'s inode, mtime and size before and after the run, the same way for every tool.',
              '',
              'Tool order alternates per block (forward, then reversed). Slow peers run on the first k guests of the N '
              'defined ones; their time is scaled as fixed cost + (wall - fixed cost) x N/k, the fixed cost being the '
              'same tool run on zero guests. Left out rows say why.',
              '']
    blocks = []
    for row in results['rows']:
        key = (row['backend'], row['n'], row['m'])
        if key not in blocks:
            blocks.append(key)
    parts += ['## Every measurement', '']
    for backend, n, mm in blocks:
        parts += ['### %s, N=%d, M=%d' % (backend, n, mm), '', detail_table(results, backend, n, mm), '']
    return '\n'.join(parts).rstrip() + '\n'


def summary(results):
    lines = ['start-up %.2fs, runtime %.0fs' % (results['startup'], results.get('runtime') or 0)]
    for target, measured, verdict in targets(results):
        lines.append('%s: %s -> %s' % (target, measured, verdict))
    return '\n'.join(lines)
