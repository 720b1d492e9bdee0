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

# Side venvs of their own (never the main one): the second ansible-core of the version matrix
# (requirements/matrix.txt) and the release tools (requirements/release.txt), both on Python 3.12.
MATRIX_VENV="$STATE/venv-matrix"
RELEASE_VENV="$STATE/venv-release"
SIDE_PYTHON_VERSION=3.12

# The Python 3.12 interpreter for the side venvs: $SIDE_PYTHON, python3.12 on PATH, or pyenv's.
side_python() {
    local candidate
    for candidate in "${SIDE_PYTHON:-}" "$(command -v "python$SIDE_PYTHON_VERSION" 2>/dev/null)" \
        "$(command -v pyenv >/dev/null 2>&1 && pyenv root 2>/dev/null)"/versions/"$SIDE_PYTHON_VERSION".*/bin/python \
        "$HOME"/.pyenv/versions/"$SIDE_PYTHON_VERSION".*/bin/python; do
        if [ -z "$candidate" ] || [ ! -x "$candidate" ]; then continue; fi
        "$candidate" -c "import sys; sys.exit(sys.version_info[:2] != (${SIDE_PYTHON_VERSION/./, }))" 2>/dev/null &&
            { printf '%s\n' "$candidate"; return 0; }
    done
    return 1
}

# Create or refresh VENV from requirements/FILE (only when FILE or the interpreter changed).
ensure_side_venv() { # venv requirements-file
    local venv="$1" reqs="$2" python stamp want have=""
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        python=$(side_python) || die "no Python $SIDE_PYTHON_VERSION for $venv (set SIDE_PYTHON, or install it with pyenv)"
        rm -rf "$venv"
        "$python" -m venv "$venv" || die "cannot create $venv"
    fi
    stamp="$venv/.bootstrap-requirements"
    want=$(cat "$reqs" <("$venv/bin/python" -V 2>&1) | sha256sum | cut -d' ' -f1)
    [ -f "$stamp" ] && have=$(cat "$stamp")
    [ "$want" = "$have" ] && return 0
    log "Installing $(basename "$reqs") into $venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$reqs" || die "pip install -r $reqs failed"
    printf '%s\n' "$want" >"$stamp"
}
