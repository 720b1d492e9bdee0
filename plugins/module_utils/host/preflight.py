# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The assignment preflight: the guards of giving host devices to one domain, before anything is written.

This is the device side's one entry point into the host side (``_device_apply``):
``read_host`` -> ``usage_from_domains`` -> ``requests_of_element`` per device element ->
``check_assignment(host, requests, domain_name, usage, force)`` -> ``AssignmentCheck`` (errors,
warnings, findings). Requests are typed (pci, sriov_vf, usb, mdev); a PCI request is judged by the
device guards (``guards.assess_pci``) plus the request guards defined here.
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import below_root, guards
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import domain_usage
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.sysfs_source import read_host
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.domain_usage import requests_of_element, usage_from_domains

# what the device layer (domain_devices) calls: read the host, see who uses what, check one domain's requests
__all__ = ('AssignmentCheck', 'check_assignment', 'read_host', 'requests_of_element', 'usage_from_domains')


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


def _normalize_request(request):
    """(kind, normalized dict) or raise ValueError naming the bad field and value."""
    kind = request.get('type')
    result = {'type': kind, 'managed': request.get('managed', True) is not False}
    if kind in ('pci', 'sriov_vf'):
        if not request.get('address'):
            raise ValueError('a %s request needs an address' % kind)
        result['address'] = _ids.pci_text(request['address'], None)
        for field in ('vendor', 'product', 'subsystem_vendor', 'subsystem_product'):
            result[field] = _ids.hex_id(request.get(field), field)
    elif kind == 'usb':
        result['vendor'] = _ids.hex_id(request.get('vendor'), 'vendor')
        result['product'] = _ids.hex_id(request.get('product'), 'product')
        for field in ('bus', 'device'):
            value = request.get(field)
            if value is not None:
                value = _ids.c_uint(str(value), 'USB %s' % field)
            result[field] = value
        if (result['vendor'] is None) != (result['product'] is None):
            raise ValueError('USB vendor and product go together (vendor %r, product %r)'
                             % (request.get('vendor'), request.get('product')))
        if (result['bus'] is None) != (result['device'] is None):
            raise ValueError('USB bus and device go together (bus %r, device %r)'
                             % (request.get('bus'), request.get('device')))
        if result['vendor'] is None and result['bus'] is None:
            raise ValueError('a USB request needs vendor and product, or bus and device')
    elif kind == 'mdev':
        result['uuid'] = _ids.parse_uuid(request.get('uuid'), 'mdev uuid')
        result['model'] = request.get('model')
    else:
        raise ValueError('request type %r is not one of pci, usb, mdev, sriov_vf' % kind)
    return result


def _check_ids(dev, request):
    findings = []
    for field, attribute in (('vendor', 'vendor'), ('product', 'device'), ('subsystem_vendor', 'subsystem_vendor'),
                             ('subsystem_product', 'subsystem_device')):
        wanted = request.get(field)
        if wanted is None:
            continue
        actual = getattr(dev, attribute)
        actual = '0x%04x' % below_root.int_or_none(actual, 16) if actual and below_root.int_or_none(actual, 16) is not None else actual
        if actual != wanted:
            findings.append(guards.Finding('ids', 'the %s id is %s on this host, not %s as configured'
                                    % (field.replace('_', ' '), actual, wanted)))
    return findings


def _usage_findings(usage, key, domain_name, what):
    findings = []
    for use in domain_usage.used_by(usage, key, exclude=domain_name):
        if use['live']:
            findings.append(guards.Finding('in_use_live', '%s is assigned to running domain %s' % (what, use['domain'])))
        else:
            findings.append(guards.Finding('in_use_config', '%s is in the persistent definition of domain %s'
                                    % (what, use['domain'])))
    return findings


def _pci_request_findings(host, request, together, usage, domain_name, mdev_parents):
    address = request['address']
    findings = guards.assess_pci(host, address, together, usage, domain_name)
    dev = host.pci.get(address)
    if dev is None:
        return findings
    findings += _check_ids(dev, request)
    if request['type'] == 'sriov_vf' and dev.physfn is None:
        findings.append(guards.Finding('sriov', 'is not an SR-IOV virtual function (it has no physfn link)'))
    findings += _usage_findings(usage, ('pci', address), domain_name, 'it')
    if dev.physfn:
        if dev.physfn in together:
            findings.append(guards.Finding('pf_vf', 'is a VF of %s, which is requested too: a PF and its VFs are '
                                    'exclusive' % dev.physfn))
        for use in domain_usage.used_by(usage, ('pci', dev.physfn), exclude=domain_name):
            findings.append(guards.Finding('pf_vf', 'its PF %s is assigned to domain %s' % (dev.physfn, use['domain'])))
    for vf in dev.vfs:
        for use in domain_usage.used_by(usage, ('pci', vf), exclude=domain_name):
            findings.append(guards.Finding('pf_vf', 'its VF %s is assigned to domain %s' % (vf, use['domain'])))
    for uuid in host.mdevs_of(address):
        for use in domain_usage.used_by(usage, ('mdev', uuid), exclude=domain_name):
            findings.append(guards.Finding('mdev_parent', 'its mediated device %s is used by domain %s'
                                    % (uuid, use['domain'])))
    if address in mdev_parents:
        findings.append(guards.Finding('mdev_parent', 'its mediated device %s is requested too'
                                % ', '.join(sorted(mdev_parents[address]))))
    return findings


