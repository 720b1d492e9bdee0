# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The floor: the least a plain libvirt-python script must do to converge the same manifest.

Per guest: look the domain up, read its inactive XML, add each declared device that is missing, replace
one whose declared attributes differ (keeping libvirt's <address>), and define the new XML only when
something changed. It knows the five element types of the workload and nothing else: no option
validation, no read-back, no results. ``--check`` reads and compares but never defines.

    python floor.py URI DECLARED.json [--check]

DECLARED.json is {guest: [device XML, ...]}. Prints {"changed": [...guests], "calls": {...}} as JSON.
"""

from __future__ import annotations

import json
import sys
import threading

import libvirt
from lxml import etree

PARSER = etree.XMLParser(remove_blank_text=True)


def _identity(element):
    tag = element.tag
    if tag == 'interface':
        return (tag, element.find('mac').get('address'))
    if tag == 'disk':
        return (tag, element.find('target').get('dev'))
    if tag == 'rng':
        return (tag, element.get('model'), element.find('backend').get('model'))
    if tag == 'watchdog':
        return (tag, element.get('model'))
    if tag == 'hostdev':
        address = element.find('source/address')
        return (tag,) + tuple(int(address.get(k), 16) for k in ('domain', 'bus', 'slot', 'function'))
    return None


def _covers(existing, declared):
    """Every attribute, text and child of ``declared`` is present in ``existing``."""
    for name, value in declared.attrib.items():
        if existing.get(name) != value:
            return False
    if (declared.text or '').strip() != (existing.text or '').strip() and (declared.text or '').strip():
        return False
    for child in declared:
        if not any(_covers(mine, child) for mine in existing.iterfind(child.tag)):
            return False
    return True


def converge(conn, guest, wanted, check, calls):
    calls['lookup'] += 1
    dom = conn.lookupByName(guest)
    calls['xml'] += 1
    root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE), PARSER)
    devices = root.find('devices')
    present = {}
    for element in devices:
        key = _identity(element) if element.tag in ('interface', 'disk', 'rng', 'watchdog', 'hostdev') else None
        if key is not None:
            present.setdefault(key, element)
    changed = False
    for text in wanted:
        declared = etree.fromstring(text, PARSER)
        existing = present.get(_identity(declared))
        if existing is None:
            devices.append(declared)
            changed = True
        elif not _covers(existing, declared):
            address = existing.find('address')
            if address is not None:
                declared.append(address)
            devices.replace(existing, declared)
            changed = True
    if changed and not check:
        calls['define'] += 1
        conn.defineXML(etree.tostring(root, encoding='unicode'))
    return changed


def start_event_loop():
    """The embedded driver needs an event loop in this process (a libvirtd connection does not mind)."""
    def run():
        while True:
            libvirt.virEventRunDefaultImpl()

    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=run, daemon=True).start()


def main(argv):
    uri, path = argv[0], argv[1]
    check = '--check' in argv[2:]
    with open(path, encoding='utf-8') as handle:
        declared = json.load(handle)
    start_event_loop()
    conn = libvirt.open(uri)
    calls = {'lookup': 0, 'xml': 0, 'define': 0}
    changed = [guest for guest, wanted in declared.items() if converge(conn, guest, wanted, check, calls)]
    json.dump({'changed': changed, 'calls': calls}, sys.stdout)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
