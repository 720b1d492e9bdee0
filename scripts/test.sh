#!/usr/bin/env bash
# Every test of the collection, in stages:
#
#   unit         pytest tests/unit
#   functional   pytest tests/functional (modules against the embedded driver and a private libvirtd)
#   bench        pytest tests/benchmarks (the benchmark harness at tiny N: correctness, idempotence, no writes)
#   kernel       pytest tests/kernel (real Debian kernel under QEMU TCG with an emulated IOMMU), except:
#   bootloader   pytest tests/kernel/test_kernel_cmdline_bootloader.py (OVMF + systemd-boot: a guest rebooted
#                by the module's change); in the second lane, first, so that it boots while the functional
#                stage runs (one test-bed guest at a time: testbed.py's host lock)
#   sanity       ansible-test sanity on a copy of the collection (no ignore entries allowed)
#   lint         ansible-lint (profile from .ansible-lint) over the whole repository
#   molecule     `molecule test` of every roles/*/molecule/* scenario (default driver, this host)
#   integration  every tests/integration/targets/* on a fresh embed root AND on a private libvirtd (aliases
#                skip/embed, skip/libvirtd: one of them)
#   matrix       the newest ansible-core (requirements/matrix.txt, Python 3.12, .state/venv-matrix): the unit
#                tests that run modules and plugins, the sanity tests that differ by version, and the
#                integration targets listed in MATRIX_TARGETS on the embedded driver
#   release      the release checks: build + install of the tarball (contents checked), galaxy-importer
#                offline, antsibull-changelog lint + a trial release, ansible-builder (the collection's EE
#                metadata and the example image), the antsibull-docs docsite (fails on warnings)
#
# A run that includes the functional stage ends by writing docs/reliability.md from the figures the
# stages leave in $VIRTDEV_RELIABILITY_DIR (scripts/render_reliability.py).
#
#   scripts/test.sh                          # bootstrap, then every stage
#   scripts/test.sh --only unit,sanity       # some stages (--only may be repeated)
#   scripts/test.sh --only integration --target harness_smoke
#   scripts/test.sh --no-bootstrap ...       # skip scripts/bootstrap.sh (quick loops)
#   scripts/test.sh --serial ...             # one stage at a time (see below)
#
# Two lanes share the machine's cores: the stages that boot TCG guests (functional, kernel) run one after
# the other in the main lane, whose output is printed as it comes; the other stages run one after the
# other in a second lane at the same time, their output kept in a log that is printed when the main lane
# is done (each of their results is also announced as it comes, marked 'lane 2'). No stage depends on
# another's output; each has its own directories, embed roots and private libvirtd. --serial (or
# VIRTDEV_TEST_SERIAL=1) runs the stages in the order listed above, in one lane.
#
# Ends with a line 'N passed, N failed' (stages; each integration target on each URI counts once)
# and exits non-zero when anything failed.
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_STAGES=(bootloader unit functional bench kernel sanity lint molecule integration matrix release)
ONLY=()
TARGETS=()
BOOTSTRAP=1
SERIAL="${VIRTDEV_TEST_SERIAL:-0}"
# the stages that boot TCG guests: the main lane; the rest go to the second lane
GUEST_STAGES=(functional kernel)
BOOTLOADER_TESTS=tests/kernel/test_kernel_cmdline_bootloader.py

usage() { awk 'NR > 1 && /^# GNU/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
    --only)
        [ $# -ge 2 ] || die "--only needs a stage name"
        IFS=',' read -r -a more <<<"$2"
        ONLY+=("${more[@]}")
        shift 2
        ;;
    --only=*)
        IFS=',' read -r -a more <<<"${1#--only=}"
        ONLY+=("${more[@]}")
        shift
        ;;
    --target)
        [ $# -ge 2 ] || die "--target needs a target name"
        TARGETS+=("$2")
        shift 2
        ;;
    --no-bootstrap) BOOTSTRAP=0; shift ;;
    --serial) SERIAL=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
    esac
done
for stage in "${ONLY[@]}"; do
    [[ " ${ALL_STAGES[*]} " == *" $stage "* ]] || die "unknown stage '$stage' (stages: ${ALL_STAGES[*]})"
