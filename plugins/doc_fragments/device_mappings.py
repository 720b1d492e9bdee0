# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r'''
options:
  mappings:
    description:
      - Device mappings (see C(docs/device_mappings.md)) - named logical devices, each with its candidate devices on
        the hosts, so that one guest definition serves every host of a fleet. Usually set once per host or host
        group in the inventory.
      - "A guest asks for a mapping by name, C({kind: hostdev, mapping: NAME}) or an interface
        C(source: {mapping: NAME}). On each run the name is resolved on the host - a device the guest already
        holds from the mapping is kept, otherwise the first free candidate, in the mapping's order, is taken
        (guests in the order of the task) - and the device is then handled exactly as if its address had been
        given."
      - Free means held by no other guest's persistent or live definition, not taken by an earlier guest of the
        same task, and passing every passthrough guard that refuses an assignment (not host-critical, a clean
        IOMMU group, ...).
      - An exact candidate whose device no longer has the declared ids, subsystem or IOMMU group is never taken,
        and a guest holding it is refused, with what changed.
    type: list
    elements: dict
    suboptions:
      name:
        description: The name guests ask for (letters, digits, C(.), C(_), C(-)); unique.
        type: str
        required: true
      description:
        description: Free text, shown in reports.
        type: str
      type:
        description:
          - "V(pci) (PCI functions, also SR-IOV VFs), V(usb) (USB devices by vendor and product ids) or V(mdev)
            (existing mediated devices of O(mappings[].candidates[].mdev_type) on the parent devices the other keys
            of a candidate name or select; the lowest free one by parent address, then UUID, is taken; a guest asks
            with C({kind: hostdev, type: mdev, mapping: NAME}). M(virtdev.libvirt.mdev) creates the instances)."
        type: str
        choices: [pci, usb, mdev]
        default: pci
      count:
        description: How many devices a guest asking for the mapping gets (two GPUs of one model, say).
        type: int
        default: 1
      multifunction:
        description:
          - Take every function of the candidate's slot (a GPU with its audio function). With C(guest_address)
            on the asking device, the functions share that guest slot.
        type: bool
        default: false
      candidates:
        description:
          - The devices of the mapping. With O(mappings[].candidates[].address) a candidate is that exact device,
            and O(mappings[].candidates[].ids), O(mappings[].candidates[].subsystem) and
            O(mappings[].candidates[].iommu_group) are what it must still have. Without it the keys select
            every endpoint of the host they all match, in address order.
        type: list
        elements: dict
        required: true
        suboptions:
          address:
            description: The PCI address DDDD:BB:SS.F of an exact candidate.
            type: str
          ids:
            description:
              - Vendor and device ids C(vvvv:dddd) (for V(usb) vendor and product); expected with an address, a
                selector without one.
            type: str
          subsystem:
            description: Subsystem vendor and device ids C(vvvv:dddd); expected with an address, a selector without.
            type: str
          iommu_group:
            description: The IOMMU group an exact candidate must be in.
            type: int
          class:
            description: Selector - a PCI class code prefix of 2, 4 or 6 hex digits (V(0302) for 3D controllers).
            type: str
          driver:
            description: Selector - the host driver the device is bound to.
            type: str
          pf:
            description: Selector - the VFs of the SR-IOV PF at this PCI address.
            type: str
          serial:
            description: For V(usb), the serial number that tells identical devices apart.
            type: str
          mdev_type:
            description:
              - For V(mdev), required - the mdev type id as the parent lists it under C(mdev_supported_types)
                (V(nvidia-63), V(i915-GVTg_V5_4)). The other keys select the parent PCI devices (with
                O(mappings[].candidates[].address) one exact parent).
            type: str
  permitted:
    description:
      - "The host's permitted passthrough devices - mapping names (strings) and selectors (dictionaries with the
        keys of a candidate, plus C(type: usb) for USB devices or C(type: mdev) with C(mdev_type) for the mediated
        devices of that type on the selected parents)."
      - "When given, every passthrough request - by mapping, by address in a typed device or in raw C(kind: xml) -
        for a device outside the set is refused before anything is written, naming the device and the rules.
        A mediated device is permitted when its parent PCI device is, or an mdev mapping or selector gives it.
        C(force) in M(virtdev.libvirt.domain_devices) does not override it."
      - Not given (the default) - no restriction. An empty list permits nothing.
      - In M(virtdev.libvirt.host_devices_info) the devices it permits on the host are listed in its C(permitted) result.
    type: list
    elements: raw
'''
