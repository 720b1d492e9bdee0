#!/usr/bin/env bash
# Prepare a release of the collection: one command, from a clean checkout of main.
#
#   scripts/release.sh VERSION            # e.g. scripts/release.sh 0.2.0
#
# 1. sets VERSION in galaxy.yml and in the example EE's requirements.yml (docs/docsite/examples/ee/),
# 2. antsibull-changelog release: CHANGELOG.rst and changelogs/changelog.yaml from the fragments,
# 3. scripts/test.sh --only release: builds the tarball and runs the release checks on it (Galaxy
#    importer, changelog, ansible-builder, docsite),
# 4. commits "Release VERSION", tags it VERSION and leaves the tarball in .state/dist/.
# Then publish it: ansible-galaxy collection publish .state/dist/virtdev-libvirt-VERSION.tar.gz --token ...
# and push the commit and the tag. Run the whole scripts/test.sh before (CI does on every merge).
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ $# -eq 1 ] || die "usage: scripts/release.sh VERSION"
VERSION="$1"
[[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "VERSION must be MAJOR.MINOR.PATCH (semantic versioning), not '$VERSION'"
cd "$ROOT"
[ -z "$(git status --porcelain)" ] || die "the checkout has uncommitted changes: commit or stash them first"
git rev-parse -q --verify "refs/tags/$VERSION" >/dev/null && die "tag $VERSION exists already"
[ -n "$(ls changelogs/fragments/*.yml 2>/dev/null)" ] || die "no changelog fragments: nothing to release"

bash scripts/bootstrap.sh
sed -i "s/^version:.*/version: $VERSION/" galaxy.yml
sed -i "s|virtdev-libvirt-[0-9.]*\.tar\.gz|virtdev-libvirt-$VERSION.tar.gz|" docs/docsite/examples/ee/requirements.yml
ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS" "$VENV/bin/antsibull-changelog" release --version "$VERSION"
bash scripts/bootstrap.sh      # rebuilds .state/dist/ with the new version and changelog
bash scripts/test.sh --no-bootstrap --only release
git add -A
git commit -m "Release $VERSION"
git tag -a "$VERSION" -m "virtdev.libvirt $VERSION"
log "Released $VERSION: .state/dist/$COLLECTION_NAMESPACE-$COLLECTION_NAME-$VERSION.tar.gz"
log "Publish: ansible-galaxy collection publish .state/dist/$COLLECTION_NAMESPACE-$COLLECTION_NAME-$VERSION.tar.gz --token TOKEN"
log "Then: git push origin main $VERSION"
