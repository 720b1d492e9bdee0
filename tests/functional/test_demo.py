# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The README's demo (playbooks/demo.yml) provisions on the first run and changes nothing on the second."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / 'playbooks' / 'demo.yml'


def _play(playbook, uri, collections):
    """The demo as scripts/demo.sh runs it: only the URI given (here the test's embed root, whose QEMU
    capabilities are probed already); the images go where the playbook puts them by default."""
    ansible_playbook = os.path.join(os.path.dirname(sys.executable), 'ansible-playbook')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(collections), ANSIBLE_NOCOLOR='1')
    proc = subprocess.run([ansible_playbook, str(playbook), '-e', 'libvirt_uri=%s' % uri], env=env, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL, timeout=600, check=False)
    recap = re.search(r'localhost\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)', proc.stdout)
    assert proc.returncode == 0 and recap, proc.stdout[-3000:] + proc.stderr[-2000:]
    return int(recap.group(2)), int(recap.group(3)), proc.stdout


def test_demo_is_idempotent_and_says_what_each_guest_got(embed_uri, collection_pythonpath, tmp_path):
    # a copy of the checkout's playbook, so that its default image directory (beside playbooks/) is the test's
    playbook = tmp_path / 'checkout' / 'playbooks' / 'demo.yml'
    playbook.parent.mkdir(parents=True)
    shutil.copy(str(DEMO), str(playbook))
    images = tmp_path / 'checkout' / '.state' / 'demo-images'
    changed, failed, first = _play(playbook, embed_uri, collection_pythonpath)
    # the images' directory, the images (one task), the guests' definitions and their devices
    assert changed == 4 and failed == 0
    assert sorted(os.listdir(str(images))) == ['demo-pc-data.qcow2', 'demo-q35-data.qcow2']
    assert 'demo-pc: attach' in first and 'demo-q35: attach' in first
    changed, failed, second = _play(playbook, embed_uri, collection_pythonpath)
    assert changed == 0 and failed == 0
    assert 'demo-pc: nothing to do' in second and 'Devices by class: emulated' in second
