# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host modules' runs, one ``runner.Operation`` per module (named after it): the module keeps only its
argument spec and documentation, the runner drives the steps, the backends in ``host.prepare`` do the work."""
