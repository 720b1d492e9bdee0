# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host-side safety guards: ONE table, one row per guard, each with its own check function.

A row says what the guard does to a device's verdict (``REFUSE`` / ``PREPARE`` / ``WARN`` / None), what
it does to an assignment in domain_devices (``ERROR`` / ``WARNING`` / ``UNMANAGED_ERROR``), whether
``force`` may turn its error into a warning, what it protects (``description``, shown in the docs), and
its check functions: one per kind of subject it judges (``pci``, ``usb``, ``mdev``: ``Subject`` ->
[Finding]), or over the request list (``request``/``requests``: the address and duplicate guards).
Adding a guard is adding a row and its function.

``findings(subject)`` runs the checks of the subject's kind in table order; a ``settles`` guard that
fires ends it (there is no device to judge further). ``assess_pci`` judges a PCI device on its own
(the report, vfio_bind); a ``Subject`` with a request adds the request guards (``preflight``).
``summarize``/``verdict`` turn findings into ready / needs_preparation (+ steps) / refused (+ reasons).
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import below_root, domain_usage, model


IOMMU_ENABLE_HINT = {
    'intel': 'add intel_iommu=on to the kernel command line',
    'amd': 'check that amd_iommu is not off on the kernel command line and the IOMMU is enabled in firmware',
}


# verdicts
READY, NEEDS_PREPARATION, REFUSED = 'ready', 'needs_preparation', 'refused'


# what a guard finding does to a verdict / to an assignment
REFUSE, PREPARE, WARN = 'refuse', 'prepare', 'warn'


ERROR, WARNING, IGNORE, UNMANAGED_ERROR = 'error', 'warning', 'ignore', 'unmanaged_error'


class Finding:
    """A guard that fired for a device; ``step`` is the preparation that would satisfy it."""

    def __init__(self, guard, message, step=None):
        if guard not in GUARDS:
            raise KeyError('unknown guard %r' % guard)
        self.guard = guard
        self.message = message
        self.step = step

    def as_dict(self):
        return {'guard': self.guard, 'message': self.message, 'overridable': GUARDS[self.guard].overridable}

    def __repr__(self):
        return 'Finding(%r, %r)' % (self.guard, self.message)


class Subject:
    """What the checks of one guard run look at: a PCI device (``kind`` 'pci'), a USB device or a mediated
    device, resolved on ``host`` from ``request`` (None when a PCI device is judged on its own).

    ``together``: the PCI addresses requested at the same time (group members among them do not make the
    group unviable); ``usage``: who uses what (``domain_usage``); ``domain_name``: the guest the device is
    for (its own uses do not count); ``mdev_parents``: parent address -> UUIDs of mdevs requested too.
    """

    def __init__(self, host, kind, address=None, request=None, together=(), usage=None, domain_name=None,
                 mdev_parents=None):
        self.host = host
        self.kind = kind
        self.request = request
        self.usage = usage or {}
        self.domain_name = domain_name
        self.mdev_parents = mdev_parents or {}
        self.address = address if address is not None else (request or {}).get('address')
        self.together = set(together) | ({self.address} if self.address else set())
        self.dev = host.pci.get(self.address) if self.address else None
        self.usb, self.usb_matches = None, []
        self.mdev = None
        if kind == 'usb':
            if request['bus'] is not None:
                self.usb = host.usb_by_address(request['bus'], request['device'])
            else:
                self.usb_matches = [usb for usb in host.usb.values()
                                    if (usb.vendor, usb.product) == (request['vendor'], request['product'])]
                self.usb = self.usb_matches[0] if len(self.usb_matches) == 1 else None
        elif kind == 'mdev':
            self.mdev = host.mdevs.get(request['uuid'])

    def uses(self, key):
        """The uses of ``key`` by domains other than the one the device is for."""
        return domain_usage.used_by(self.usage, key, exclude=self.domain_name)


def _describe(host, address):
    dev = host.pci.get(address)
    if dev is None:
        return address
    return '%s (%s, driver %s)' % (address, dev.class_label, dev.driver or 'none')