done
[ "${#ONLY[@]}" -gt 0 ] || ONLY=("${ALL_STAGES[@]}")

T0=$(now)
RESULTS=()     # "stage|status|name|seconds|note"
CURRENT_STAGE=bootstrap  # the stage that is running (results are listed by stage in the summary)
LANE=""        # set in the second lane: its results are also announced on the console (fd 3)
exec 3>&1

record() { # status name start [note]
    local status="$1" name="$2" secs line
    secs=$(elapsed "$3")
    RESULTS+=("$CURRENT_STAGE|$status|$name|$secs|${4:-}")
    line=$(printf -- '---- %s: %s (%s s)%s' "$name" "$status" "$secs" "${4:+ - $4}")
    printf '%s\n' "$line"
    if [ -n "$LANE" ]; then printf '%s [%s, %s]\n' "$line" "$LANE" "$(date '+%H:%M:%S')" >&3; fi
}

header() { printf '\n==== %s ==== %s\n' "$1" "$(date '+%H:%M:%S')"; }

summary() {
    local line stage status name secs note PASSED=0 FAILED=0 SKIPPED=0
    printf '\n==== summary (%s s) ====\n' "$(elapsed "$T0")"
    for stage in bootstrap "${ALL_STAGES[@]}" reliability-page; do
        for line in "${RESULTS[@]}"; do
            IFS='|' read -r status name secs note <<<"${line#*|}"
            [ "${line%%|*}" = "$stage" ] || continue
            printf '  %-4s  %-40s %7s s  %s\n' "$status" "$name" "$secs" "$note"
            case "$status" in
            PASS) PASSED=$((PASSED + 1)) ;;
            FAIL) FAILED=$((FAILED + 1)) ;;
            *) SKIPPED=$((SKIPPED + 1)) ;;
            esac
        done
    done
    if [ "$SKIPPED" -gt 0 ]; then
        printf '%d passed, %d failed, %d skipped\n' "$PASSED" "$FAILED" "$SKIPPED"
    else
        printf '%d passed, %d failed\n' "$PASSED" "$FAILED"
    fi
    [ "$FAILED" -eq 0 ]
}

# --- set-up ------------------------------------------------------------------------------------
if [ "$BOOTSTRAP" -eq 1 ]; then
    header bootstrap
    t=$(now)
    if bash "$ROOT/scripts/bootstrap.sh"; then
        record PASS bootstrap "$t"
    else
        record FAIL bootstrap "$t" "scripts/bootstrap.sh failed: nothing else ran"
        summary
        exit 1
    fi
