# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What the in-memory libvirts of the DomainRun tests share with the real adapter."""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import Connection


class ReadsHandles:
    """A domain handle's name and UUID, read as ``_libvirt.Connection`` reads them."""

    name_of = staticmethod(Connection.name_of)
    uuid_of = staticmethod(Connection.uuid_of)