def describe_group(host, address):
    """'IOMMU group 10: 0000:43:00.0 (3D controller, driver vfio-pci), ...' for the group of ``address``."""
    dev = host.pci.get(address)
    if dev is None or dev.iommu_group is None:
        return None
    return 'IOMMU group %d: %s' % (dev.iommu_group, ', '.join(_describe(host, member)
                                                              for member in host.group_members(address)))


def _iommu_off_message(host):
    kind = host.iommu.get('kind')
    hint = IOMMU_ENABLE_HINT.get(kind, 'enable the IOMMU in firmware and on the kernel command line')
    firmware = host.iommu.get('firmware_table')
    told = ' (the firmware has an ACPI %s table)' % firmware if firmware else ''
    return 'the IOMMU is off: no groups under /sys/kernel/iommu_groups%s; %s' % (told, hint)


# -- PCI device checks ---------------------------------------------------------------------------------------

def _pci_exists(subject):
    if subject.dev is None:
        return [Finding('exists', 'there is no PCI device %s on this host (not %s)'
                        % (subject.address, subject.host.pci_listing))]
    return []


def _pci_sysfs(subject):
    return [Finding('sysfs', problem) for problem in subject.dev.problems]


def _pci_endpoint(subject):
    dev = subject.dev
    if dev.role in model.NOT_ENDPOINT_ROLES or dev.children:
        behind = (' with %s behind it' % ', '.join(dev.children)) if dev.children else ''
        return [Finding('endpoint', 'is a %s (class %s)%s, not an endpoint' % (dev.class_label, dev.class_code, behind))]
    return []


def _pci_host_critical(subject):
    return [Finding('host_critical', 'is host-critical: %s' % reason)
            for reason in subject.host.critical.get(subject.address, [])]


def _pci_bind(subject):
    dev, address = subject.dev, subject.address
    if model.is_vfio_driver(dev.driver):
        return []
    return [Finding('bind', 'is bound to %s, not to vfio-pci' % (dev.driver or 'no driver'),
                    step={'action': 'bind_vfio', 'address': address, 'current_driver': dev.driver,
                          'message': 'bind %s (now %s) to vfio-pci' % (address, dev.driver or 'unbound')})]


def _pci_iommu(subject):
    if not subject.host.iommu_enabled:
        return [Finding('iommu', _iommu_off_message(subject.host))]
    if subject.dev.iommu_group is None:
        return [Finding('iommu', 'has no IOMMU group although the IOMMU is on')]
    return []


def _group_peers(subject):
    """The other endpoints of the device's IOMMU group that are not requested with it ([] without a group)."""
    if not subject.host.iommu_enabled or subject.dev.iommu_group is None:
        return []
    return [member for member in subject.host.bindable_peers(subject.address) if member not in subject.together]


def _pci_group_critical(subject):
    host = subject.host
    return [Finding('group_critical', 'shares IOMMU group %d with %s, which is host-critical: %s'
                    % (subject.dev.iommu_group, _describe(host, member), '; '.join(host.critical[member])))
            for member in _group_peers(subject) if member in host.critical]


def _pci_group(subject):
    host, findings = subject.host, []
    for member in _group_peers(subject):
        other = host.pci.get(member)
        if member not in host.critical and not model.group_member_viable(other.driver):
            findings.append(Finding(
                'group', 'shares IOMMU group %d with %s, which is still bound to a host driver'
                % (subject.dev.iommu_group, _describe(host, member)),
                step={'action': 'bind_vfio', 'address': member, 'current_driver': other.driver,
                      'message': 'bind group member %s (now %s) to vfio-pci' % (member, other.driver)}))
    return findings


def _pci_vfio(subject):
    host = subject.host
    # None: not known (a remote host's node devices): no finding, the source names it as not checked
    if host.iommu_enabled and subject.dev.iommu_group is not None and host.iommu.get('vfio_device') is False:
        return [Finding('vfio', '/dev/vfio/vfio is missing: the vfio modules are not loaded',
                        step={'action': 'load_module', 'module': 'vfio-pci', 'message': 'load the vfio-pci module'})]
    return []


def _pci_sriov_pf(subject):
    dev = subject.dev
    if not dev.sriov_numvfs:
        return []
    return [Finding('sriov_pf', 'is an SR-IOV PF with %d VFs enabled (%s); they disappear when it leaves its driver'
                    % (dev.sriov_numvfs, ', '.join(dev.vfs) or 'not listed'),
                    step={'action': 'disable_sriov', 'address': dev.address,
                          'message': 'set sriov_numvfs of %s to 0' % dev.address})]


