# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The host side: what the host has, whether a device may leave it, and how to prepare it.

Layers, each a module named for what it is about (lower layers never import higher ones):

- Data source (where the facts come from): ``source`` defines the seam, ``HostSource.read_host()`` ->
  ``model.Host``. ``sysfs_source.SysfsSource`` reads sysfs/procfs below a root (``below_root`` for
  read-only file access that never leaves the root, ``root`` for the path rules shared with writes).
  A second source -- libvirt's node-device API, for hosts reached through a remote URI -- produces the
  same ``model.Host`` from ``virNodeDevice`` XML (``nodedev_source`` reads it: the one node device XML reader); everything above the
  source works unchanged on either. What a source cannot see (a remote host's mounts and routes) it says
  in ``Host.problems``; see ``source`` for the contract.
- Device model: ``model`` (PCI functions, USB devices, mdev types and devices, IOMMU groups).
- Host-critical detection: ``critical`` (the controllers behind / and swap, the default-route NIC
  through bonds/bridges/VLANs/OVS, the host's keyboards and mice, the boot VGA, chipset functions).
- Who uses what: ``domain_usage`` (host devices in domain XML, per domain, live and persistent).
- Guards: ``guards`` -- ONE table, each guard a row with its effect on a verdict, its effect on an
  assignment, whether ``force`` overrides it, and its own check function. ``guards.assess_pci`` runs
  them; ``preflight.check_assignment`` adds the request-level guards for domain_devices.
- Output: ``facts`` (plain data for host_devices_info), ``report`` (Markdown, HTML, DOT).
- Preparation backends (``prepare``): vfio-pci binding, boot persistence, SR-IOV VF counts, mediated
  devices; each plans first and writes through ``prepare.sysfs_writer`` and ``_files``.
- ``runner``: the one plan -> check -> apply -> roll back -> read back -> result/diff flow of the
  host modules; ``operations``: one ``runner.Operation`` per module (vfio_bind, sriov_vfs, mdev), so a
  module is its argument spec, its documentation and ``runner.run(module, Operation)``.

docs/architecture.md ("Host side") draws the layers and follows one vfio_bind run through them.
"""
