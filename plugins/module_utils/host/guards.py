# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host-side safety guards: ONE table, one row per guard, each with its own check function.

A row says what the guard does to a device's verdict (``REFUSE`` / ``PREPARE`` / ``WARN`` / None), what
it does to an assignment in domain_devices (``ERROR`` / ``WARNING`` / ``UNMANAGED_ERROR``), whether
``force`` may turn its error into a warning, what it protects (``description``, shown in the docs), and
``check``: the function that finds its findings for one PCI device (``Context`` -> [Finding]). Guards
judged per request rather than per device (duplicates, PF/VF pairs, USB and mdev requests) have their
check in ``preflight``, named in the same table. Adding a guard is adding a row.

``assess_pci`` runs the device checks in table order; ``summarize``/``verdict`` turn findings into
ready / needs_preparation (+ steps) / refused (+ reasons).
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import model
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import domain_usage


IOMMU_ENABLE_HINT = {
    'intel': 'add intel_iommu=on to the kernel command line',
    'amd': 'check that amd_iommu is not off on the kernel command line and the IOMMU is enabled in firmware',
}


# verdicts
READY, NEEDS_PREPARATION, REFUSED = 'ready', 'needs_preparation', 'refused'


# what a guard finding does to a verdict / to an assignment
REFUSE, PREPARE, WARN = 'refuse', 'prepare', 'warn'


ERROR, WARNING, IGNORE, UNMANAGED_ERROR = 'error', 'warning', 'ignore', 'unmanaged_error'


class Guard:
    """One host-side safety guard. ``overridable``: ``force`` turns its error into a warning."""

    def __init__(self, name, verdict, assignment, overridable, description):
        self.name = name
        self.verdict = verdict
        self.assignment = assignment
        self.overridable = overridable
        self.description = description


GUARDS = {guard.name: guard for guard in (
    Guard('address', REFUSE, ERROR, False, 'the PCI address, USB ids or mdev UUID are well formed'),
    Guard('exists', REFUSE, ERROR, False, 'the PCI device exists on the host'),
    Guard('sysfs', REFUSE, ERROR, False, "the device's sysfs entries are consistent (no dangling links)"),
    Guard('ids', REFUSE, ERROR, False, 'the vendor/product ids the user pinned match the device'),
    Guard('endpoint', REFUSE, ERROR, False, 'only endpoints are assigned: no PCI bridges, no USB hubs'),
    Guard('iommu', REFUSE, ERROR, True,
          'the IOMMU is on and the device has an IOMMU group (forced: the definition is written, the guest '
          'starts once the IOMMU is enabled)'),
    Guard('host_critical', REFUSE, ERROR, True,
          'not host-critical: the controller behind /, the default-route NIC, the boot VGA, host bridge, '
          'ISA bridge, SMBus, IOMMU'),
    Guard('group_critical', REFUSE, ERROR, True, 'the IOMMU group holds no host-critical device'),
    Guard('group', PREPARE, ERROR, True,
          'every other endpoint of the IOMMU group is bound to vfio-pci/pci-stub or unbound (forced: the '
          'guest cannot start until the group is made viable)'),
    Guard('vfio', PREPARE, WARNING, True, '/dev/vfio/vfio exists (the vfio modules are loaded)'),
    Guard('bind', PREPARE, UNMANAGED_ERROR, True,
          'the device is bound to vfio-pci (libvirt does it for managed hostdevs)'),
    Guard('sriov_pf', PREPARE, WARNING, True, 'an SR-IOV PF given to a guest has no VFs enabled'),
    Guard('group_open', REFUSE, ERROR, False,
          'no running guest holds the IOMMU group of the device or of one of its mediated devices open '
          '(/dev/vfio/N): unbinding it would block in the kernel until that guest stops'),
    Guard('group_held_live', REFUSE, ERROR, False,
          'no other endpoint of its IOMMU group is assigned to another running guest (libvirt refuses to share '
          'a group across guests)'),
    Guard('group_held_config', WARN, WARNING, True,
          "no other endpoint of its IOMMU group is in another guest's definition (only one of the two guests can "
          'run at a time)'),
    Guard('host_mounted', WARN, WARNING, True,
          'it holds no mounted filesystem other than the critical ones (unmount it before it leaves the host)'),
    Guard('host_input', WARN, WARNING, True, "it carries none of the host's keyboards and mice (USB HID devices)"),
    Guard('in_use_live', None, ERROR, False, 'not assigned to another running domain'),
    Guard('in_use_config', None, ERROR, True,
          "not in another domain's persistent definition (forced: only one of them can run at a time)"),
    Guard('duplicate', None, ERROR, False, 'the same device is not requested twice'),
    Guard('pf_vf', None, ERROR, False, 'a PF and its own VFs are never assigned at the same time'),
    Guard('sriov', None, ERROR, False, 'an SR-IOV interface source is a virtual function'),
    Guard('mdev_parent', None, ERROR, False,
          'a device is not passed through while its mediated devices are in use, nor with them'),
    Guard('mdev_exists', REFUSE, ERROR, True,
          'the mediated device exists (forced: the guest starts once it has been created)'),
    Guard('usb_present', REFUSE, ERROR, True,
          'the USB device is plugged in (forced: the guest starts once it is plugged in)'),
    Guard('ambiguous', None, ERROR, False, 'USB vendor:product ids name a single device, else bus and device'),
    Guard('companion', WARN, WARNING, True, "the device's other functions (a GPU's audio) go along with it"),
    Guard('reset', WARN, WARNING, True, 'the device has a reset method'),
    Guard('interrupt_remapping', WARN, WARNING, True, 'interrupt remapping is enabled'),
    Guard('acs_override', WARN, WARNING, True, 'IOMMU groups are not faked by pcie_acs_override'),
)}


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


