# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Names for PCI ids from the ``pci.ids`` database (pure, no libvirt, no Ansible).

The file is the one shipped by Debian's ``pci.ids``/``pciutils`` (``/usr/share/misc/pci.ids``) or by
``hwdata`` (``/usr/share/hwdata/pci.ids``). Its layout::

    8086  Intel Corporation                      vendor
    <TAB>1533  I210 Gigabit Network Connection     device
    <TAB><TAB>8086 0001  I210 Gigabit ...          subsystem (subvendor subdevice)
    C 02  Network controller                     class
    <TAB>00  Ethernet controller                   subclass
    <TAB><TAB>00  ...                                programming interface

Only the entries of the vendors and classes asked for are kept, so reading the 1.3 MB file costs a single
pass and little memory.
"""

from __future__ import annotations

import os

# looked up in this order under the root the module was given
PCI_IDS_PATHS = ('usr/share/misc/pci.ids', 'usr/share/hwdata/pci.ids', 'usr/share/pci.ids')


def find_pci_ids(root='/'):
    """The first pci.ids file under ``root``, or None."""
    for relative in PCI_IDS_PATHS:
        path = os.path.join(root, relative)
        if os.path.isfile(path):
            return path
    return None


def _hex(value):
    """'0x8086' / '8086' / 0x8086 -> '8086'; None when it is not a hex id."""
    if value is None:
        return None
    if isinstance(value, int):
        return '%04x' % value
    text = str(value).strip().lower()
    if text.startswith('0x'):
        text = text[2:]
    try:
        return '%04x' % int(text, 16)
    except ValueError:
        return None


class PciIds:
    """Names for vendors, devices, subsystems and classes.

    ``vendors`` maps '8086' to (name, {device: (name, {(subvendor, subdevice): name})}); ``classes``
    maps '02' to (name, {subclass: (name, {progif: name})}).
    """

    def __init__(self, vendors, classes, source=None):
        self.vendors = vendors
        self.classes = classes
        self.source = source

    @classmethod
    def parse(cls, lines, vendors=None, classes=None, source=None):
        """Parse pci.ids lines; keep only ``vendors`` / ``classes`` (sets of hex strings) when given."""
        want_vendors = None if vendors is None else {_hex(v) for v in vendors}
        want_classes = None if classes is None else {str(c).lower()[:2] for c in classes}
        found_vendors, found_classes = {}, {}
        section = None  # ('vendor', entry) or ('class', entry) for the entry being filled
        last_child = None
        for raw in lines:
            line = raw.rstrip('\n')
            if not line or line.startswith('#'):
                continue
            depth = len(line) - len(line.lstrip('\t'))
            text = line.strip()
            if depth == 0:
                last_child = None
                if text.startswith('C '):
                    code, _sep, name = text[2:].partition(' ')
                    code = code.lower()
                    if want_classes is None or code in want_classes:
                        section = ('class', found_classes.setdefault(code, [name.strip(), {}]))
                    else:
                        section = None
                    continue
                code, _sep, name = text.partition(' ')
                code = code.lower()
                if len(code) != 4 or (want_vendors is not None and code not in want_vendors):
                    section = None  # another vendor, or one of the trailing non-PCI lists
                    continue
                section = ('vendor', found_vendors.setdefault(code, [name.strip(), {}]))
            elif section is None:
                continue
            elif depth == 1:
                code, _sep, name = text.partition(' ')
                last_child = section[1][1].setdefault(code.lower(), [name.strip(), {}])
            elif depth == 2 and last_child is not None:
                if section[0] == 'vendor':
                    parts = text.split(None, 2)
                    if len(parts) == 3:
                        last_child[1][(parts[0].lower(), parts[1].lower())] = parts[2].strip()
                else:
                    code, _sep, name = text.partition(' ')
                    last_child[1][code.lower()] = name.strip()
        return cls(found_vendors, found_classes, source)

    @classmethod
    def load(cls, path, vendors=None, classes=None):
        """Read a pci.ids file; None when there is none or it cannot be read (names are optional)."""
        if not path:
            return None
        try:
            with open(path, encoding='utf-8', errors='replace') as handle:
                return cls.parse(handle, vendors=vendors, classes=classes, source=path)
        except OSError:
            return None

    def names(self, vendor, device=None, subsystem_vendor=None, subsystem_device=None):
        """(vendor name, device name, subsystem name); each None when unknown."""
        entry = self.vendors.get(_hex(vendor) or '')
        if entry is None:
            return None, None, None
        device_entry = entry[1].get(_hex(device) or '')
        if device_entry is None:
            return entry[0], None, None
        subsystem = device_entry[1].get((_hex(subsystem_vendor) or '', _hex(subsystem_device) or ''))
        return entry[0], device_entry[0], subsystem

    def class_name(self, class_code, prog_if=False):
        """The name of a class code such as '0x030000': the subclass name (as lspci shows it), the
        programming interface's name with ``prog_if``, the class name when the subclass is unknown."""
        text = str(class_code or '').lower()
        if text.startswith('0x'):
            text = text[2:]
        text = text.zfill(6)[-6:]
        entry = self.classes.get(text[0:2])
        if entry is None:
            return None
        sub = entry[1].get(text[2:4])
        if sub is None:
            return entry[0]
        return (sub[1].get(text[4:6]) if prog_if else None) or sub[0]
