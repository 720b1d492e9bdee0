# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible glue shared by the modules: the connection options and opening a connection."""

from __future__ import annotations

import sys

from ansible.module_utils.basic import env_fallback

from ansible_collections.virtdev.libvirt.plugins.module_utils import _libvirt, _xml

CONNECTION_ARGS = {
    'uri': {'type': 'str', 'default': 'qemu:///system', 'fallback': (env_fallback, ['LIBVIRT_DEFAULT_URI'])},
}


# The Python libraries the modules import, each with the names to install it by: (what is imported, pip name,
# Debian/Ubuntu package, RHEL-family package). Distro packages need no compiler; pip's libvirt-python builds
# against the host's libvirt headers.
LIBRARIES = (
    ('lxml', 'lxml', 'python3-lxml', 'python3-lxml'),
    ('libvirt', 'libvirt-python', 'python3-libvirt', 'python3-libvirt'),
)


def missing_libraries_message(missing, python=None):
    """One message naming every missing library at once, with the package names for each way to install it."""
    rows = [row for row in LIBRARIES if row[0] in missing]
    return ('missing Python libraries for %s: %s. Install them on the host the module runs on: Debian/Ubuntu '
            '"apt-get install %s"; RHEL family "dnf install %s"; or pip "pip install %s". The role '
            'virtdev.libvirt.hypervisor installs them from distro packages (see docs/deploying.md).'
            % (python or sys.executable, ', '.join(row[0] for row in rows), ' '.join(row[2] for row in rows),
               ' '.join(row[3] for row in rows), ' '.join(row[1] for row in rows)))


def require_libraries(module, need_libvirt=True):
    """Fail once, listing every missing library (lxml, and libvirt when needed) with its package names."""
    missing = [] if _xml.HAS_LXML else ['lxml']
    errors = [] if _xml.HAS_LXML else [_xml.LXML_IMPORT_ERROR]
    if need_libvirt and not _libvirt.HAS_LIBVIRT:
        missing.append('libvirt')
        errors.append(_libvirt.LIBVIRT_IMPORT_ERROR)
    if missing:
        module.fail_json(msg=missing_libraries_message(missing), missing_libraries=missing,
                         exception='\n'.join(error for error in errors if error))


def connect(module, readonly=False):
    require_libraries(module)
    try:
        return _libvirt.Connection(module.params['uri'], readonly=readonly)
    except _libvirt.LibvirtFailure as exc:
        module.fail_json(msg=str(exc))