fi
require_venv
ensure_pythonpath_view

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/virtdev-test.XXXXXX")
LIBVIRTD_DIR="$RUN_DIR/libvirtd"
CAPS_CACHE="$STATE/qemu-caps"
cleanup() {
    # an interrupted run: the second lane's process group first
    if [ -n "${LANE2_PID:-}" ]; then
        kill -TERM -- "-$LANE2_PID" 2>/dev/null && wait "$LANE2_PID" 2>/dev/null
        printf '\n==== second lane: its output until it was stopped ====\n'
        cat "$RUN_DIR/lane2.log" 2>/dev/null
    fi
    # every private libvirtd started below RUN_DIR (integration's, and pytest sessions' that did not
    # get to their teardown) is stopped by PID before the directory goes
    local pidfile
    while IFS= read -r pidfile; do
        "$VENV/bin/python" "$ROOT/tests/harness/libvirtd.py" stop "$(dirname "$pidfile")" >/dev/null 2>&1 || true
    done < <(find "$RUN_DIR" -name libvirtd.pid 2>/dev/null)
    rm -rf "$RUN_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$PYTHONPATH_VIEW${PYTHONPATH:+:$PYTHONPATH}"
export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS"
export ANSIBLE_LOCALHOST_WARNING=false
export ANSIBLE_INVENTORY_UNPARSED_WARNING=false
export ANSIBLE_NOCOLOR=1
export VIRTDEV_QEMU_CAPS_CACHE="$CAPS_CACHE"
export PYTHONDONTWRITEBYTECODE=1
# Stages leave their reliability figures here; docs/reliability.md is written from them at the end.
export VIRTDEV_RELIABILITY_DIR="$RUN_DIR/reliability"
# In CI a missing test bed is a failure, not a skip (tests/kernel/conftest.py).
if [ "${CI:-}" = true ]; then export VIRTDEV_TESTBED_REQUIRED="${VIRTDEV_TESTBED_REQUIRED:-1}"; fi
cd "$ROOT" || die "cannot cd to $ROOT"

want() { [[ " ${ONLY[*]} " == *" $1 "* ]]; }

# pytest on a directory; exit code 5 (nothing collected) is not a failure.
run_pytest_stage() {
    local name="$1" dir="$2" timeout="$3" t rc
    shift 3  # the rest: more pytest arguments
    header "$name: pytest $dir"
    t=$(now)
    if [ ! -e "$dir" ]; then
        record SKIP "$name" "$t" "no $dir"
        return
    fi
    python -m pytest -p no:cacheprovider -q -rfEs --timeout="$timeout" --basetemp="$RUN_DIR/pytest-$name" "$@" "$dir"
    rc=$?
    case "$rc" in
    0) record PASS "$name" "$t" ;;
    5) record PASS "$name" "$t" "no tests collected in $dir" ;;
    *) record FAIL "$name" "$t" "pytest exit code $rc" ;;
    esac
}

# --- sanity ------------------------------------------------------------------------------------
# run_sanity NAME VENV HOME [ansible-test sanity options...]: ansible-test of VENV on a copy of the
# collection, with HOME (ansible-test's caches and per-test venvs) private to this checkout and VENV.
run_sanity() {
    local name="$1" tool_venv="$2" home="$3" t dest pyver pip_version standin rc bad=()
    shift 3
    header "$name: ansible-test sanity $*"
    t=$(now)
    # Ignore files must not exist or must be empty.
    for f in tests/sanity/ignore-*.txt; do
        [ -e "$f" ] || continue
        if grep -qv '^[[:space:]]*\(#.*\)\{0,1\}$' "$f"; then bad+=("$f"); fi
    done
    if [ "${#bad[@]}" -gt 0 ]; then
        record FAIL "$name" "$t" "ignore entries present in: ${bad[*]}"
        return
    fi
    dest=$(stage_collection "$RUN_DIR/$name")
    # ansible-test creates one venv per sanity test and bootstraps pip in it with a get-pip script it
    # downloads from a host this machine cannot reach; a local stand-in in its cache dir is used
    # instead.
    pyver=$("$tool_venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    pip_version=$("$tool_venv/bin/python" - "$pyver" <<'PYEOF'
import sys
from ansible_test._internal.python_requirements import get_venv_packages
class Python:  # the only attribute get_venv_packages reads
    version = sys.argv[1]
print(get_venv_packages(Python())['pip'])
PYEOF
    ) || pip_version=24.2
    standin="$home/.ansible/test/cache/get_pip_${pip_version//./_}.py"
    mkdir -p "$(dirname "$standin")"
    cp "$ROOT/tests/harness/get_pip_standin.py" "$standin"
    # the pip wheel itself, so that each new environment installs pip once, from it (the stand-in falls
    # back to ensurepip + an upgrade without it)
    "$tool_venv/bin/python" -m pip download --disable-pip-version-check -q --no-deps -d "$(dirname "$standin")/wheels" \
        "pip==$pip_version" >/dev/null || warn "could not download pip $pip_version: the sanity venvs bootstrap pip the slow way"
    # ansible-test passes only HOME and PATH (+ a few) to pip: pip's settings must come from config
    # files (/etc/pip.conf, ...), and its cache is $home/.cache/pip.
    (cd "$dest" && PATH="$tool_venv/bin:$PATH" HOME="$home" "$tool_venv/bin/ansible-test" sanity --local --python "$pyver" --color no "$@")
    rc=$?
    if [ "$rc" -eq 0 ]; then record PASS "$name" "$t"; else record FAIL "$name" "$t" "ansible-test exit code $rc"; fi
}

