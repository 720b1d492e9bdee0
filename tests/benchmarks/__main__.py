# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Command line of the benchmark: ``python -m tests.benchmarks --help``."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
