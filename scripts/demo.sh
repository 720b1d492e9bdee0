#!/usr/bin/env bash
# The demo: bootstrap, then run playbooks/demo.yml twice against the embedded QEMU driver rooted at
# .state/embed, and check that the second run changed nothing (PLAY RECAP changed=0, failed=0).
#
#   scripts/demo.sh            # starts from an empty .state/embed (the demo's guests are defined anew)
#   scripts/demo.sh --keep     # keep what an earlier run defined in .state/embed
#   scripts/demo.sh --no-bootstrap
#
# Afterwards: virsh -c "qemu:///embed?root=$PWD/.state/embed" list --all
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KEEP=0
BOOTSTRAP=1
for arg in "$@"; do
    case "$arg" in
    --keep) KEEP=1 ;;
    --no-bootstrap) BOOTSTRAP=0 ;;
    -h | --help) awk 'NR > 1 && /^# GNU/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    *) die "unknown argument: $arg (try --help)" ;;
    esac
done

PLAYBOOK="$ROOT/playbooks/demo.yml"
EMBED="$STATE/embed"
LOGS="$STATE/demo"

if [ "$BOOTSTRAP" -eq 1 ]; then
    bash "$ROOT/scripts/bootstrap.sh"
fi
require_venv
[ -f "$PLAYBOOK" ] || die "$PLAYBOOK not found"

if [ "$KEEP" -eq 0 ] && [ -d "$EMBED" ]; then
    rm -rf "$EMBED"
fi
mkdir -p "$LOGS"
URI=$("$VENV/bin/python" "$ROOT/tests/harness/embed.py" prepare "$EMBED" --caps-cache "$STATE/qemu-caps/embed")

export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS"
export ANSIBLE_LOCALHOST_WARNING=false
export ANSIBLE_INVENTORY_UNPARSED_WARNING=false
export PATH="$VENV/bin:$PATH"

# Prints the PLAY RECAP line of host localhost from a log.
recap() { sed -n 's/^localhost[[:space:]]*:[[:space:]]*//p' "$1" | tail -1; }
recap_value() { recap "$1" | tr -s ' ' '\n' | sed -n "s/^$2=//p"; }

run_demo() { # run number
    local log="$LOGS/run$1.log" t rc
    t=$(now)
    printf '\n==== demo run %s: ansible-playbook playbooks/demo.yml -e libvirt_uri=%s\n' "$1" "$URI"
    set +e
    (cd "$ROOT" && ansible-playbook "$PLAYBOOK" -e "libvirt_uri=$URI") 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    printf -- '---- demo run %s: exit %s in %s s; recap: %s\n' "$1" "$rc" "$(elapsed "$t")" "$(recap "$log")"
    return "$rc"
}

status=0
run_demo 1 || status=$?
if [ "$status" -ne 0 ]; then
    echo "FAIL: the first demo run failed (exit $status); see $LOGS/run1.log"
    exit 1
fi
run_demo 2 || status=$?
changed=$(recap_value "$LOGS/run2.log" changed)
failed=$(recap_value "$LOGS/run2.log" failed)
if [ "$status" -eq 0 ] && [ "$changed" = 0 ] && [ "$failed" = 0 ]; then
    echo "PASS: the second demo run changed nothing (changed=0, failed=0)"
    exit 0
fi
echo "FAIL: the second demo run was not idempotent (exit $status, changed=${changed:-?}, failed=${failed:-?}); see $LOGS/run2.log"
exit 1