stage_sanity() { run_sanity sanity "$VENV" "$STATE/ansible-test-home"; }

# --- lint --------------------------------------------------------------------------------------
# ansible-lint over the whole repository (profile and excluded local state in .ansible-lint)
stage_lint() {
    local t rc
    header "lint: ansible-lint (whole repository)"
    t=$(now)
    # a home of this checkout's own: ansible-lint installs the collection under $ANSIBLE_HOME/collections, and
    # a shared ~/.ansible holding another checkout's copy would hide this one's playbooks from the syntax check
    ANSIBLE_HOME="$ROOT/.state/ansible-home" ansible-lint --offline --nocolor
    rc=$?
    if [ "$rc" -eq 0 ]; then record PASS lint "$t"; else record FAIL lint "$t" "ansible-lint exit code $rc"; fi
}

# --- molecule ----------------------------------------------------------------------------------
stage_molecule() {
    local t t1 found=0 config scenario_dir role_dir scenario rc
    header "molecule: roles/*/molecule/*"
    t=$(now)
    for config in roles/*/molecule/*/molecule.yml; do
        [ -f "$config" ] || continue
        found=1
        scenario_dir=$(dirname "$config")
        role_dir=$(dirname "$(dirname "$scenario_dir")")
        scenario=$(basename "$scenario_dir")
        t1=$(now)
        header "molecule/$(basename "$role_dir")/$scenario"
        (cd "$role_dir" && NO_COLOR=1 PY_COLORS=0 ANSIBLE_FORCE_COLOR=0 molecule test -s "$scenario")
        rc=$?
        if [ "$rc" -eq 0 ]; then
            record PASS "molecule/$(basename "$role_dir")/$scenario" "$t1"
        else
            record FAIL "molecule/$(basename "$role_dir")/$scenario" "$t1" "molecule exit code $rc"
        fi
    done
    [ "$found" -eq 1 ] || record SKIP molecule "$t" "no roles/*/molecule/*/molecule.yml"
}

# --- integration -------------------------------------------------------------------------------
target_has_alias() { # target alias
    local file="tests/integration/targets/$1/aliases"
    [ -f "$file" ] && sed -e 's/#.*//' -e 's/[[:space:]]//g' "$file" | grep -qx "$2"
}

