#!/usr/bin/env bash
# The full benchmark (docs/performance.md): ~25 min on 2 idle cores, about an hour when they are shared.
# Creates .venv-bench-peers from requirements/bench.txt when it is missing (the ansible package with
# community.libvirt, matplotlib), runs every size, tool and scenario, and rewrites docs/performance.md and docs/performance.png.
#
#   tests/benchmarks/run.sh                 # the documented full run
#   tests/benchmarks/run.sh --sizes 20 --backends embed --json /tmp/b.json   # other arguments go to the harness
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
PEERS="$ROOT/.venv-bench-peers"
[ -x "$ROOT/.venv/bin/python" ] || { echo "ERROR: .venv is missing: run scripts/bootstrap.sh" >&2; exit 1; }
command -v virt-xml >/dev/null || { echo "ERROR: virt-xml is missing: apt-get install virtinst" >&2; exit 1; }
stamp="$PEERS/.bench-requirements"
want=$(sha256sum requirements/bench.txt | cut -d' ' -f1)
if [ ! -x "$PEERS/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "Installing requirements/bench.txt into $PEERS"
    python3 -m venv "$PEERS"
    "$PEERS/bin/python" -m pip install --disable-pip-version-check -q -r requirements/bench.txt
    echo "$want" >"$stamp"
fi
if [ $# -eq 0 ]; then
    set -- --json "$ROOT/.state/bench-results.json" --markdown docs/performance.md --png docs/performance.png
    mkdir -p "$ROOT/.state"
fi
exec "$ROOT/.venv/bin/python" -m tests.benchmarks --command-line tests/benchmarks/run.sh "$@"
