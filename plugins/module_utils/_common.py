# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible glue shared by the modules: the connection options and opening a connection."""

from __future__ import annotations

from urllib.parse import urlsplit

from ansible.module_utils.basic import env_fallback, missing_required_lib

from ansible_collections.virtdev.libvirt.plugins.module_utils import _libvirt, _xml

CONNECTION_ARGS = {
    'uri': {'type': 'str', 'default': 'qemu:///system', 'fallback': (env_fallback, ['LIBVIRT_DEFAULT_URI'])},
}


def require_libraries(module, need_libvirt=True):
    """Fail with Ansible's standard message when lxml or libvirt-python is missing."""
    if not _xml.HAS_LXML:
        module.fail_json(msg=missing_required_lib('lxml'), exception=_xml.LXML_IMPORT_ERROR)
    if need_libvirt and not _libvirt.HAS_LIBVIRT:
        module.fail_json(msg=missing_required_lib('libvirt-python'), exception=_libvirt.LIBVIRT_IMPORT_ERROR)


def connect(module, readonly=False):
    require_libraries(module)
    try:
        return _libvirt.Connection(module.params['uri'], readonly=readonly)
    except _libvirt.LibvirtFailure as exc:
        module.fail_json(msg=str(exc))


def is_local_uri(uri):
    """Whether libvirt at ``uri`` runs on this machine (no host name in the URI)."""
    return not urlsplit(uri).hostname