def _pci_reset(subject):
    if subject.dev.reset_methods == []:
        return [Finding('reset', 'has no reset method: the guest may find it in a dirty state after a reboot')]
    return []


def _pci_companion(subject):
    host, dev, findings = subject.host, subject.dev, []
    for sibling in sorted(host.pci):
        other = host.pci[sibling]
        if sibling in subject.together or other.slot != dev.slot or not other.endpoint:
            continue
        if dev.parent is None or dev.physfn or other.physfn or sibling in host.critical:
            continue  # integrated chipset functions and VFs share slots without belonging together
        if dev.iommu_group is not None and other.iommu_group == dev.iommu_group:
            continue  # the group guard covers it
        findings.append(Finding('companion', '%s is another function of the same device; guests usually need it '
                                'too' % _describe(host, sibling)))
    return findings


def _pci_interrupt_remapping(subject):
    iommu = subject.host.iommu
    if subject.host.iommu_enabled and iommu.get('interrupt_remapping') is False and not iommu.get('allow_unsafe_interrupts'):
        return [Finding('interrupt_remapping', 'the host has no interrupt remapping: vfio refuses the device unless '
                        'vfio_iommu_type1.allow_unsafe_interrupts=1')]
    return []


def _pci_acs_override(subject):
    if subject.host.iommu.get('acs_override'):
        return [Finding('acs_override', 'pcie_acs_override is on the kernel command line: the IOMMU groups do not '
                        'show the real isolation')]
    return []


def _pci_host_mounted(subject):
    if subject.address in subject.host.critical:
        return []  # refused outright: the mount is not repeated as a warning
    return [Finding('host_mounted', 'holds a mounted filesystem: %s; unmount it before the device leaves the host'
                    % reason) for reason in subject.host.mounted.get(subject.address, [])]


def _pci_host_input(subject):
    inputs = subject.host.inputs.get(subject.address)
    if not inputs:
        return []
    return [Finding('host_input', "carries the host's input devices %s: the host loses them when the controller "
                    'leaves it' % ', '.join(inputs))]


def _this_guest(subject):
    return 'guest %s' % subject.domain_name if subject.domain_name else 'a guest'


def _peer_uses(subject, live):
    """(member, use) for the group peers other guests hold, running (``live``) or only defined."""
    return [(member, use) for member in _group_peers(subject) for use in subject.uses(('pci', member))
            if bool(use['live']) == live]


def _group_held(live, guard, message):
    """The check of a group_held guard: group peers another guest holds, running (``live``) or defined."""
    def check(subject):
        return [Finding(guard, message % {'group': subject.dev.iommu_group, 'peer': _describe(subject.host, member),
                                          'other': use['domain'], 'this': _this_guest(subject)})
                for member, use in _peer_uses(subject, live)]
    return check


def _pci_group_open(subject):
    """Processes holding the device's group (or the group of one of its mdevs) open, other than the guests
    already explained: the one the device is for, its own running users, running holders of group peers."""
    host, dev, findings = subject.host, subject.dev, []
    explained = {subject.domain_name} if subject.domain_name else set()
    explained.update(use['domain'] for use in domain_usage.used_by(subject.usage, ('pci', dev.address)) if use['live'])
    explained.update(use['domain'] for _member, use in _peer_uses(subject, live=True))
    users = [user for user in host.open_by(dev.iommu_group) if user.get('guest') not in explained]
    if users:
        findings.append(Finding('group_open', 'its IOMMU group %d is held open by %s (a running guest)'
                                % (dev.iommu_group, model.describe_users(users))))
    for uuid in host.mdevs_of(dev.address):
        users = [user for user in host.open_by(host.mdevs[uuid].iommu_group) if user.get('guest') != subject.domain_name]
        if users:
            findings.append(Finding('group_open', 'its mediated device %s is held by %s: the device cannot leave its '
                                    'driver %s until that guest stops (the unbind would block)'
                                    % (uuid, model.describe_users(users), dev.driver or 'none')))
    return findings


# -- request checks: a PCI device (or SR-IOV VF) asked for by a domain -----------------------------------------