stage_integration() {
    local t targets=() target where uri libvirtd_uri="" embed_template t1 rc d
    header "integration: tests/integration/targets on the embedded driver and a private libvirtd"
    t=$(now)
    if [ "${#TARGETS[@]}" -gt 0 ]; then
        targets=("${TARGETS[@]}")
    else
        for d in tests/integration/targets/*/; do
            [ -f "$d/tasks/main.yml" ] && targets+=("$(basename "$d")")
        done
    fi
    if [ "${#targets[@]}" -eq 0 ]; then
        record SKIP integration "$t" "no targets"
        return
    fi
    embed_template="$RUN_DIR/embed-template"
    if ! python tests/harness/embed.py prepare "$embed_template" --caps-cache "$CAPS_CACHE/embed" >/dev/null; then
        record FAIL "integration: embedded driver" "$t" "the embedded QEMU driver does not work"
        embed_template=""
    fi
    if libvirtd_uri=$(python tests/harness/libvirtd.py start "$LIBVIRTD_DIR" --caps-cache "$CAPS_CACHE/libvirtd"); then
        printf 'private libvirtd: %s (started in %s s)\n' "$libvirtd_uri" "$(elapsed "$t")"
    else
        record FAIL "integration: private libvirtd" "$t" "could not start a private libvirtd"
        libvirtd_uri=""
    fi
    for target in "${targets[@]}"; do
        if [ ! -f "tests/integration/targets/$target/tasks/main.yml" ]; then
            record FAIL "integration/$target" "$(now)" "no tests/integration/targets/$target/tasks/main.yml"
            continue
        fi
        for where in embed libvirtd; do
            t1=$(now)
            if target_has_alias "$target" disabled || target_has_alias "$target" unsupported; then
                record SKIP "integration/$target@$where" "$t1" "aliases: disabled/unsupported"
                continue
            fi
            if target_has_alias "$target" "skip/$where"; then
                record SKIP "integration/$target@$where" "$t1" "aliases: skip/$where"
                continue
            fi
            if [ "$where" = embed ]; then
                [ -n "$embed_template" ] || { record FAIL "integration/$target@$where" "$t1" "no embedded driver"; continue; }
                uri=$(python tests/harness/embed.py prepare "$RUN_DIR/embed-$target" --seed-from "$embed_template")
            else
                [ -n "$libvirtd_uri" ] || { record FAIL "integration/$target@$where" "$t1" "no private libvirtd"; continue; }
                uri="$libvirtd_uri"
            fi
            header "integration/$target@$where ($uri)"
            ansible-playbook tests/integration/run_target.yml -e "target=$target" -e "libvirt_uri=$uri"
            rc=$?
            if [ "$rc" -eq 0 ]; then
                record PASS "integration/$target@$where" "$t1"
            else
                record FAIL "integration/$target@$where" "$t1" "ansible-playbook exit code $rc"
            fi
        done
    done
    if [ -n "$libvirtd_uri" ]; then
        python tests/harness/libvirtd.py stop "$LIBVIRTD_DIR" >/dev/null ||
            warn "could not stop the private libvirtd in $LIBVIRTD_DIR"
    fi
}

# --- matrix: the newest ansible-core -----------------------------------------------------------
# The main venv holds the oldest ansible-core the collection claims (meta/runtime.yml); this stage runs
# what differs by version on the newest one, within ~6 minutes: the unit tests that run modules and
# plugins through ansible-core (module_utils import only the standard library, libvirt and lxml: their
# tests do not depend on it), the sanity tests whose rules come with ansible-core, and a subset of
# integration targets on the embedded driver.
MATRIX_UNIT=(tests/unit/plugins/modules tests/unit/plugins/filter tests/unit/test_hostile_inputs.py tests/unit/test_module_examples.py)
MATRIX_SANITY=(--test ansible-doc --test compile --test import --test validate-modules --test action-plugin-docs)
MATRIX_TARGETS=(action_group domain)

stage_matrix() {
    local t version target uri rc template
    t=$(now)
    if [ ! -x "$MATRIX_VENV/bin/ansible-playbook" ]; then
        record FAIL matrix "$t" "$MATRIX_VENV is missing: run scripts/bootstrap.sh"
        return
    fi
    version=$("$MATRIX_VENV/bin/python" -c 'import ansible.release as r; print(r.__version__)')
    header "matrix: ansible-core $version, $("$MATRIX_VENV/bin/python" -V 2>&1): unit"
    "$MATRIX_VENV/bin/python" -m pytest -p no:cacheprovider -q -rfEs --timeout=300 \
        --basetemp="$RUN_DIR/pytest-matrix" "${MATRIX_UNIT[@]}"
    rc=$?
    if [ "$rc" -eq 0 ]; then record PASS "matrix/$version/unit" "$t"; else record FAIL "matrix/$version/unit" "$t" "pytest exit code $rc"; fi

    run_sanity "matrix/$version/sanity" "$MATRIX_VENV" "$STATE/ansible-test-home-matrix" "${MATRIX_SANITY[@]}"

    template="$RUN_DIR/matrix-embed-template"
    t=$(now)
    if ! python tests/harness/embed.py prepare "$template" --caps-cache "$CAPS_CACHE/embed" >/dev/null; then
        record FAIL "matrix/$version/integration" "$t" "the embedded QEMU driver does not work"
        return
    fi
    for target in "${MATRIX_TARGETS[@]}"; do
        t=$(now)
        uri=$(python tests/harness/embed.py prepare "$RUN_DIR/matrix-embed-$target" --seed-from "$template")
        header "matrix/$version/integration/$target@embed ($uri)"
        "$MATRIX_VENV/bin/ansible-playbook" tests/integration/run_target.yml -e "target=$target" -e "libvirt_uri=$uri"
        rc=$?
        if [ "$rc" -eq 0 ]; then
            record PASS "matrix/$version/integration/$target@embed" "$t"
        else
            record FAIL "matrix/$version/integration/$target@embed" "$t" "ansible-playbook exit code $rc"
        fi
    done
}

# --- release: what Galaxy, AWX and the docsite will do with the release ------------------------------
release_step() { # name command... (records PASS/FAIL of one release check)
    local name="$1" t rc
    shift
    header "release/$name"
    t=$(now)
    "$@"
    rc=$?
    if [ "$rc" -eq 0 ]; then record PASS "release/$name" "$t"; else record FAIL "release/$name" "$t" "exit code $rc"; fi
}

# build the tarball from the files a commit would hold, install it, and check what it holds
release_build() {
    local src listing missing=() shipped=() f
    src=$(stage_collection "$REL/src") || return 1
    ansible-galaxy collection build --output-path "$REL" "$src" || return 1
    TARBALL=$(ls "$REL/$COLLECTION_NAMESPACE-$COLLECTION_NAME-$VERSION.tar.gz") || return 1
    ansible-galaxy collection install --force --offline -p "$REL/installed" "$TARBALL" || return 1
    listing=$(tar -tzf "$TARBALL") || return 1
    for f in LICENSE README.md MANIFEST.json FILES.json meta/runtime.yml meta/execution-environment.yml \
        meta/ee-requirements.txt meta/ee-bindep.txt docs/docsite/extra-docs.yml docs/docsite/links.yml \
        tests/config.yml $(cd "$ROOT" && ls roles/*/README.md plugins/modules/*.py); do
        grep -qx "$f" <<<"$listing" || missing+=("$f")
    done
    for f in scripts/ requirements/ tests/benchmarks/ tests/harness/ tests/kernel/ tests/functional/ .ci/ .state/ .venv; do
        grep -q "^$f" <<<"$listing" && shipped+=("$f")
    done
    [ "${#missing[@]}" -eq 0 ] || { printf 'missing from the tarball: %s\n' "${missing[*]}"; return 1; }
    [ "${#shipped[@]}" -eq 0 ] || { printf 'dev tooling in the tarball (build_ignore): %s\n' "${shipped[*]}"; return 1; }
    printf '%s: %s files, %s bytes\n' "$(basename "$TARBALL")" "$(wc -l <<<"$listing")" "$(stat -c %s "$TARBALL")"
}

# galaxy-importer as Galaxy runs it, offline, with the required tags checked; ansible-lint is the lint
# stage's (whole repository); any warning of the importer fails
release_importer() {
    local log="$REL/importer.log" rc
    (cd "$REL" && HOME="$REL/importer-home" GALAXY_IMPORTER_CHECK_REQUIRED_TAGS=true \
        GALAXY_IMPORTER_RUN_ANSIBLE_LINT=false GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP="$REL/importer-tmp" \
        GALAXY_IMPORTER_TMP_ROOT_DIR="$REL" PATH="$RELEASE_VENV/bin:$PATH" \
        "$RELEASE_VENV/bin/python" -m galaxy_importer.main "$TARBALL") >"$log" 2>&1
    rc=$?
    cat "$log"
    [ "$rc" -eq 0 ] || return 1
    ! grep -E '^(WARNING|ERROR)|Traceback' "$log" || { echo "galaxy-importer reported the lines above"; return 1; }
    grep -q 'Importer processing completed successfully' "$log"
}

# fragments lint, then a trial release of galaxy.yml's version in a copy (new modules and roles listed)
release_changelog() {
    local copy name
    antsibull-changelog lint || return 1
    copy=$(stage_collection "$REL/changelog") || return 1
    (cd "$copy" && ANSIBLE_COLLECTIONS_PATH="$REL/changelog" antsibull-changelog release --version "$VERSION") || return 1
    grep -q "^v$VERSION$" "$copy/CHANGELOG.rst" || { echo "CHANGELOG.rst has no v$VERSION section"; return 1; }
    if grep -q '^releases: {}' "$ROOT/changelogs/changelog.yaml"; then   # the first release lists everything
        for name in "$ROOT"/plugins/modules/*.py "$ROOT"/roles/*/; do
            name=$(basename "${name%.py}")
            grep -q "virtdev\.libvirt\.$name - " "$copy/CHANGELOG.rst" ||
                { echo "the trial release does not list virtdev.libvirt.$name (version_added?)"; return 1; }
        done
    fi
}

