# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible glue shared by the modules: the connection options and opening a connection."""

from __future__ import annotations

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


def _no_log_paths(argument_spec, prefix=''):
    """Option paths ('config.password') whose values are secrets."""
    paths = set()
    for name, spec in (argument_spec or {}).items():
        path = '%s.%s' % (prefix, name) if prefix else name
        if spec.get('no_log'):
            paths.add(path)
        paths |= _no_log_paths(spec.get('options'), path)
    return paths


def check_strings(module):
    """Fail, naming the option and the value, when any string parameter holds a character that XML (and so
    libvirt and the files the host modules write) cannot carry: NUL, other control characters, lone
    surrogates. Run first in every module, before anything is read or written."""
    secrets = _no_log_paths(module.argument_spec)

    def secret(where):
        plain = '.'.join(part.split('[')[0] for part in where.split('.'))  # config[2].password -> config.password
        return plain in secrets

    try:
        _xml.check_text_tree({key: value for key, value in module.params.items() if not key.startswith('_')}, '',
                             secret)
    except _xml.XMLInputError as exc:
        module.fail_json(msg=str(exc))
