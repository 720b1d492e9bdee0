# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  uri:
    description:
      - libvirt connection URI, for example V(qemu:///system), V(qemu+ssh://root@host/system) or the
        embedded driver V(qemu:///embed?root=/var/lib/mylibvirt).
      - If not set, the environment variable E(LIBVIRT_DEFAULT_URI) is used, then V(qemu:///system).
      - "With the embedded driver run as root, let the user QEMU runs as open C(/dev/kvm) (for example
        C(user = \"root\") and C(group = \"root\") in C(DIR/etc/qemu.conf)); otherwise libvirt probes QEMU again in
        every task, which costs seconds to minutes per task. The result then warns; see the collection's
        docs/deploying.md."
      - "Set it once for all modules of the collection with
        C(module_defaults: {group/virtdev.libvirt.libvirt: {uri: ...}})."
    type: str
    default: qemu:///system
requirements:
  - libvirt-python
  - lxml
'''