# ansible-builder: the collection's EE metadata as an image that includes it reads it (introspect of
# the installed tarball), and the docs example image definition with the tarball (create)
release_ee() {
    local deps ctx
    deps=$("$RELEASE_VENV/bin/ansible-builder" introspect --sanitize "$REL/installed") || return 1
    printf '%s\n' "$deps"
    if ! grep -q 'libvirt-python' <<<"$deps" || ! grep -q 'openssh-client' <<<"$deps" || ! grep -q 'libvirt-dev' <<<"$deps"; then
        echo "introspect does not list the collection's Python and system dependencies"
        return 1
    fi
    ctx="$REL/ee"
    cp -r "$ROOT/docs/docsite/examples/ee" "$ctx" && cp "$TARBALL" "$ctx/" || return 1
    grep -q "/$(basename "$TARBALL")\$" "$ctx/requirements.yml" ||
        { echo "docs/docsite/examples/ee/requirements.yml does not name $(basename "$TARBALL")"; return 1; }
    (cd "$ctx" && "$RELEASE_VENV/bin/ansible-builder" create -f execution-environment.yml --context context) || return 1
    if [ ! -f "$ctx/context/_build/collections/$(basename "$TARBALL")" ] || [ ! -f "$ctx/context/Dockerfile" ]; then
        echo "the example's build context lacks the tarball or its Dockerfile"
        return 1
    fi
}