def _pci_ids(subject):
    if subject.request is None:
        return []
    findings = []
    for field, attribute in (('vendor', 'vendor'), ('product', 'device'), ('subsystem_vendor', 'subsystem_vendor'),
                             ('subsystem_product', 'subsystem_device')):
        wanted = subject.request.get(field)
        if wanted is None:
            continue
        actual = getattr(subject.dev, attribute)
        if actual is None and attribute in subject.host.unavailable_ids:
            findings.append(Finding('ids', 'the %s id cannot be compared with %s as configured: %s'
                                    % (field.replace('_', ' '), wanted, subject.host.unavailable_ids[attribute])))
            continue
        number = below_root.int_or_none(actual, 16) if actual else None
        actual = '0x%04x' % number if number is not None else actual
        if actual != wanted:
            findings.append(Finding('ids', 'the %s id is %s on this host, not %s as configured'
                                    % (field.replace('_', ' '), actual, wanted)))
    return findings


def _pci_sriov(subject):
    if subject.request is not None and subject.request['type'] == 'sriov_vf' and subject.dev.physfn is None:
        return [Finding('sriov', 'is not an SR-IOV virtual function (it has no physfn link)')]
    return []


def _in_use(live, guard, message):
    """The check of an in_use guard: uses of the subject's identity keys by other domains, running or defined."""
    def check(subject):
        if subject.request is None:
            return []
        keys, what = _identity(subject)
        return [Finding(guard, message % (what, use['domain'])) for key in keys for use in subject.uses(key)
                if bool(use['live']) == live]
    return check


def _identity(subject):
    """(identity keys, how messages name the device) of the subject of a request."""
    if subject.kind == 'pci':
        return [('pci', subject.address)], 'it'
    if subject.kind == 'mdev':
        return [('mdev', subject.request['uuid'])], 'it'
    usb = subject.usb
    keys = [('usb', '%s:%s' % (usb.vendor, usb.product))]
    if usb.bus is not None and usb.device is not None:
        keys.append(('usb-address', '%d.%d' % (usb.bus, usb.device)))
    return keys, 'USB device %s (bus %s device %s)' % (usb.name, usb.bus, usb.device)


def _pci_pf_vf(subject):
    if subject.request is None:
        return []
    dev, findings = subject.dev, []
    if dev.physfn:
        if dev.physfn in subject.together:
            findings.append(Finding('pf_vf', 'is a VF of %s, which is requested too: a PF and its VFs are exclusive'
                                    % dev.physfn))
        findings += [Finding('pf_vf', 'its PF %s is assigned to domain %s' % (dev.physfn, use['domain']))
                     for use in subject.uses(('pci', dev.physfn))]
    findings += [Finding('pf_vf', 'its VF %s is assigned to domain %s' % (vf, use['domain']))
                 for vf in dev.vfs for use in subject.uses(('pci', vf))]
    return findings


def _pci_mdev_parent(subject):
    if subject.request is None:
        return []
    host, address = subject.host, subject.address
    findings = [Finding('mdev_parent', 'its mediated device %s is used by domain %s' % (uuid, use['domain']))
                for uuid in host.mdevs_of(address) for use in subject.uses(('mdev', uuid))]
    if address in subject.mdev_parents:
        findings.append(Finding('mdev_parent', 'its mediated device %s is requested too'
                                % ', '.join(sorted(subject.mdev_parents[address]))))
    return findings


# -- request checks: a USB device ---------------------------------------------------------------------------

def _usb_present(subject):
    request = subject.request
    if request['bus'] is not None and subject.usb is None:
        return [Finding('usb_present', 'no USB device at bus %d device %d' % (request['bus'], request['device']))]
    if request['bus'] is None and not subject.usb_matches:
        return [Finding('usb_present', 'no USB device %s:%s is plugged in' % (request['vendor'], request['product']))]
    return []


def _usb_ambiguous(subject):
    matches = subject.usb_matches
    if len(matches) > 1:
        request = subject.request
        return [Finding('ambiguous', '%d USB devices are %s:%s (%s); give bus and device too'
                        % (len(matches), request['vendor'], request['product'],
                           ', '.join('bus %d device %d' % (usb.bus or 0, usb.device or 0)
                                     for usb in sorted(matches, key=lambda u: u.name))))]
    return []


