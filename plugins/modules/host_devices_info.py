#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: host_devices_info
short_description: Inventory of a host's PCI/USB devices and whether each can be passed through
version_added: 0.1.0
description:
  - Reads the host's PCI and USB devices, IOMMU groups, SR-IOV functions and mediated device types from
    sysfs, and the IOMMU and vfio state of the kernel.
  - For every PCI device returns a passthrough verdict, V(ready) (bound to vfio-pci and its whole IOMMU
    group viable), V(needs_preparation) with the steps (bind it to vfio-pci, bind the rest of its group,
    disable its VFs...) or V(refused) with the reasons (not an endpoint, host-critical, IOMMU off, group
    shared with a host-critical device...).
  - Host-critical devices (refused) are the controllers behind C(/), C(/boot), C(/boot/efi), C(/efi), C(/usr),
    C(/var) and active swap (through LVM, dm-crypt, md, multipath, btrfs multi-device and ZFS pool members
    found by udev), the network devices of the default route (through bridges, bonds, VLANs and Open
    vSwitch), the boot VGA device, host bridges, ISA bridges, SMBus controllers and IOMMU functions. A
    controller behind any other mounted filesystem, or carrying the host's USB keyboards and mice, gets a
    warning. A critical filesystem whose devices cannot be found is reported in RV(problems).
  - A device whose IOMMU group (or one of whose mediated devices) a running guest holds is V(refused); the
    group's holders are in RV(iommu_groups[].held_by).
  - Optionally lists which libvirt domains use each device, live or in their persistent definition, and
    libvirt's node devices (including mediated devices defined in libvirt but not started).
  - Can render the inventory as Markdown and HTML tables and the IOMMU groups as a Graphviz DOT graph.
  - Reads only; sysfs is never written and the libvirt connection is read-only.
author:
  - virtdev.libvirt maintainers (@virtdev)
extends_documentation_fragment:
  - virtdev.libvirt.connection
  - virtdev.libvirt.device_mappings
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
options:
  root:
    description:
      - Directory under which C(sys), C(proc), C(dev) and C(usr/share/misc/pci.ids) are read, for example
        a chroot or a copy of another host's sysfs. Symbolic links are resolved inside it.
      - Domain usage and node devices always come from O(uri); with a O(root) other than V(/) or a remote
        O(uri) libvirt's IOMMU groups are not compared with the ones read under O(root).
      - With a remote O(uri) and O(root=/) the devices are read from libvirt's node devices (RV(source)).
    type: path
    default: /
  format:
    description:
      - What to return besides the data. V(facts) returns the data only; V(markdown), V(html) and V(dot)
        also return a report in RV(reports).
    type: list
    elements: str
    choices: [facts, markdown, html, dot]
    default: [facts]
  libvirt:
    description:
      - Whether to ask libvirt which domains use each device and which node devices it knows.
      - Set to V(false) on a host without libvirtd; RV(pci_devices[].used_by) is then empty.
    type: bool
    default: true
  title:
    description:
      - Title of the reports. Defaults to the host name (or O(root) when it is not V(/)).
    type: str
  pci_ids:
    description:
      - A C(pci.ids) file for device and vendor names. By default the first of
        C(usr/share/misc/pci.ids), C(usr/share/hwdata/pci.ids) and C(usr/share/pci.ids) under O(root)
        (Debian packages C(pci.ids) or C(hwdata)); without one, names are not returned.
    type: path