def assess_pci(host, address, together=(), usage=None, domain_name=None):
    """The guard findings for giving PCI device ``address`` to a guest, with ``together`` going along.

    The one verdict model: ``verdict`` (the report), ``check_assignment`` (the guards of domain_devices)
    and the host-preparation plans (vfio_bind) all judge a device here. ``together`` holds the addresses
    requested at the same time: group members among them do not make the group unviable. ``usage`` (from
    ``usage_from_domains``) adds who holds the rest of the group; ``domain_name`` is the guest the device
    is for (its own uses do not count).
    """
    together = set(together) | {address}
    dev = host.pci.get(address)
    if dev is None:
        return [Finding('exists', 'there is no PCI device %s on this host (not under /sys/bus/pci/devices)'
                        % address)]
    findings = [Finding('sysfs', problem) for problem in dev.problems]
    if dev.role in model.NOT_ENDPOINT_ROLES or dev.children:
        behind = (' with %s behind it' % ', '.join(dev.children)) if dev.children else ''
        findings.append(Finding('endpoint', 'is a %s (class %s)%s, not an endpoint'
                                % (dev.class_label, dev.class_code, behind)))
    for reason in host.critical.get(address, []):
        findings.append(Finding('host_critical', 'is host-critical: %s' % reason))
    if not model.is_vfio_driver(dev.driver):
        findings.append(Finding('bind', 'is bound to %s, not to vfio-pci' % (dev.driver or 'no driver'),
                                step={'action': 'bind_vfio', 'address': address, 'current_driver': dev.driver,
                                      'message': 'bind %s (now %s) to vfio-pci' % (address, dev.driver or 'unbound')}))
    if not host.iommu_enabled:
        findings.append(Finding('iommu', _iommu_off_message(host)))
    elif dev.iommu_group is None:
        findings.append(Finding('iommu', 'has no IOMMU group although the IOMMU is on'))
    else:
        for member in host.bindable_peers(address):
            if member in together:
                continue
            other = host.pci.get(member)
            if member in host.critical:
                findings.append(Finding('group_critical', 'shares IOMMU group %d with %s, which is host-critical: %s'
                                        % (dev.iommu_group, _describe(host, member),
                                           '; '.join(host.critical[member]))))
            elif not model.group_member_viable(other.driver):
                findings.append(Finding(
                    'group', 'shares IOMMU group %d with %s, which is still bound to a host driver'
                    % (dev.iommu_group, _describe(host, member)),
                    step={'action': 'bind_vfio', 'address': member, 'current_driver': other.driver,
                          'message': 'bind group member %s (now %s) to vfio-pci' % (member, other.driver)}))
        if host.iommu.get('vfio_device') is False:  # None: not known (a remote host's node devices)
            findings.append(Finding('vfio', '/dev/vfio/vfio is missing: the vfio modules are not loaded',
                                    step={'action': 'load_module', 'module': 'vfio-pci',
                                          'message': 'load the vfio-pci module'}))
    if dev.sriov_numvfs:
        findings.append(Finding('sriov_pf', 'is an SR-IOV PF with %d VFs enabled (%s); they disappear when it '
                                'leaves its driver' % (dev.sriov_numvfs, ', '.join(dev.vfs) or 'not listed'),
                                step={'action': 'disable_sriov', 'address': address,
                                      'message': 'set sriov_numvfs of %s to 0' % address}))
    if dev.reset_methods == []:
        findings.append(Finding('reset', 'has no reset method: the guest may find it in a dirty state after a '
                                'reboot'))
    for sibling in sorted(host.pci):
        other = host.pci[sibling]
        if sibling in together or other.slot != dev.slot or not other.endpoint:
            continue
        if dev.parent is None or dev.physfn or other.physfn or sibling in host.critical:
            continue  # integrated chipset functions and VFs share slots without belonging together
        if dev.iommu_group is not None and other.iommu_group == dev.iommu_group:
            continue  # the group guard covers it
        findings.append(Finding('companion', '%s is another function of the same device; guests usually need it '
                                'too' % _describe(host, sibling)))
    if host.iommu_enabled and host.iommu.get('interrupt_remapping') is False \
            and not host.iommu.get('allow_unsafe_interrupts'):
        findings.append(Finding('interrupt_remapping', 'the host has no interrupt remapping: vfio refuses the '
                                'device unless vfio_iommu_type1.allow_unsafe_interrupts=1'))
    if host.iommu.get('acs_override'):
        findings.append(Finding('acs_override', 'pcie_acs_override is on the kernel command line: the IOMMU '
                                'groups do not show the real isolation'))
    if address not in host.critical:
        for reason in host.mounted.get(address, []):
            findings.append(Finding('host_mounted', 'holds a mounted filesystem: %s; unmount it before the device '
                                    'leaves the host' % reason))
    if host.inputs.get(address):
        findings.append(Finding('host_input', "carries the host's input devices %s: the host loses them when the "
                                'controller leaves it' % ', '.join(host.inputs[address])))
    findings += _held_findings(host, dev, together, usage or {}, domain_name)
    return findings