def _usb_ids(subject):
    request, usb = subject.request, subject.usb
    if request['bus'] is not None and request['vendor'] is not None \
            and (usb.vendor, usb.product) != (request['vendor'], request['product']):
        return [Finding('ids', 'the device at bus %d device %d is %s:%s, not %s:%s as configured'
                        % (usb.bus, usb.device, usb.vendor, usb.product, request['vendor'], request['product']))]
    return []


def _usb_sysfs(subject):
    return [Finding('sysfs', problem) for problem in subject.usb.problems]


def _usb_endpoint(subject):
    usb = subject.usb
    if usb.hub:
        return [Finding('endpoint', 'USB %s is a %s, not a device to pass through'
                        % (usb.name, 'root hub' if usb.root_hub else 'hub'))]
    return []


def _usb_host_critical(subject):
    return [Finding('host_critical', 'is host-critical: %s' % reason)
            for reason in subject.host.critical_usb.get(subject.usb.name, [])]


# -- request checks: a mediated device ----------------------------------------------------------------------

def _mdev_exists(subject):
    if subject.mdev is not None:
        return []
    uuid, wanted = subject.request['uuid'], subject.request.get('model')
    offers = ['%s on %s (%s available)' % (t.type_id, t.parent, t.available_instances)
              for dev in subject.host.pci.values() for t in dev.mdev_types
              if (wanted is None or t.type_id == wanted) and (t.available_instances or 0) > 0]
    hint = ('; it can be created from %s' % ', '.join(offers)) if offers else \
        '; no parent device offers %s' % ('type ' + wanted if wanted else 'any mdev type')
    return [Finding('mdev_exists', 'mediated device %s does not exist%s' % (uuid, hint))]


def _mdev_ids(subject):
    mdev, wanted = subject.mdev, subject.request.get('model')
    if mdev is not None and wanted is not None and mdev.type_id != wanted:
        return [Finding('ids', 'mediated device %s is of type %s, not %s as configured' % (mdev.uuid, mdev.type_id, wanted))]
    return []


def _mdev_parent(subject):
    mdev = subject.mdev
    if mdev is None:
        return []
    findings = []
    if mdev.parent in subject.together:
        findings.append(Finding('mdev_parent', 'its parent %s is requested for passthrough too' % mdev.parent))
    findings += [Finding('mdev_parent', 'its parent %s is passed through to domain %s' % (mdev.parent, use['domain']))
                 for use in subject.uses(('pci', mdev.parent))]
    return findings


# -- checks over the whole request list ---------------------------------------------------------------------

def normalize_request(request):
    """The ``address`` guard: a request with its identifiers read as libvirt reads them (``_ids``), or
    ValueError naming the bad field and value."""
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


def _request_key(host, request):
    """The identity of a normalized request: a USB device named by ids is the same as by bus and device."""
    if request['type'] in ('pci', 'sriov_vf'):
        return ('pci', request['address'])
    if request['type'] == 'mdev':
        return ('mdev', request['uuid'])
    if request['bus'] is not None:
        return ('usb-address', '%d.%d' % (request['bus'], request['device']))
    usb = [u for u in host.usb.values() if (u.vendor, u.product) == (request['vendor'], request['product'])]
    if len(usb) == 1 and usb[0].bus is not None:
        return ('usb-address', '%d.%d' % (usb[0].bus, usb[0].device))
    return ('usb', '%s:%s' % (request['vendor'], request['product']))


def _duplicates(host, labelled):
    """The ``duplicate`` guard over [(label, normalized request)]: [(label, Finding)]."""
    seen, found = {}, []
    for label, request in labelled:
        key = _request_key(host, request)
        if key in seen:
            found.append((label, Finding('duplicate', 'the same device as %s' % seen[key])))
        else:
            seen[key] = label
    return found


# -- the table ----------------------------------------------------------------------------------------------

def _source_exists(subject):
    """A disk image or block device the guest is given is there (``subject.host`` answers for paths:
    ``preflight.LocalPaths`` / ``preflight.PoolPaths``); one that cannot be told is named by the caller."""
    request = subject.request
    if subject.host.exists(request['path']) is False:
        return [Finding('source_exists', '%r does not exist on the host (libvirt would only fail when the guest '
                                         'starts; host_checks: false skips this check, e.g. for an image made later)'
                        % request['path'])]
    return []