# the antsibull-docs docsite: module, role and plugin docs plus the guides (docs/docsite/rst, from
# docs/*.md by scripts/gen_docsite.py). Offline, Sphinx cannot fetch the intersphinx inventories of
# docs.python.org and docs.ansible.com, so those warnings and the references they would resolve
# (ansible-core's own labels, NETWORK_LABELS) are let through; any other warning fails.
NETWORK_LABELS="common_return_values|ansible_configuration_settings|ansible_collections\.ansible\.builtin\.[a-z_]+"
release_docsite() {
    local copy log="$REL/docsite.log" warnings="$REL/docsite-warnings.log" rc
    "$RELEASE_VENV/bin/python" scripts/gen_docsite.py --check || return 1
    copy=$(stage_collection "$REL/docsite-src") || return 1
    mkdir -p "$REL/docsite"
    (
        export PATH="$RELEASE_VENV/bin:$PATH" ANSIBLE_COLLECTIONS_PATH="$REL/docsite-src"
        antsibull-docs lint-collection-docs --plugin-docs "$copy" &&
            antsibull-docs sphinx-init --use-current --fail-on-error --dest-dir "$REL/docsite" \
                "$COLLECTION_NAMESPACE.$COLLECTION_NAME" &&
            sed -i "s|-W --keep-going|--keep-going -w $warnings|" "$REL/docsite/build.sh" &&
            "$REL/docsite/build.sh"
    ) >"$log" 2>&1
    rc=$?
    cat "$log"
    [ "$rc" -eq 0 ] || return 1
    if grep 'WARNING' "$warnings" | grep -vE "failed to reach any of the inventories|undefined label: '($NETWORK_LABELS)'"; then
        echo "the docsite build warned (lines above)"
        return 1
    fi
    [ -f "$REL/docsite/build/html/collections/$COLLECTION_NAMESPACE/$COLLECTION_NAME/index.html" ] &&
        [ -f "$REL/docsite/build/html/collections/$COLLECTION_NAMESPACE/$COLLECTION_NAME/docsite/guide_gpu_passthrough.html" ]
}

