# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The seam between where host facts come from and everything that judges them.

A data source turns one host into a ``model.Host``; guards, usage, facts, reports and the preflight only
ever see that model. Two sources:

- ``sysfs_source.SysfsSource(root)``: sysfs and procfs below a root (this machine, an image, a fixture
  tree). It sees everything, including what makes a device host-critical (mounts, routes, input devices)
  and which processes hold vfio groups open.
- ``nodedev_source.NodeDeviceSource(connection)`` (for ``qemu+ssh://`` and other remote URIs, where the
  host's sysfs is not readable): it builds the same model from ``virConnectListAllDevices`` and each
  device's XML, and names the guards it cannot answer (``nodedev_source.NOT_CHECKED``).

The contract a source keeps (``model.Host`` documents each field):

- ``pci``: every PCI function by canonical address (``_ids.pci_text``) with ids (``0x``-prefixed lower
  case hex, as sysfs writes them), class code, driver, IOMMU group, SR-IOV links, mdev types;
  ``groups``: IOMMU group number -> sorted member addresses (empty when the IOMMU is off);
- ``usb`` by kernel name, ``mdevs`` by UUID, ``iommu`` (the dict ``facts`` reports), ``cmdline``;
- ``critical`` / ``mounted`` / ``inputs`` / ``critical_usb`` / ``group_users``: what the source can tell.
  A source that cannot see a fact leaves it empty AND says so in ``problems`` (for example "the host's
  mounts are not visible through libvirt: the controllers behind / are not known and not protected"),
  so a guard that has nothing to go on is never mistaken for a guard that passed.
- never raises on odd input: what is not as the kernel (or libvirt) would write it goes to ``problems``.
"""

from __future__ import annotations

import os

from urllib.parse import urlsplit


class HostSource(object):
    """A place host facts are read from. ``name`` says which in messages; ``read_host()`` returns a
    ``model.Host`` filled as the module docstring describes."""

    name = 'host source'

    def read_host(self):
        raise NotImplementedError('%s does not read hosts' % type(self).__name__)


def uri_host(uri):
    """The host name a libvirt URI names (None for this machine: qemu:///system, qemu+unix://, qemu:///embed)."""
    return urlsplit(uri).hostname


def reads_node_devices(root, uri):
    """Whether the host must be read from libvirt's node devices (``nodedev_source``) rather than sysfs: the
    real root and a URI that names a host, even this one (qemu+ssh://127.0.0.1/...: what the far end of a
    transport sees is not assumed to be this machine). A fixture or image root is read as given."""
    return os.path.realpath(root) == '/' and uri_host(uri) is not None


def sysfs_is_libvirt_host(root, uri):
    """Whether sysfs read below ``root`` is the host libvirt at ``uri`` runs on: the real root and a URI
    without a host name. Otherwise (a fixture or image root, a remote URI) what one says about a device
    cannot be compared with what the other says."""
    return os.path.realpath(root) == '/' and uri_host(uri) is None
