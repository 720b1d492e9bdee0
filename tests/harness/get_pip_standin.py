# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Offline stand-in for the ``get-pip.py`` bootstrap script that ``ansible-test`` downloads.

``ansible-test sanity`` creates one virtual environment per test and bootstraps pip in it by running
``~/.ansible/test/cache/get_pip_<version>.py``; when that file is missing it downloads it from a host
this machine cannot reach. ``scripts/test.sh`` copies this file there. It is run by the new
environment's interpreter with pip's command line options and ``pip==<version>``: it installs the pip
that ships with Python (``ensurepip``, no network), then lets that pip install the requested packages
from the configured package index.
"""

from __future__ import annotations

import subprocess
import sys


def main():
    args = sys.argv[1:]
    want_setuptools = '--no-setuptools' not in args
    args = [arg for arg in args if arg not in ('--no-setuptools', '--no-wheel')]
    subprocess.run([sys.executable, '-m', 'ensurepip', '--default-pip'], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--upgrade'] + args, check=True)
    if not want_setuptools:
        subprocess.run([sys.executable, '-m', 'pip', 'uninstall', '--yes', '--quiet', 'setuptools'], check=False)


if __name__ == '__main__':
    main()