def _usb_request_findings(host, request, usage, domain_name):
    if request['bus'] is not None:
        usb = host.usb_by_address(request['bus'], request['device'])
        if usb is None:
            return [guards.Finding('usb_present', 'no USB device at bus %d device %d' % (request['bus'], request['device']))], None
        findings = []
        if request['vendor'] is not None and (usb.vendor, usb.product) != (request['vendor'], request['product']):
            findings.append(guards.Finding('ids', 'the device at bus %d device %d is %s:%s, not %s:%s as configured'
                                    % (usb.bus, usb.device, usb.vendor, usb.product, request['vendor'],
                                       request['product'])))
    else:
        matches = [usb for usb in host.usb.values()
                   if (usb.vendor, usb.product) == (request['vendor'], request['product'])]
        if not matches:
            return [guards.Finding('usb_present', 'no USB device %s:%s is plugged in'
                            % (request['vendor'], request['product']))], None
        if len(matches) > 1:
            return [guards.Finding('ambiguous', '%d USB devices are %s:%s (%s); give bus and device too'
                            % (len(matches), request['vendor'], request['product'],
                               ', '.join('bus %d device %d' % (usb.bus or 0, usb.device or 0)
                                         for usb in sorted(matches, key=lambda u: u.name))))], None
        usb = matches[0]
        findings = []
    findings += [guards.Finding('sysfs', problem) for problem in usb.problems]
    if usb.hub:
        findings.append(guards.Finding('endpoint', 'USB %s is a %s, not a device to pass through'
                                % (usb.name, 'root hub' if usb.root_hub else 'hub')))
    for reason in host.critical_usb.get(usb.name, []):
        findings.append(guards.Finding('host_critical', 'is host-critical: %s' % reason))
    what = 'USB device %s (bus %s device %s)' % (usb.name, usb.bus, usb.device)
    findings += _usage_findings(usage, ('usb', '%s:%s' % (usb.vendor, usb.product)), domain_name, what)
    if usb.bus is not None and usb.device is not None:
        findings += _usage_findings(usage, ('usb-address', '%d.%d' % (usb.bus, usb.device)), domain_name, what)
    return findings, usb


def _mdev_request_findings(host, request, together, usage, domain_name):
    uuid, model = request['uuid'], request.get('model')
    findings = []
    mdev = host.mdevs.get(uuid)
    if mdev is None:
        offers = ['%s on %s (%s available)' % (t.type_id, t.parent, t.available_instances)
                  for dev in host.pci.values() for t in dev.mdev_types
                  if (model is None or t.type_id == model) and (t.available_instances or 0) > 0]
        hint = ('; it can be created from %s' % ', '.join(offers)) if offers else \
            '; no parent device offers %s' % ('type ' + model if model else 'any mdev type')
        findings.append(guards.Finding('mdev_exists', 'mediated device %s does not exist%s' % (uuid, hint)))
    else:
        if model is not None and mdev.type_id != model:
            findings.append(guards.Finding('ids', 'mediated device %s is of type %s, not %s as configured'
                                    % (uuid, mdev.type_id, model)))
        if mdev.parent in together:
            findings.append(guards.Finding('mdev_parent', 'its parent %s is requested for passthrough too' % mdev.parent))
        for use in domain_usage.used_by(usage, ('pci', mdev.parent), exclude=domain_name):
            findings.append(guards.Finding('mdev_parent', 'its parent %s is passed through to domain %s'
                                    % (mdev.parent, use['domain'])))
    findings += _usage_findings(usage, ('mdev', uuid), domain_name, 'it')
    return findings


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
            normalized.append((label, _normalize_request(request)))
        except ValueError as exc:
            result.add(label, 'address', str(exc), force)
    # identity of each request, for duplicates
    seen = {}
    for label, request in normalized:
        if request['type'] in ('pci', 'sriov_vf'):
            key = ('pci', request['address'])
        elif request['type'] == 'mdev':
            key = ('mdev', request['uuid'])
        else:
            key = None
            if request['bus'] is not None:
                key = ('usb-address', '%d.%d' % (request['bus'], request['device']))
            else:
                usb = [u for u in host.usb.values() if (u.vendor, u.product) == (request['vendor'], request['product'])]
                if len(usb) == 1 and usb[0].bus is not None:
                    key = ('usb-address', '%d.%d' % (usb[0].bus, usb[0].device))
                else:
                    key = ('usb', '%s:%s' % (request['vendor'], request['product']))
        if key in seen:
            result.add(label, 'duplicate', 'the same device as %s' % seen[key], force)
        else:
            seen[key] = label
    together = {request['address'] for _label_, request in normalized if request['type'] in ('pci', 'sriov_vf')}
    mdev_parents = {}
    for _label_, request in normalized:
        if request['type'] == 'mdev' and request['uuid'] in host.mdevs:
            mdev_parents.setdefault(host.mdevs[request['uuid']].parent, set()).add(request['uuid'])
    for label, request in normalized:
        if request['type'] in ('pci', 'sriov_vf'):
            findings = _pci_request_findings(host, request, together, usage, domain_name, mdev_parents)
        elif request['type'] == 'usb':
            findings, _usb = _usb_request_findings(host, request, usage, domain_name)
        else:
            findings = _mdev_request_findings(host, request, together, usage, domain_name)
        for finding in findings:
            severity = None
            if guards.GUARDS[finding.guard].assignment == guards.UNMANAGED_ERROR:
                severity = guards.IGNORE if request.get('managed', True) else guards.ERROR
            result.add(label, finding.guard, finding.message, force, severity)
    return result
