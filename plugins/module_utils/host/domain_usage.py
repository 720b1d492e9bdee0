# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Which domains use which host devices, read from their XML.

Identity keys (``('pci', address)``, ``('usb', 'vendor:product')``, ``('usb-address', 'bus.device')``,
``('mdev', uuid)``) come from ``_ids.hostdev_keys``, the one reader of hostdev addresses, so a raw-XML
address is read exactly as libvirt reads it.
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids, _xml


def requests_of_element(element, where):
    """The ``check_assignment`` requests for the host devices a device element would take (none for other
    devices). Addresses are read as libvirt reads them; IdError (naming ``where``) when one cannot be."""
    keys = dict(_ids.hostdev_keys(element, where))
    if 'pci' in keys:
        kind = 'sriov_vf' if element.tag == 'interface' else 'pci'
        return [{'type': kind, 'address': keys['pci'], 'managed': element.get('managed', 'no') == 'yes',
                 'where': where}]
    if 'usb' in keys or 'usb-address' in keys:
        vendor, _sep, product = keys.get('usb', ':').partition(':')
        bus, _sep, device = keys.get('usb-address', '.').partition('.')
        return [{'type': 'usb', 'vendor': vendor or None, 'product': product or None,
                 'bus': int(bus) if bus else None, 'device': int(device) if device else None, 'where': where}]
    if 'mdev' in keys:
        return [{'type': 'mdev', 'uuid': keys['mdev'], 'where': where}]
    return []


def usage_from_domains(domains):
    """Map host-device identity keys to the domains that use them.

    ``domains``: iterable of dicts ``{'name': str, 'live_xml': str or None, 'config_xml': str or None}``
    (the live XML of a running domain, the inactive XML of a persistent one). Returns
    ``{key: [{'domain': name, 'live': bool, 'config': bool}, ...]}`` with keys from ``_ids.hostdev_keys``.
    """
    usage = {}
    for domain in domains:
        name = domain['name']
        seen = {}
        for flag in ('live', 'config'):
            text = domain.get(flag + '_xml')
            if not text:
                continue
            root = _xml.parse(text, 'the %s XML of domain %s' % (flag, name))
            for tag in ('hostdev', 'interface'):
                for index, element in enumerate(root.iterfind('devices/' + tag)):
                    where = 'the %s XML of domain %s: <%s> #%d' % (flag, name, tag, index + 1)
                    for key in _ids.hostdev_keys(element, where):
                        seen.setdefault(key, set()).add(flag)
        for key, flags in seen.items():
            usage.setdefault(key, []).append({'domain': name, 'live': 'live' in flags, 'config': 'config' in flags})
    return usage


def _use(use):
    """A use as a dict; a bare domain name counts as a use by a running domain (the strictest)."""
    if isinstance(use, str):
        return {'domain': use, 'live': True, 'config': True}
    return use


def used_by(usage, key, exclude=None):
    """The uses of ``key`` by domains other than ``exclude``."""
    return [_use(use) for use in usage.get(key, []) if _use(use)['domain'] != exclude]


def group_holders(host, number, usage=None):
    """Who holds IOMMU group ``number``: [{'domain', 'live'}] from domain usage of its members and the guests
    (or processes) holding ``/dev/vfio/N`` open."""
    holders = {}
    for member in host.groups.get(number, []):
        for use in used_by(usage or {}, ('pci', member)):
            entry = holders.setdefault(use['domain'], {'domain': use['domain'], 'live': False})
            entry['live'] = entry['live'] or bool(use['live'])
    for user in host.open_by(number):
        name = user.get('guest') or 'pid %d (%s)' % (user['pid'], user['comm'])
        holders.setdefault(name, {'domain': name, 'live': True})['live'] = True
    return [holders[name] for name in sorted(holders)]
