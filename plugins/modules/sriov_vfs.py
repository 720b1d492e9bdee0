#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
module: sriov_vfs
short_description: Set the number of SR-IOV virtual functions of a PF and their MAC, VLAN, trust and spoof checking
version_added: 0.1.0
description:
  - Sets C(sriov_numvfs) of an SR-IOV physical function (PF) to O(num_vfs). The kernel refuses to go from one
    non-zero count to another (EBUSY), so the module goes through 0. O(num_vfs) above the PF's
    C(sriov_totalvfs) is refused before anything is written.
  - Sets the MAC address, VLAN, trust and spoof checking of VFs through the PF's network interface
    (C(ip link set PF vf N ...)), only where they differ from what C(ip -j link show) reports.
  - With O(persistent=true) writes a udev rule that sets the same count and VF settings each time the PF's
    driver binds, so they survive reboots and driver reloads.
author:
  - virtdev.libvirt maintainers (@virtdev)
attributes:
  check_mode:
    support: full
    description: Computes the same sysfs writes, C(ip) commands and files, and writes and runs nothing.
  diff_mode:
    support: full
    description: Shows the VF count and the rules file before and after.
extends_documentation_fragment:
  - virtdev.libvirt.group_uri
options:
  pf:
    description: The PF, as a PCI address C(DDDD:BB:SS.F) or as its network interface name (C(ens2f0)).
    type: str
    required: true
  num_vfs:
    description:
      - The number of VFs wanted; V(0) disables SR-IOV. At most the PF's C(sriov_totalvfs).
      - Changing the count removes and recreates every VF; VFs held by a running guest (their
        C(/dev/vfio/GROUP) is open) make the module refuse.
    type: int
    required: true
  vfs:
    description: Settings of individual VFs, applied through the PF's network interface.
    type: list
    elements: dict
    default: []
    suboptions:
      index:
        description: The VF number, from 0 to O(num_vfs) - 1.
        type: int
        required: true
      mac:
        description: Its MAC address (unicast).
        type: str
      vlan:
        description: Its port VLAN, V(0) for none.
        type: int
      trust:
        description: Whether the VF is trusted (may change its MAC, enter promiscuous mode).
        type: bool
      spoofchk:
        description: Whether the PF drops frames from the VF with another source MAC.
        type: bool
  persistent:
    description:
      - Also write C(/etc/udev/rules.d/70-virtdev-sriov-DDDD_BB_SS_F.rules), which sets the count and runs
        the C(ip link set) commands whenever the PF's driver binds (at boot and after a driver reload).
        With O(num_vfs=0) the file is removed.
      - The VF settings in the rule name the PF's interface as it is now.
    type: bool
    default: false
  timeout:
    description: Seconds to wait for the VFs to appear after the count is written.
    type: float
    default: 10
  root:
    description:
      - Directory under which C(/sys), C(/proc) and C(/etc) are read and written (for images and tests).
      - C(ip) runs only when it is C(/); below another root the VF link settings are neither read nor
        applied, they are returned in RV(skipped_commands).
    type: path
    default: /
notes:
  - VFs given to guests are usually bound to vfio-pci with M(virtdev.libvirt.vfio_bind) afterwards, or used
    through C(<interface type='hostdev'>) with libvirt managing the binding.
seealso:
  - module: virtdev.libvirt.vfio_bind
  - module: virtdev.libvirt.host_devices_info
'''

EXAMPLES = r'''
- name: Eight VFs on the first port, the first two with fixed MACs and a VLAN, at every boot
  virtdev.libvirt.sriov_vfs:
    pf: ens2f0
    num_vfs: 8
    vfs:
      - {index: 0, mac: "52:54:00:00:10:00", vlan: 100, spoofchk: true}
      - {index: 1, mac: "52:54:00:00:10:01", vlan: 100, trust: true}
    persistent: true

- name: Disable SR-IOV on a PF
  virtdev.libvirt.sriov_vfs:
    pf: "0000:41:00.1"
    num_vfs: 0
    persistent: true
'''

RETURN = r'''
pf:
  description: The PF's PCI address.
  returned: success
  type: str
  sample: "0000:41:00.0"
interface:
  description: The PF's network interface, if it has one.
  returned: success
  type: str
  sample: ens2f0
before:
  description: C(num_vfs), C(total_vfs) and the VF addresses (C(vfs)) before.
  returned: success
  type: dict
  sample: {num_vfs: 4, total_vfs: 64, vfs: ["0000:41:02.0", "0000:41:02.1", "0000:41:02.2", "0000:41:02.3"]}
after:
  description: The same after, read back from sysfs (in check mode C(vfs) is not predicted and is omitted).
  returned: success
  type: dict
writes:
  description: sysfs writes made (or that would be made), in order, as C(path) and C(value).
  returned: success
  type: list
  elements: dict
  sample: [{path: /sys/bus/pci/devices/0000:41:00.0/sriov_numvfs, value: "0"},
           {path: /sys/bus/pci/devices/0000:41:00.0/sriov_numvfs, value: "8"}]
commands:
  description: C(ip) commands run (or that would run in check mode).
  returned: success
  type: list
  elements: list
  sample: [[ip, link, set, dev, ens2f0, vf, "0", mac, "52:54:00:00:10:00"]]
skipped_commands:
  description: With O(root) other than C(/), the C(ip) commands the VF settings need, not run.
  returned: success
  type: list
  elements: list
files:
  description: Files changed (or that would be), as paths below O(root).
  returned: success
  type: list
  elements: str
diff:
  description: Before and after text of the VF count, the VF settings and the rules file.
  returned: when diff mode is on and something changed
  type: list
  elements: dict
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import runner
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.operations.sriov_vfs import SriovVfs


def main():
    module = AnsibleModule(
        argument_spec=dict(
            pf=dict(type='str', required=True),
            num_vfs=dict(type='int', required=True),
            vfs=dict(type='list', elements='dict', default=[], options=dict(
                index=dict(type='int', required=True),
                mac=dict(type='str'),
                vlan=dict(type='int'),
                trust=dict(type='bool'),
                spoofchk=dict(type='bool'),
            )),
            persistent=dict(type='bool', default=False),
            timeout=dict(type='float', default=10.0),
            root=dict(type='path', default='/'),
            uri=dict(type='str'),
        ),
        supports_check_mode=True,
    )
    runner.run(module, SriovVfs)


if __name__ == '__main__':
    main()