def _held_findings(host, dev, together, usage, domain_name):
    """Who else holds the device's IOMMU group: guests that have a group peer (running: refused, defined:
    warned) and processes holding the group of the device or of its mediated devices open."""
    findings = []
    this = 'guest %s' % domain_name if domain_name else 'a guest'
    explained = {domain_name} if domain_name else set()
    explained.update(use['domain'] for use in domain_usage.used_by(usage, ('pci', dev.address)) if use['live'])
    for member in host.bindable_peers(dev.address):
        if member in together:
            continue
        for use in domain_usage.used_by(usage, ('pci', member), exclude=domain_name):
            if use['live']:
                explained.add(use['domain'])
                findings.append(Finding('group_held_live', 'shares IOMMU group %d with %s, which running guest %s '
                                        'holds: libvirt refuses to start %s with a device of the same group while %s '
                                        'runs' % (dev.iommu_group, _describe(host, member), use['domain'], this,
                                                  use['domain'])))
            else:
                findings.append(Finding('group_held_config', 'shares IOMMU group %d with %s, which is in the definition '
                                        'of guest %s: %s and %s cannot run at the same time'
                                        % (dev.iommu_group, _describe(host, member), use['domain'], this,
                                           use['domain'])))
    users = [user for user in host.open_by(dev.iommu_group) if user.get('guest') not in explained]
    if users:
        findings.append(Finding('group_open', 'its IOMMU group %d is held open by %s (a running guest)'
                                % (dev.iommu_group, model.describe_users(users))))
    for uuid in host.mdevs_of(dev.address):
        mdev = host.mdevs[uuid]
        users = [user for user in host.open_by(mdev.iommu_group) if user.get('guest') != domain_name]
        if users:
            findings.append(Finding('group_open', 'its mediated device %s is held by %s: the device cannot leave '
                                    'its driver %s until that guest stops (the unbind would block)'
                                    % (uuid, model.describe_users(users), dev.driver or 'none')))
    return findings


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
