# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Offline stand-in for the ``get-pip.py`` bootstrap script that ``ansible-test`` downloads.

``ansible-test sanity`` creates one virtual environment per test and bootstraps pip in it by running
``~/.ansible/test/cache/get_pip_<version>.py``; when that file is missing it downloads it from a host
this machine cannot reach. ``scripts/test.sh`` copies this file there. It is run by the new
environment's interpreter with pip's command line options and ``pip==<version>``. When the pip wheel it
asks for is in ``wheels/`` next to this file (``scripts/test.sh`` downloads it once), pip runs from that
wheel and installs it (one install per environment: most of the time of a sanity test's new environment
went to bootstrapping pip). Otherwise it installs the pip that ships with Python (``ensurepip``, no
network), then lets that pip install the requested packages from the configured package index.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

WHEELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'wheels')


def local_wheel(args):
    """The pip wheel in WHEELS that ``pip==VERSION`` in ``args`` asks for, when it is there and nothing else is asked."""
    wanted = [arg for arg in args if not arg.startswith('-')]
    if len(wanted) != 1 or not wanted[0].startswith('pip=='):
        return None
    found = glob.glob(os.path.join(WHEELS, 'pip-%s-*.whl' % wanted[0][len('pip=='):]))
    return found[0] if found else None


def main():
    args = sys.argv[1:]
    want_setuptools = '--no-setuptools' not in args
    args = [arg for arg in args if arg not in ('--no-setuptools', '--no-wheel')]
    wheel = None if want_setuptools else local_wheel(args)
    if wheel:
        # pip runs from its own wheel (a zip with pip/__main__.py) and installs it: no network, one install
        subprocess.run([sys.executable, os.path.join(wheel, 'pip'), 'install', '--no-index', '--find-links', WHEELS]
                       + args, check=True)
        return
    subprocess.run([sys.executable, '-m', 'ensurepip', '--default-pip'], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--upgrade'] + args, check=True)
    if not want_setuptools:
        subprocess.run([sys.executable, '-m', 'pip', 'uninstall', '--yes', '--quiet', 'setuptools'], check=False)


if __name__ == '__main__':
    main()