notes:
  - The verdict of a device is for passing that device alone; M(virtdev.libvirt.domain_devices) runs the
    same guards for the whole set of host devices given to a domain before it writes anything, and
    refuses unsafe assignments.
  - Reading sysfs needs no privileges; reading the list of domains of V(qemu:///system) may.
  - With a local O(uri) (the default) sysfs is read on the host the module runs on. With one that names a host,
    such as V(qemu+ssh://hv1/system) from the controller, the host is read from that host's libvirt node devices
    (see RV(source)); with O(libvirt=false) it cannot be, and this machine's sysfs is read.
  - A libvirt driver without node devices (the embedded driver V(qemu:///embed)) gives a warning, not a failure;
    locally the inventory comes from sysfs all the same; over a remote O(uri) it is empty.
seealso:
  - module: virtdev.libvirt.domain_devices
'''

EXAMPLES = r'''
- name: Which devices of this host can be passed through?
  virtdev.libvirt.host_devices_info:
  register: host

- name: Show the devices that are ready or need preparation
  ansible.builtin.debug:
    msg: "{{ item.address }} {{ item.device_name }}: {{ item.verdict }} {{ item.steps | map(attribute='message') }}"
  loop: "{{ host.pci_devices | rejectattr('verdict', 'eq', 'refused') }}"
  loop_control:
    label: "{{ item.address }}"

- name: Write an HTML report and an IOMMU group graph, on a host without libvirtd
  virtdev.libvirt.host_devices_info:
    libvirt: false
    format: [html, dot]
  register: report

- name: Save them on the controller
  ansible.builtin.copy:
    content: "{{ report.reports.html }}"
    dest: "reports/{{ inventory_hostname }}.html"
    mode: "0644"
  delegate_to: localhost

- name: Inspect a sysfs copied from another machine
  virtdev.libvirt.host_devices_info:
    root: /srv/sysfs-copies/node7
    libvirt: false
'''

RETURN = r'''
root:
  description: The O(root) the host was read under (V(libvirt node devices) when RV(source) is that).
  returned: always
  type: str
  sample: /
source:
  description:
    - Where the devices were read. V(sysfs) under O(root) on the machine the module runs on; V(libvirt node devices)
      when O(uri) names a host (V(qemu+ssh://hv1/system), V(qemu+tls://hv1/system)) and O(root) is V(/); the
      inventory and verdicts are then those of that host, with RV(pci_devices[].not_available) and
      RV(pci_devices[].not_checked) naming what node devices cannot tell. Its RV(iommu) holds only C(enabled),
      C(groups) and C(vfio_device) (V(null) when not known), RV(kernel_cmdline) is empty.
  returned: always
  type: str
  sample: sysfs
iommu:
  description: IOMMU and vfio state of the kernel.
  returned: always
  type: dict
  contains:
    enabled:
      description: Whether there are IOMMU groups (the IOMMU is on).
      type: bool
    kind:
      description: V(intel), V(amd), V(arm-smmu), V(virtio) or V(null) when unknown.
      type: str
    units:
      description: The IOMMU units under C(/sys/class/iommu).
      type: list
      elements: str
    firmware_table:
      description: The ACPI table announcing an IOMMU (C(DMAR), C(IVRS), ...), even when it is off.
      type: str
    groups:
      description: Number of IOMMU groups.
      type: int
    passthrough_mode:
      description: Whether C(iommu=pt) or identity-mapped groups are in use.
      type: bool
    vfio_device:
      description: Whether C(/dev/vfio/vfio) exists.
      type: bool
    iommufd_device:
      description: Whether C(/dev/iommu) exists.
      type: bool
    vfio_pci_driver:
      description: Whether the vfio-pci driver is registered.
      type: bool
    interrupt_remapping:
      description: V(true) when C(/proc/interrupts) shows remapped interrupts, V(false) when it shows none,
        V(null) when unknown.
      type: bool
    allow_unsafe_interrupts:
      description: The C(vfio_iommu_type1.allow_unsafe_interrupts) parameter, V(null) when not loaded.
      type: bool
    acs_override:
      description: Whether C(pcie_acs_override) is on the kernel command line.
      type: bool
    modules:
      description: Whether each of the vfio, mdev and kvm modules is loaded.
      type: dict
    cmdline:
      description: The IOMMU and vfio parameters of the kernel command line.
      type: dict
  sample:
    enabled: true
    kind: intel
    units: [dmar0, dmar1]
    firmware_table: DMAR
    groups: 14
    interrupt_remapping: true
kernel_cmdline:
  description: C(/proc/cmdline).
  returned: always
  type: str
pci_devices:
  description: Every PCI function, sorted by address.
  returned: always
  type: list
  elements: dict
  contains:
    address:
      description: PCI address C(DDDD:BB:SS.F).
      type: str
    vendor:
      description: Vendor id, for example C(0x10de).
      type: str
    device:
      description: Device id.
      type: str
    subsystem_vendor:
      description: Subsystem vendor id.
      type: str
    subsystem_device:
      description: Subsystem device id.
      type: str
    vendor_name:
      description: Vendor name from C(pci.ids), V(null) without it.
      type: str
    device_name:
      description: Device name from C(pci.ids).
      type: str
    subsystem_name:
      description: Subsystem name from C(pci.ids).
      type: str
    class:
      description: Class code, for example C(0x030000).
      type: str
    class_name:
      description: Class name (from C(pci.ids) when available).
      type: str
    role:
      description: What the class makes the device for the guards (V(bridge), V(host_bridge),
        V(chipset), V(display), V(audio), V(network), V(storage), V(usb_controller), V(other)).
      type: str
    driver:
      description: The bound driver, V(null) when unbound.
      type: str
    driver_override:
      description: The C(driver_override) of the device, V(null) when not set.
      type: str
    iommu_group:
      description: IOMMU group number, V(null) when it has none.
      type: int
    iommu_group_members:
      description: All devices of its IOMMU group, itself included.
      type: list
      elements: str
    numa_node:
      description: NUMA node (-1 when the platform does not say).
      type: int
    boot_vga:
      description: Whether it is the boot VGA device (V(null) for non-VGA devices).
      type: bool
    reset_methods:
      description: Reset methods from C(reset_method), V([]) when it has none, V(null) when unknown.
      type: list
      elements: str
    endpoint:
      description: Whether it is an endpoint (not a bridge with devices behind it).
      type: bool
    parent:
      description: The bridge it sits behind.
      type: str
    children:
      description: The devices behind it (for bridges).
      type: list
      elements: str
    sriov:
      description: For SR-IOV physical functions, C(totalvfs), C(numvfs) and C(vfs) (VF addresses).
      type: dict
    physfn:
      description: For SR-IOV virtual functions, the address of the PF.
      type: str
    mdev_types:
      description: Mediated device types it offers, with C(type), C(name), C(available_instances),
        C(device_api), C(description) and the existing C(devices).
      type: list
      elements: dict
    host_critical:
      description: Why the host cannot give it away (empty when it can).
      type: list
      elements: str
    used_by:
      description: Domains using it, each with C(domain), C(live) (in the running guest) and C(config)
        (in the persistent definition).
      type: list
      elements: dict
    libvirt_name:
      description: Its libvirt node device name, when O(libvirt=true).
      type: str
      returned: when libvirt knows it
    verdict:
      description: V(ready), V(needs_preparation) or V(refused).
      type: str
    reasons:
      description: For V(refused), each reason with C(guard), C(message) and C(overridable) (whether
        C(force) in M(virtdev.libvirt.domain_devices) may override it).
      type: list
      elements: dict
    steps:
      description: For V(needs_preparation), the steps, each with C(action) (V(bind_vfio),
        V(disable_sriov), V(load_module)), C(message) and C(address) or C(module).
      type: list
      elements: dict
    warnings:
      description: Things that do not block passthrough but matter (no reset method, a companion
        function, no interrupt remapping).
      type: list
      elements: str
    problems:
      description: Inconsistencies found in its sysfs entries.
      type: list
      elements: str
    not_available:
      description:
        - Read from libvirt's node devices (RV(source)), the fields of this entry node devices do not carry; they
          are V(null) (V([]) for C(host_critical), which then holds only the chipset functions known by class).
      returned: when RV(source) is V(libvirt node devices)
      type: list
      elements: str
    not_checked:
      description:
        - Read from libvirt's node devices, the guards of the verdict that could not be checked (C(guard), C(what),
          C(why)), such as the root disk's controller, the default-route NIC, the boot VGA and the other facts node
          devices do not carry. The verdict holds for everything else.
      returned: when RV(source) is V(libvirt node devices)
      type: list
      elements: dict
  sample:
    - address: "0000:01:00.0"
      vendor: "0x10de"
      device: "0x1b80"
      vendor_name: NVIDIA Corporation
      device_name: GP104 [GeForce GTX 1080]
      class: "0x030000"
      class_name: VGA compatible controller
      driver: nouveau
      iommu_group: 1
      iommu_group_members: ["0000:00:01.0", "0000:01:00.0", "0000:01:00.1"]
      verdict: needs_preparation
      steps:
        - {action: bind_vfio, address: "0000:01:00.0", current_driver: nouveau,
           message: bind 0000:01:00.0 (now nouveau) to vfio-pci}
        - {action: bind_vfio, address: "0000:01:00.1", current_driver: snd_hda_intel,
           message: bind group member 0000:01:00.1 (now snd_hda_intel) to vfio-pci}
usb_devices:
  description: USB devices (root hubs included), with C(name), C(vendor), C(product), C(bus), C(device),
    C(manufacturer), C(product_name), C(serial), C(device_class), C(speed), C(hub), C(controller) (PCI
    address), C(host_critical), C(used_by), C(verdict) (V(ready) or V(refused)) and C(reasons).
  returned: always
  type: list
  elements: dict
iommu_groups:
  description: IOMMU groups with C(group), C(type), C(devices) and C(held_by), the guests that hold the group
    (C(domain) and C(live)), from the domains using one of its devices and the processes holding
    C(/dev/vfio/N) open. One group cannot be shared across guests; a device whose group another running guest
    holds is V(refused) (guard C(group_held_live)), one whose group is only in another guest's definition is
    warned about (guard C(group_held_config)).
  returned: always
  type: list
  elements: dict
  contains:
    group:
      description: The group number.
      type: int
    type:
      description: The group's C(type) in sysfs (V(DMA), V(identity)...), when the kernel shows it.
      type: str
    devices:
      description: Its PCI devices.
      type: list
      elements: str
    held_by:
      description: Guests holding the group, each C(domain) (a guest name, or C(pid N (comm)) for a process
        that is not a named guest) and C(live) (running).
      type: list
      elements: dict
mdev_types:
  description: All mediated device types offered on the host (see RV(pci_devices[].mdev_types)).
  returned: always
  type: list
  elements: dict
mdev_devices:
  description: Mediated devices with C(uuid), C(parent), C(type), C(used_by) and C(active) (V(false) for
    devices defined in libvirt and not started).
  returned: always
  type: list
  elements: dict
host_critical:
  description: Host-critical PCI devices and why.
  returned: always
  type: dict
  sample: {"0000:00:17.0": ["the controller of / (ext4 on /dev/sda2)"]}
summary:
  description: Number of PCI devices per verdict.
  returned: always
  type: dict
  sample: {ready: 1, needs_preparation: 3, refused: 11}
problems:
  description: What did not look like a kernel's sysfs (dangling links, a group directory that is not a
    number, an unreadable class file, a root device not found, a domain that vanished while read...).
  returned: always
  type: list
  elements: str
libvirt:
  description: libvirt's side, when O(libvirt=true). C(uri), C(domains) (number read),
    C(node_devices) (count per capability) and C(only_in_libvirt) (node devices sysfs does not show,
    such as mediated devices defined but not started).
  returned: when O(libvirt=true)
  type: dict
mappings:
  description:
    - Each device mapping of O(mappings) on this host (see C(docs/device_mappings.md)), in the order given.
  returned: when O(mappings) is given
  type: list
  elements: dict
  contains:
    name:
      description: The mapping's name.
      type: str
    description:
      description: The mapping's O(mappings[].description), or V(null).
      type: str
    type:
      description: V(pci), V(usb) or V(mdev).
      type: str
    count:
      description: How many devices a guest asking for it gets.
      type: int
    multifunction:
      description: Whether a candidate brings every function of its slot.
      type: bool
    free:
      description: How many of its candidates no guest holds and every refusing guard passes.
      type: int
    mismatches:
      description: Exact candidates whose device no longer has the declared ids, subsystem or IOMMU group.
      type: list
      elements: str
    candidates:
      description:
        - The devices of this host the mapping's candidates give, each with C(device) (PCI address or USB device),
          C(functions), C(ids), C(candidate) (the entry of O(mappings) it comes from), C(held_by) (the guests
          whose live or persistent definitions hold it, each C(domain), C(live), C(config)), C(free), C(not_free)
          (why not) and C(mismatch) (what changed).
        - For an V(mdev) mapping the existing mediated devices of its type (C(device) is C(mdev UUID)), with
          C(uuid), C(parent), C(mdev_type); C(ids) are the parent's.
      type: list
      elements: dict
    parents:
      description:
        - V(mdev) mappings only - each parent the candidates name or select, with C(address), C(mdev_type) and
          C(available_instances) (how many more of the type it can create, M(virtdev.libvirt.mdev) creates them).
      type: list
      elements: dict
      returned: for mdev mappings
  sample:
    - name: x710-vf
      type: pci
      count: 1
      multifunction: false
      free: 3
      mismatches: []
      candidates:
        - device: "0000:41:02.0"
          functions: ["0000:41:02.0"]
          ids: "8086:154c"
          candidate: "mappings[0].candidates[0]"
          held_by: [{domain: web, live: false, config: true}]
          free: false
          not_free: ["held by guest web (defined)"]
          mismatch: []
permitted:
  description:
    - The devices of this host O(permitted) lets guests have, C(pci) (addresses), C(usb) (device names) and C(mdev)
      (UUIDs of mediated devices permitted by an mdev mapping or selector; an mdev of a permitted C(pci) parent is
      permitted too).
  returned: when O(permitted) is given
  type: dict
reports:
  description: The rendered reports, one key per O(format) other than V(facts).
  returned: when O(format) asks for one
  type: dict
  contains:
    markdown:
      description: Markdown tables.
      type: str
    html:
      description: A self-contained HTML page.
      type: str
    dot:
      description: A Graphviz DOT graph of the IOMMU groups (render with C(dot -Tsvg)).
      type: str
'''

import os
import socket

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _libvirt, _pci_ids
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import facts as host_facts
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import (
    domain_usage, node_device_xml, nodedev_source, report, source, sysfs_source,
)
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import LibvirtFailure
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import mappings as host_mappings


def argument_spec():
    spec = dict(_common.CONNECTION_ARGS)
    spec.update(
        root={'type': 'path', 'default': '/'},
        format={'type': 'list', 'elements': 'str', 'choices': ['facts', 'markdown', 'html', 'dot'],
                'default': ['facts']},
        libvirt={'type': 'bool', 'default': True},
        title={'type': 'str'},
        pci_ids={'type': 'path'},
    )
    spec.update(host_mappings.argument_spec())
    return spec


def read_libvirt(module, conn):
    """(usage, node devices, problems) from a read-only connection."""
    problems = []
    domains = conn.domain_definitions(problems)
    try:
        usage = domain_usage.usage_from_domains(domains)
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    try:
        documents = nodedev_source.NodeDeviceSource(conn).documents()
    except nodedev_source.NodeDevicesUnavailable as exc:  # the embedded driver has none: inventory without them
        module.warn('%s; the inventory has no node devices of libvirt' % exc)
        documents = None
    node_devices = []
    for text in documents or ():
        try:
            node_devices.append(node_device_xml.parse_node_device(text))
        except ValueError as exc:
            problems.append('a node device could not be read: %s' % exc)
    return usage, len(domains), (node_devices, documents), problems


def remote_facts(host, usage):
    """host_facts of a host read from node devices, each PCI device marked with what they could not tell."""
    facts = host_facts.host_facts(host, usage)
    for entry in facts['pci_devices']:
        entry['not_available'] = list(nodedev_source.UNAVAILABLE_FACTS)
        entry['not_checked'] = nodedev_source.not_checked('pci')
    facts['kernel_cmdline'] = ''
    return facts


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    _common.check_strings(module)  # NUL, control characters, lone surrogates: refused naming the option
    params = module.params
    _common.require_libraries(module, need_libvirt=params['libvirt'])
    try:
        mappings = host_mappings.parse_mappings(params['mappings'])
        permitted = host_mappings.parse_permitted(params['permitted'], mappings)
    except host_mappings.MappingError as exc:
        module.fail_json(msg=str(exc))
    root = params['root']
    if not os.path.isdir(root):
        module.fail_json(msg='root: %r is not a directory' % root)
    ids_path = params['pci_ids'] or _pci_ids.find_pci_ids(root)
    if params['pci_ids'] and not os.path.isfile(params['pci_ids']):
        module.fail_json(msg='pci_ids: %r is not a file' % params['pci_ids'])
    # libvirt on another machine: its node devices describe it, this machine's sysfs does not
    remote = params['libvirt'] and source.reads_node_devices(root, params['uri'])
    host = None if remote else sysfs_source.read_host(root, _pci_ids.PciIds.load(ids_path))

    usage, libvirt_summary, node_devices, documents, problems = {}, None, [], None, []
    if params['libvirt']:
        try:
            conn = _libvirt.Connection(params['uri'], readonly=True)
        except LibvirtFailure as exc:
            module.fail_json(msg='%s (set libvirt: false to inventory the host without libvirt)' % exc)
        try:
            usage, domain_count, (node_devices, documents), problems = read_libvirt(module, conn)
        except LibvirtFailure as exc:
            module.fail_json(msg='%s (set libvirt: false to inventory the host without libvirt)' % exc)
        finally:
            conn.close()
        libvirt_summary = {'uri': params['uri'], 'domains': domain_count}

    if remote:
        host = nodedev_source.read_host(documents or ())
        facts = remote_facts(host, usage)
    else:
        facts = host_facts.host_facts(host, usage)
    facts['source'] = nodedev_source.SOURCE if remote else 'sysfs'
    facts['problems'].extend(problems)
    if libvirt_summary is not None:
        compare_groups = source.sysfs_is_libvirt_host(root, params['uri'])
        libvirt_summary.update(node_device_xml.merge_node_devices(facts, node_devices, compare_groups=compare_groups))
        facts['libvirt'] = libvirt_summary
    if mappings:
        facts['mappings'] = host_mappings.report(host, mappings, usage, permitted)
    if permitted is not None:
        allowed = host_mappings.Permitted(host, mappings, permitted)
        facts['permitted'] = {'pci': sorted(allowed.pci), 'usb': sorted(allowed.usb), 'mdev': sorted(allowed.mdevs)}
    formats = params['format']
    if any(name != 'facts' for name in formats):
        machine = source.uri_host(params['uri']) if remote else socket.gethostname()
        title = params['title'] or ('Host devices on %s' % (machine if root == '/' else root))
        facts['reports'] = report.render(facts, formats, title)
    module.exit_json(changed=False, **facts)


if __name__ == '__main__':
    main()