class Guard:
    """One host-side safety guard. ``overridable``: ``force`` turns its error into a warning. ``checks``: the
    check function per subject kind (``pci``, ``usb``, ``mdev``) or over the request list (``requests``,
    ``request``). ``settles``: when it fires, the subject's other checks are not run (nothing to judge)."""

    def __init__(self, name, verdict, assignment, overridable, description, settles=False, **checks):
        self.name = name
        self.verdict = verdict
        self.assignment = assignment
        self.overridable = overridable
        self.description = description
        self.settles = settles
        self.checks = checks


# in the order the checks run (and the findings are listed)
GUARDS = {guard.name: guard for guard in (
    Guard('address', REFUSE, ERROR, False, 'the PCI address, USB ids or mdev UUID are well formed',
          request=normalize_request),
    Guard('duplicate', None, ERROR, False, 'the same device is not requested twice', requests=_duplicates),
    Guard('exists', REFUSE, ERROR, False, 'the PCI device exists on the host', settles=True, pci=_pci_exists),
    Guard('source_exists', None, ERROR, False, "a disk's, cdrom's or floppy's source file or block device exists "
          'on the host', path=_source_exists),
    Guard('usb_present', REFUSE, ERROR, True,
          'the USB device is plugged in (forced: the guest starts once it is plugged in)', settles=True,
          usb=_usb_present),
    Guard('ambiguous', None, ERROR, False, 'USB vendor:product ids name a single device, else bus and device',
          settles=True, usb=_usb_ambiguous),
    Guard('mdev_exists', REFUSE, ERROR, True,
          'the mediated device exists (forced: the guest starts once it has been created)', mdev=_mdev_exists),
    Guard('sysfs', REFUSE, ERROR, False, "the device's sysfs entries are consistent (no dangling links)",
          pci=_pci_sysfs, usb=_usb_sysfs),
    Guard('endpoint', REFUSE, ERROR, False, 'only endpoints are assigned: no PCI bridges, no USB hubs',
          pci=_pci_endpoint, usb=_usb_endpoint),
    Guard('host_critical', REFUSE, ERROR, True,
          'not host-critical: the controller behind /, the default-route NIC, the boot VGA, host bridge, '
          'ISA bridge, SMBus, IOMMU', pci=_pci_host_critical, usb=_usb_host_critical),
    Guard('bind', PREPARE, UNMANAGED_ERROR, True,
          'the device is bound to vfio-pci (libvirt does it for managed hostdevs)', pci=_pci_bind),
    Guard('iommu', REFUSE, ERROR, True,
          'the IOMMU is on and the device has an IOMMU group (forced: the definition is written, the guest '
          'starts once the IOMMU is enabled)', pci=_pci_iommu),
    Guard('group_critical', REFUSE, ERROR, True, 'the IOMMU group holds no host-critical device',
          pci=_pci_group_critical),
    Guard('group', PREPARE, ERROR, True,
          'every other endpoint of the IOMMU group is bound to vfio-pci/pci-stub or unbound (forced: the '
          'guest cannot start until the group is made viable)', pci=_pci_group),
    Guard('vfio', PREPARE, WARNING, True, '/dev/vfio/vfio exists (the vfio modules are loaded)', pci=_pci_vfio),
    Guard('sriov_pf', PREPARE, WARNING, True, 'an SR-IOV PF given to a guest has no VFs enabled', pci=_pci_sriov_pf),
    Guard('reset', WARN, WARNING, True, 'the device has a reset method', pci=_pci_reset),
    Guard('companion', WARN, WARNING, True, "the device's other functions (a GPU's audio) go along with it",
          pci=_pci_companion),
    Guard('interrupt_remapping', WARN, WARNING, True, 'interrupt remapping is enabled', pci=_pci_interrupt_remapping),
    Guard('acs_override', WARN, WARNING, True, 'IOMMU groups are not faked by pcie_acs_override',
          pci=_pci_acs_override),
    Guard('host_mounted', WARN, WARNING, True,
          'it holds no mounted filesystem other than the critical ones (unmount it before it leaves the host)',
          pci=_pci_host_mounted),
    Guard('host_input', WARN, WARNING, True, "it carries none of the host's keyboards and mice (USB HID devices)",
          pci=_pci_host_input),
    Guard('group_held_live', REFUSE, ERROR, False,
          'no other endpoint of its IOMMU group is assigned to another running guest (libvirt refuses to share '
          'a group across guests)',
          pci=_group_held(True, 'group_held_live', 'shares IOMMU group %(group)d with %(peer)s, which running guest '
                          '%(other)s holds: libvirt refuses to start %(this)s with a device of the same group while '
                          '%(other)s runs')),
    Guard('group_held_config', WARN, WARNING, True,
          "no other endpoint of its IOMMU group is in another guest's definition (only one of the two guests can "
          'run at a time)',
          pci=_group_held(False, 'group_held_config', 'shares IOMMU group %(group)d with %(peer)s, which is in the '
                          'definition of guest %(other)s: %(this)s and %(other)s cannot run at the same time')),
    Guard('group_open', REFUSE, ERROR, False,
          'no running guest holds the IOMMU group of the device or of one of its mediated devices open '
          '(/dev/vfio/N): unbinding it would block in the kernel until that guest stops', pci=_pci_group_open),
    Guard('ids', REFUSE, ERROR, False, 'the vendor/product ids the user pinned match the device',
          pci=_pci_ids, usb=_usb_ids, mdev=_mdev_ids),
    Guard('sriov', None, ERROR, False, 'an SR-IOV interface source is a virtual function', pci=_pci_sriov),
    Guard('in_use_live', None, ERROR, False, 'not assigned to another running domain',
          **dict.fromkeys(('pci', 'usb', 'mdev'), _in_use(True, 'in_use_live', '%s is assigned to running domain %s'))),
    Guard('in_use_config', None, ERROR, True,
          "not in another domain's persistent definition (forced: only one of them can run at a time)",
          **dict.fromkeys(('pci', 'usb', 'mdev'),
                          _in_use(False, 'in_use_config', '%s is in the persistent definition of domain %s'))),
    Guard('pf_vf', None, ERROR, False, 'a PF and its own VFs are never assigned at the same time', pci=_pci_pf_vf),
    Guard('mdev_parent', None, ERROR, False,
          'a device is not passed through while its mediated devices are in use, nor with them',
          pci=_pci_mdev_parent, mdev=_mdev_parent),
)}


