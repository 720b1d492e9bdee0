# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Plot wall time against N per tool and scenario: ``python plot.py RESULTS.json OUT.png [FLEET.png]``; with
FLEET.png and fleet rows in the results, also wall time against the number of hypervisors K.

Runs in the interpreter that has matplotlib (.venv-bench-peers, see requirements/bench.txt).
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position

SCENARIOS = (('check', 'check mode'), ('first', 'first apply'), ('nochange', 'no-change re-apply'),
             ('change', 'one device changed per guest'))
TOOLS = (('floor', '(1) floor'), ('manifest', '(2) manifest task'), ('module', '(2m) module process'),
         ('loop', '(3) module in loop'), ('virt', '(4) community.libvirt'), ('virsh', '(5) virsh loop'),
         ('virsh_guarded', '(5g) guarded virsh loop'), ('virtxml', '(6) virt-xml'))
STYLES = {'libvirtd': '-', 'embed': '--'}


def main(argv):
    with open(argv[0], encoding='utf-8') as handle:
        results = json.load(handle)
    m = results['devices']
    fig, axes = plt.subplots(2, 2, figsize=(13, 9), sharex=True)
    colors = dict(zip([key for key, _label in TOOLS], plt.get_cmap('tab10').colors))
    for ax, (scenario, title) in zip(axes.flat, SCENARIOS):
        for key, label in TOOLS:
            for backend, style in STYLES.items():
                points = sorted((r['n'], r.get('scaled_wall', r['wall']), 'scaled_wall' in r)
                                for r in results['rows']
                                if r.get('tool') == key and r.get('backend') == backend and r.get('m') == m
                                and r.get('scenario') == scenario and r.get('wall') is not None)
                if not points:
                    continue
                xs, ys = [p[0] for p in points], [p[1] for p in points]
                ax.plot(xs, ys, style, color=colors[key], label='%s, %s' % (label, backend), linewidth=1.6)
                for x, y, scaled in points:
                    ax.plot([x], [y], 'o', color=colors[key], markerfacecolor='white' if scaled else colors[key],
                            markersize=5)
        ax.set_title(title)
        ax.set_yscale('log')
        ax.set_xlabel('guests N (M=%d devices each)' % m)
        ax.set_ylabel('wall time, s')
        ax.grid(True, which='both', alpha=0.3)
    handles, labels = axes.flat[1].get_legend_handles_labels()
    fig.legend(handles, labels, loc='lower center', ncol=4, fontsize=8)
    fig.suptitle('virtdev.libvirt benchmark: solid = private libvirtd, dashed = qemu:///embed; '
                 'hollow markers = measured on a sample and scaled', fontsize=10)
    fig.tight_layout(rect=(0, 0.1, 1, 0.97))
    fig.savefig(argv[1], dpi=90)
    if len(argv) > 2 and results.get('fleet'):
        fleet(results['fleet'], argv[2])
    return 0


def fleet(rows, path):
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.get_cmap('tab10').colors
    for color, (scenario, title) in zip(colors, [s for s in SCENARIOS if s[0] in ('first', 'nochange')]):
        points = sorted((r['k'], r['wall'], r['slowest_alone']) for r in rows if r['scenario'] == scenario)
        if not points:
            continue
        ks = [p[0] for p in points]
        ax.plot(ks, [p[1] for p in points], 'o-', color=color, label='%s: K hypervisors, forks = K' % title)
        ax.plot(ks, [p[2] for p in points], 's--', color=color, alpha=0.6, label='%s: slowest host alone' % title)
        ax.plot(ks, [1.3 * p[2] for p in points], ':', color=color, alpha=0.4, label='%s: 1.3 x slowest alone' % title)
    n = rows[0]['n']
    ax.set_xscale('log', base=2)
    ax.set_xticks(sorted({r['k'] for r in rows}))
    ax.set_xticklabels([str(k) for k in sorted({r['k'] for r in rows})])
    ax.set_xlabel('hypervisors K (a private libvirtd each, %d guests each)' % n)
    ax.set_ylabel('wall time of the playbook, s')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title('Fleet: one domain_devices manifest task per hypervisor on a 2-core controller', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
