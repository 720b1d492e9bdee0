# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # For the host-side modules: they work on the machine they run on, without libvirt, but belong to the
    # collection's action group, so module_defaults for the group must not break them.

    DOCUMENTATION = r'''
options:
  uri:
    description:
      - "Not used by this module, which works on the host it runs on without libvirt. It is accepted so that
        C(module_defaults: {group/virtdev.libvirt.libvirt: {uri: ...}}) can cover this module too."
    type: str
'''
