# shellcheck shell=bash
# Shared helpers for scripts/*.sh (sourced, not run).
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck disable=SC2034  # the variables below are used by the scripts that source this file

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STATE="$ROOT/.state"
COLLECTIONS="$ROOT/.collections"
# A directory whose ansible_collections/virtdev/libvirt is a symlink to this checkout: with it on
# PYTHONPATH, `import ansible_collections.virtdev.libvirt...` sees the working tree without a rebuild.
PYTHONPATH_VIEW="$STATE/pythonpath"
COLLECTION_NAMESPACE=virtdev
COLLECTION_NAME=libvirt

log() { printf '%s\n' "$*"; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }
die() {
    printf 'ERROR: %s\n' "$*" >&2
    exit 1
}

# Seconds since the epoch with two decimals, and the time since a start value.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Run as root, or through sudo when this is a normal user.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) for: $*"
    fi
}

# The files a release would contain: git-tracked files plus untracked files that .gitignore does not
# exclude, NUL-separated, relative to $ROOT. Outside a git checkout: every file but local state.
collection_files() {
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' f; do
                # skip files deleted from the work tree but still in the index
                if [ -e "$ROOT/$f" ] || [ -L "$ROOT/$f" ]; then printf '%s\0' "$f"; fi
            done
    else
        (cd "$ROOT" && find . \( -name .git -o -name .venv -o -name '.venv-*' -o -name .collections \
            -o -name .state -o -name .ansible -o -name __pycache__ -o -name .pytest_cache \
            -o -path ./tests/output \) -prune -o \( -type f -o -type l \) -printf '%P\0')
    fi
}

# Copy the collection's files into DEST/ansible_collections/virtdev/libvirt; print that path.
stage_collection() {
    local dest="$1/ansible_collections/$COLLECTION_NAMESPACE/$COLLECTION_NAME"
    mkdir -p "$dest"
    collection_files | (cd "$ROOT" && xargs -0 --no-run-if-empty cp --parents -P -t "$dest")
    printf '%s\n' "$dest"
}

ensure_pythonpath_view() {
    local link="$PYTHONPATH_VIEW/ansible_collections/$COLLECTION_NAMESPACE/$COLLECTION_NAME"
    mkdir -p "$(dirname "$link")"
    if [ "$(readlink "$link" 2>/dev/null)" != "../../../.." ]; then
        rm -f "$link"
        ln -s ../../../.. "$link"
    fi
}

require_venv() {
    [ -x "$VENV/bin/python" ] || die "$VENV is missing: run scripts/bootstrap.sh"
}
