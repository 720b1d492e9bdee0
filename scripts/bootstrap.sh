#!/usr/bin/env bash
# Set up everything the collection's demo and tests need on a Debian 12 host, then build the
# collection and install it into .collections/ (ANSIBLE_COLLECTIONS_PATH=$PWD/.collections).
#
#   scripts/bootstrap.sh
#
# Idempotent: Debian packages, the libvirt-qemu account and the venv are only touched when something
# is missing or requirements/*.txt changed. The collection is rebuilt on every call (a few seconds)
# so edits are picked up. Environment: PYTHON (default python3, must be 3.11+).
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

T0=$(now)
SUMMARY=()
PYTHON="${PYTHON:-python3}"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON to a Python 3.11 interpreter)"
PYTHON_REAL=$(readlink -f "$(command -v "$PYTHON")")

# --- 1. Debian packages ------------------------------------------------------------------------
step_packages() {
    local t0 pkgs=() missing=() pkg
    t0=$(now)
    mapfile -t pkgs < <(sed -e 's/#.*//' -e 's/[[:space:]]//g' "$ROOT/requirements/apt-packages.txt" | grep -v '^$')
    # Debian's own python3 (not pyenv's) needs its headers to build libvirt-python and python3-venv
    # for `python3 -m venv`.
    if [[ "$PYTHON_REAL" == /usr/bin/* ]]; then
        "$PYTHON" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' ||
            pkgs+=(python3-dev)
        "$PYTHON" -c 'import ensurepip' 2>/dev/null || pkgs+=(python3-venv)
    fi
    for pkg in "${pkgs[@]}"; do
        if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
            missing+=("$pkg")
        fi
    done
    if [ "${#missing[@]}" -eq 0 ]; then
        SUMMARY+=("apt packages: all ${#pkgs[@]} present ($(elapsed "$t0") s)")
        return
    fi
    log "Installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -q
    as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
    SUMMARY+=("apt packages: installed ${#missing[@]} of ${#pkgs[@]} ($(elapsed "$t0") s)")
}

# --- 2. the account QEMU's drivers look up -----------------------------------------------------
# Debian's libvirt is built to run QEMU as libvirt-qemu; even with user = "root" in qemu.conf the
# QEMU driver refuses to start without that account ("Failed to parse user 'libvirt-qemu'").
# libvirt-daemon-system would create it, but that package also starts system services.
step_account() {
    local made=()
    if ! getent group libvirt-qemu >/dev/null; then
        as_root groupadd --system libvirt-qemu
        made+=(group)
    fi
    if ! getent passwd libvirt-qemu >/dev/null; then
        as_root useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt --no-create-home \
            --shell /usr/sbin/nologin --comment 'Libvirt Qemu' libvirt-qemu
        made+=(user)
    fi
    if [ "${#made[@]}" -eq 0 ]; then
        SUMMARY+=("libvirt-qemu account: present")
    else
        SUMMARY+=("libvirt-qemu account: created ${made[*]}")
    fi
}

# --- 3. Python virtual environment -------------------------------------------------------------
step_venv() {
    local t0 python="$PYTHON" stamp want have=""
    t0=$(now)
    "$python" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' ||
        die "$python is $("$python" -V 2>&1); ansible-core 2.19 and these pins need Python 3.11+"
    if [ -x "$VENV/bin/python" ] && ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        warn "$VENV is broken (its interpreter does not run): recreating it"
        rm -rf "$VENV"
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        log "Creating $VENV with $("$python" -V 2>&1)"
        "$python" -m venv "$VENV"
    fi
    stamp="$VENV/.bootstrap-requirements"
    want=$(cat "$ROOT"/requirements/{constraints,dev,runtime}.txt <("$VENV/bin/python" -V 2>&1) | sha256sum | cut -d' ' -f1)
    [ -f "$stamp" ] && have=$(cat "$stamp")
    if [ "$want" = "$have" ]; then
        SUMMARY+=("venv: up to date ($("$VENV/bin/python" -V 2>&1), $(elapsed "$t0") s)")
        return
    fi
    log "Installing requirements/dev.txt into $VENV"
    (cd "$ROOT/requirements" && "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r dev.txt)
    "$VENV/bin/python" -c 'import ansible, libvirt, lxml, pytest' || die "venv check failed after pip install"
    printf '%s\n' "$want" >"$stamp"
    SUMMARY+=("venv: installed requirements/dev.txt ($(elapsed "$t0") s)")
}

# --- 4. build and install the collection -------------------------------------------------------
step_collection() {
    local t0 work src tarball version
    t0=$(now)
    [ -f "$ROOT/galaxy.yml" ] || die "galaxy.yml not found in $ROOT"
    mkdir -p "$STATE"
    work=$(mktemp -d "$STATE/build.XXXXXX")
    # Build from exactly the files a commit would hold (tracked + untracked but not ignored), so
    # local state (.venv, .state, caches) can never end up in the artifact.
    src=$(stage_collection "$work/src")
    [ -f "$src/README.md" ] || die "README.md is missing: galaxy.yml names it as the collection's readme"
    "$VENV/bin/ansible-galaxy" collection build --force --output-path "$work" "$src" >"$work/build.log" 2>&1 ||
        { cat "$work/build.log" >&2; rm -rf "$work"; die "ansible-galaxy collection build failed"; }
    tarball=$(ls "$work"/"$COLLECTION_NAMESPACE"-"$COLLECTION_NAME"-*.tar.gz)
    "$VENV/bin/ansible-galaxy" collection install --force --offline -p "$COLLECTIONS" "$tarball" \
        >"$work/install.log" 2>&1 ||
        { cat "$work/install.log" >&2; rm -rf "$work"; die "ansible-galaxy collection install failed"; }
    mkdir -p "$STATE/dist"
    rm -f "$STATE/dist/$COLLECTION_NAMESPACE-$COLLECTION_NAME-"*.tar.gz
    mv "$tarball" "$STATE/dist/"
    rm -rf "$work"
    version=$(sed -n 's/^version:[[:space:]]*//p' "$ROOT/galaxy.yml" | tr -d "\"'")
    ensure_pythonpath_view
    SUMMARY+=("collection: $COLLECTION_NAMESPACE.$COLLECTION_NAME $version built and installed into .collections ($(elapsed "$t0") s)")
}

# --- 5. side venvs: the version matrix's second ansible-core and the release tools -----------------
# Each is installed in the background while the main venv installs (pip is mostly one process waiting on
# one core: three at a time use both); the log of a failed one is printed.
SIDE_JOBS=()
start_side_venvs() {
    local pair side reqs log
    SIDE_T0=$(now)
    mkdir -p "$STATE"
    for pair in "$MATRIX_VENV:$ROOT/requirements/matrix.txt" "$RELEASE_VENV:$ROOT/requirements/release.txt"; do
        side="${pair%%:*}" reqs="${pair#*:}"
        log="$STATE/bootstrap-$(basename "$side").log"
        (ensure_side_venv "$side" "$reqs") >"$log" 2>&1 </dev/null &
        SIDE_JOBS+=("$!:$log")
    done
}

finish_side_venvs() {
    local job failed=0
    for job in "${SIDE_JOBS[@]}"; do
        if ! wait "${job%%:*}"; then
            cat "${job#*:}" >&2
            failed=1
        fi
    done
    [ "$failed" -eq 0 ] || die "a side venv could not be made (output above)"
    SUMMARY+=("side venvs: $("$MATRIX_VENV/bin/python" -c 'import ansible.release as r; print("ansible-core", r.__version__)') in $MATRIX_VENV, release tools in $RELEASE_VENV ($(elapsed "$SIDE_T0") s, alongside the main venv)")
}

step_packages
step_account
start_side_venvs
step_venv
step_collection
finish_side_venvs

log ""
log "bootstrap summary"
for line in "${SUMMARY[@]}"; do log "  $line"; done
log "  versions: $("$VENV/bin/python" -V 2>&1), ansible-core $("$VENV/bin/python" -c 'import ansible.release as r; print(r.__version__)'), libvirt $(libvirtd --version | awk '{print $NF}'), $(qemu-system-x86_64 --version | head -1 | awk '{print "QEMU", $4}')"
log "  total: $(elapsed "$T0") s"
