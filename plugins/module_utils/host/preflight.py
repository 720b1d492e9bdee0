# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The assignment preflight: the guards of giving host devices to one domain, before anything is written.

This is the device side's one entry point into the host side (``_device_apply``):
``read_host`` -> ``usage_from_domains`` -> ``_ids.host_device_requests`` per device element ->
``check_assignment(host, requests, domain_name, usage, force)`` -> ``AssignmentCheck`` (errors,
warnings, findings). Requests are typed (pci, sriov_vf, usb, mdev); each is judged by the rows of the
guard table (``guards``) for its kind: a PCI request by the device guards plus the request guards.
"""

from __future__ import annotations

import os

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import guards
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.domain_usage import usage_from_domains
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.sysfs_source import read_host

# what the device layer (domain_devices) calls: read the host, see who uses what, check one domain's requests
__all__ = ('AssignmentCheck', 'LocalPaths', 'PoolPaths', 'check_assignment', 'check_sources', 'read_host',
           'usage_from_domains')


class AssignmentCheck:
    """The outcome of ``check_assignment``: ``errors`` and ``warnings`` are messages for the user;
    ``findings`` keeps each as a dict (label, guard, message, overridden) for callers that want data."""

    def __init__(self):
        self.errors = []
        self.warnings = []
        self.findings = []

    @property
    def ok(self):
        return not self.errors

    def add(self, label, guard, message, force, severity=None):
        row = guards.GUARDS[guard]
        severity = severity or row.assignment
        if severity == guards.IGNORE:
            return
        overridden = severity == guards.ERROR and force and row.overridable
        if severity == guards.ERROR and not overridden:
            text = '%s: %s [guard %s]' % (label, message, guard)
            if row.overridable:
                text += ' (force: true overrides it)'
            target = self.errors
        elif overridden:
            text = '%s: %s [guard %s, overridden by force]' % (label, message, guard)
            target = self.warnings
        else:
            text = '%s: %s [guard %s]' % (label, message, guard)
            target = self.warnings
        if text not in target:
            target.append(text)
            self.findings.append({'label': label, 'guard': guard, 'message': message,
                                  'severity': 'error' if target is self.errors else 'warning',
                                  'overridden': overridden})

    def as_dict(self):
        return {'errors': list(self.errors), 'warnings': list(self.warnings), 'findings': list(self.findings)}


def _label(request, index):
    where = request.get('where') or 'requests[%d]' % index
    kind = request.get('type')
    ident = request.get('address') or request.get('uuid') or ':'.join(
        str(request.get(part)) for part in ('vendor', 'product') if request.get(part) is not None)
    return '%s (%s %s)' % (where, kind, ident) if ident else '%s (%s)' % (where, kind)


def check_assignment(host, requests, domain_name, usage, force=False):
    """Run the guards for giving ``requests`` to domain ``domain_name``; write nothing.

    ``requests``: list of dicts, each with ``type`` pci | usb | mdev | sriov_vf and
    - pci / sriov_vf: ``address``, optional ``vendor``, ``product``, ``subsystem_vendor``,
      ``subsystem_product`` (pinned ids), ``managed`` (default True: libvirt binds it to vfio-pci);
    - usb: ``vendor`` + ``product`` and/or ``bus`` + ``device``;
    - mdev: ``uuid``, optional ``model`` (the mdev type);
    - optional ``where``: how messages name the request (default ``requests[i]``).
    ``usage``: from ``usage_from_domains``; uses by ``domain_name`` itself do not count. A use given as
    a bare domain name string is taken as a use by a running domain.
    ``host`` must describe the host libvirt runs on: with a remote URI, read it there.
    ``force``: errors of overridable guards become warnings that say so.
    Returns an ``AssignmentCheck``.
    """
    result = AssignmentCheck()
    normalized = []
    for index, request in enumerate(requests):
        label = _label(request, index)
        try:
            normalized.append((label, guards.GUARDS['address'].checks['request'](request)))
        except ValueError as exc:
            result.add(label, 'address', str(exc), force)
    for label, finding in guards.GUARDS['duplicate'].checks['requests'](host, normalized):
        result.add(label, finding.guard, finding.message, force)
    together = {request['address'] for _label_, request in normalized if request['type'] in ('pci', 'sriov_vf')}
    mdev_parents = {}
    for _label_, request in normalized:
        if request['type'] == 'mdev' and request['uuid'] in host.mdevs:
            mdev_parents.setdefault(host.mdevs[request['uuid']].parent, set()).add(request['uuid'])
    for label, request in normalized:
        kind = 'pci' if request['type'] == 'sriov_vf' else request['type']
        subject = guards.Subject(host, kind, request=request, together=together, usage=usage, domain_name=domain_name,
                                 mdev_parents=mdev_parents)
        for finding in guards.findings(subject):
            severity = None
            if guards.GUARDS[finding.guard].assignment == guards.UNMANAGED_ERROR:
                severity = guards.IGNORE if request.get('managed', True) else guards.ERROR
            result.add(label, finding.guard, finding.message, force, severity)
    return result


class LocalPaths:
    """Answers for disk source paths on this machine (libvirt at a URI without a host name runs here)."""

    @staticmethod
    def exists(path):
        return os.path.exists(path)


class PoolPaths:
    """Answers for disk source paths on the host libvirt at ``connection`` runs on, through its storage pools:
    None for a path in no pool (it cannot be told from here)."""

    def __init__(self, connection):
        self.connection = connection
        self.known = {}

    def exists(self, path):
        if path not in self.known:
            self.known[path] = self.connection.path_in_pools(path)
        return self.known[path]


def check_sources(paths, requests, force=False):
    """The source_exists guard over the 'path' requests of one domain (``LocalPaths`` / ``PoolPaths``).
    Returns (AssignmentCheck, the requests whose path could not be told)."""
    result, unknown = AssignmentCheck(), []
    for request in requests:
        for finding in guards.findings(guards.Subject(paths, 'path', request=request)):
            result.add(request['where'], finding.guard, finding.message, force)
        if paths.exists(request['path']) is None:
            unknown.append(request)
    return result, unknown
