# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make the checkout importable as ``ansible_collections.virtdev.libvirt`` for plain pytest runs.

ansible-test does this itself; for ``pytest tests/...`` from a checkout we expose the working tree
through a symlink in a temporary directory, so tests always see the current code without a rebuild.
"""

from __future__ import annotations

import os
import sys
import tempfile

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _expose_checkout():
    try:
        import ansible_collections.virtdev.libvirt  # noqa: F401 pylint: disable=unused-import
        return None
    except ImportError:
        pass
    top = tempfile.mkdtemp(prefix='virtdev-pytest-')
    os.makedirs(os.path.join(top, 'ansible_collections', 'virtdev'))
    os.symlink(CHECKOUT, os.path.join(top, 'ansible_collections', 'virtdev', 'libvirt'))
    sys.path.insert(0, top)
    os.environ['VIRTDEV_COLLECTIONS_ROOT'] = top  # subprocesses (module runs) import from here too
    return top


COLLECTIONS_ROOT = _expose_checkout()