def findings(subject):
    """Every finding of the guards that judge ``subject``'s kind, in table order."""
    found = []
    for guard in GUARDS.values():
        check = guard.checks.get(subject.kind)
        if check is None:
            continue
        fired = check(subject)
        found += fired
        if fired and guard.settles:
            break
    return found


def assess_pci(host, address, together=(), usage=None, domain_name=None):
    """The guard findings for giving PCI device ``address`` to a guest, with ``together`` going along.

    The one verdict model: ``verdict`` (the report), ``check_assignment`` (the guards of domain_devices)
    and the host-preparation plans (vfio_bind) all judge a device here. ``usage`` (from
    ``domain_usage.usage_from_domains``) adds who holds the rest of the group; ``domain_name`` is the guest
    the device is for (its own uses do not count).
    """
    return findings(Subject(host, 'pci', address, together=together, usage=usage, domain_name=domain_name))


def summarize(findings):
    """(verdict, reasons, steps, warnings) from a device's findings."""
    reasons, steps, warnings = [], [], []
    for finding in findings:
        effect = GUARDS[finding.guard].verdict
        if effect == REFUSE:
            reasons.append(finding.as_dict())
        elif effect == PREPARE:
            if finding.step is not None and finding.step not in steps:
                steps.append(finding.step)
        elif effect == WARN:
            warnings.append(finding.message)
    if reasons:
        return REFUSED, reasons, [], warnings
    if steps:
        return NEEDS_PREPARATION, reasons, steps, warnings
    return READY, reasons, steps, warnings


def verdict(host, address, usage=None):
    """{'verdict', 'reasons', 'steps', 'warnings'} for passing ``address`` alone to a new guest."""
    status, reasons, steps, warnings = summarize(assess_pci(host, address, usage=usage))
    return {'verdict': status, 'reasons': reasons, 'steps': steps, 'warnings': warnings}