stage_release() {
    local t
    t=$(now)
    if [ ! -x "$RELEASE_VENV/bin/galaxy-importer" ] && [ ! -x "$RELEASE_VENV/bin/antsibull-docs" ]; then
        record FAIL release "$t" "$RELEASE_VENV is missing: run scripts/bootstrap.sh"
        return
    fi
    REL="$RUN_DIR/release"
    mkdir -p "$REL"
    VERSION=$(sed -n 's/^version:[[:space:]]*//p' galaxy.yml | tr -d "\"'")
    TARBALL=""
    release_step build release_build
    if [ -z "$TARBALL" ]; then
        record FAIL release "$t" "no tarball: the other release checks did not run"
        return
    fi
    release_step galaxy-importer release_importer
    release_step changelog release_changelog
    release_step ansible-builder release_ee
    release_step docsite release_docsite
}

run_stage() {
    CURRENT_STAGE="$1"
    case "$1" in
    unit) run_pytest_stage unit tests/unit 300 ;;
    functional) run_pytest_stage functional tests/functional 900 ;;
    bench) run_pytest_stage bench tests/benchmarks 600 ;;
    kernel) run_pytest_stage kernel tests/kernel 900 --ignore="$BOOTLOADER_TESTS" ;;
    bootloader) run_pytest_stage bootloader "$BOOTLOADER_TESTS" 900 ;;
    sanity) stage_sanity ;;
    lint) stage_lint ;;
    molecule) stage_molecule ;;
    integration) stage_integration ;;
    matrix) stage_matrix ;;
    release) stage_release ;;
    esac
}

LANE1=() LANE2=()
for stage in "${ALL_STAGES[@]}"; do
    want "$stage" || continue
    if [ "$SERIAL" = 1 ] || [[ " ${GUEST_STAGES[*]} " == *" $stage "* ]]; then LANE1+=("$stage"); else LANE2+=("$stage"); fi
done
if [ "${#LANE1[@]}" -eq 0 ]; then LANE1=("${LANE2[@]}") LANE2=(); fi   # nothing to share the machine with
LANE2_PID=""
if [ "${#LANE2[@]}" -gt 0 ]; then
    printf '\nsecond lane: %s (output in %s, printed after the main lane: %s)\n' "${LANE2[*]}" "$RUN_DIR/lane2.log" "${LANE1[*]}"
    # its own process group, so that an interrupted run stops all of it (cleanup)
    set -m
    # shellcheck disable=SC2030,SC2031  # the lane's RESULTS come back through lane2.results
    (
        LANE="lane 2" RESULTS=()
        for stage in "${LANE2[@]}"; do run_stage "$stage"; done
        printf '%s\n' "${RESULTS[@]}" >"$RUN_DIR/lane2.results"
    ) >"$RUN_DIR/lane2.log" 2>&1 </dev/null &
    LANE2_PID=$!
    set +m
fi
for stage in "${LANE1[@]}"; do run_stage "$stage"; done
if [ -n "$LANE2_PID" ]; then
    header "second lane (${LANE2[*]}): waiting for it"
    wait "$LANE2_PID"
    LANE2_PID=""
    header "second lane (${LANE2[*]}): its output"
    cat "$RUN_DIR/lane2.log"
    if [ -s "$RUN_DIR/lane2.results" ]; then
        # shellcheck disable=SC2031
        mapfile -t -O "${#RESULTS[@]}" RESULTS <"$RUN_DIR/lane2.results"
    else
        CURRENT_STAGE="${LANE2[0]}" record FAIL "second lane" "$T0" "it ended without results (${LANE2[*]})"
    fi
fi
CURRENT_STAGE=reliability-page

# docs/reliability.md from the figures of this run (the fault and race tests run in the functional stage)
if want functional; then
    t=$(now)
    # the docsite's copy (docs/docsite/rst/reliability.rst) follows the page it is generated from
    if python scripts/render_reliability.py "$VIRTDEV_RELIABILITY_DIR" docs/reliability.md &&
        { [ ! -x "$RELEASE_VENV/bin/python" ] || "$RELEASE_VENV/bin/python" scripts/gen_docsite.py; }; then
        record PASS reliability-page "$t"
    else
        record FAIL reliability-page "$t" "scripts/render_reliability.py failed"
    fi
fi

summary
