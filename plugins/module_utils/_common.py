# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Ansible glue shared by the modules: the connection options and opening a connection."""

from __future__ import annotations

import sys

from ansible.module_utils.basic import env_fallback

from ansible_collections.virtdev.libvirt.plugins.module_utils import _embed_probe, _libvirt, _secrets, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import source

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
    """Open ``uri``; on the embedded driver, the result also warns when the task had to probe QEMU."""
    require_libraries(module)
    _embed_probe.watch(module, module.params['uri'])
    try:
        return _libvirt.Connection(module.params['uri'], readonly=readonly)
    except _libvirt.LibvirtFailure as exc:
        module.fail_json(msg=str(exc))


def no_log_paths(argument_spec, prefix=''):
    """Option paths ('config.password') whose values are secrets."""
    paths = set()
    for name, spec in (argument_spec or {}).items():
        path = '%s.%s' % (prefix, name) if prefix else name
        if spec.get('no_log'):
            paths.add(path)
        paths |= no_log_paths(spec.get('options'), path)
    return paths


def check_strings(module, secret_paths=()):
    """Fail, naming the option and the value, when any string parameter holds a character that XML (and so
    libvirt and the files the host modules write) cannot carry: NUL, other control characters, lone
    surrogates. Run first in every module, before anything is read or written. ``secret_paths``: option
    paths ('domains.config.password') that are secrets without being no_log in the argspec."""
    secrets = no_log_paths(module.argument_spec) | set(secret_paths)

    def secret(where):
        plain = '.'.join(part.split('[')[0] for part in where.split('.'))  # config[2].password -> config.password
        return plain in secrets

    try:
        _xml.check_text_tree({key: value for key, value in module.params.items() if not key.startswith('_')}, '',
                             secret)
    except _xml.XMLInputError as exc:
        module.fail_json(msg=str(exc))


def mask_secrets(module, echo=None):
    """Make every output of ``module`` (result, failure, warnings, the echoed arguments) mask secrets in all
    their escaped forms: the values of its no_log options and every secret the process read or was given
    in raw XML (``_secrets.SEEN``). Ansible's own no_log masking sees only the raw option values.
    ``echo(params)``: what ``invocation.module_args`` shows (default: every parameter)."""
    exit_json, fail_json, warn = module.exit_json, module.fail_json, module.warn
    _secrets.remember_raw(module.params)   # raw-XML passwords, also in text refused before it is parsed

    def masked(result):
        result = dict(result)
        result.setdefault('invocation', {'module_args': echo(module.params) if echo else module.params})
        return _secrets.mask(result, module.no_log_values)

    module.exit_json = lambda **result: exit_json(**masked(result))
    module.fail_json = lambda msg, **result: fail_json(**masked(dict(result, msg=msg)))
    module.warn = lambda warning, **kwargs: warn(_secrets.mask(warning, module.no_log_values), **kwargs)
    return module


def is_local_uri(uri):
    """Whether libvirt at ``uri`` runs on this machine (no host name in the URI; ``host.source`` decides
    which host facts the passthrough guards read from the same rule)."""
    return source.uri_host(uri) is None
