# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""libvirt networks that guests' NICs are provisioned from: the pure part of virtdev.libvirt.network.

One row per forward kind (libvirt's network XML format, https://libvirt.org/formatnetwork.html):

* ``hostdev`` -- a pool of SR-IOV VFs of one PF (``<forward mode='hostdev' managed='yes'><pf dev=.../>``);
  each guest NIC of the network gets a whole VF by PCI passthrough, optionally tagged with a VLAN.
* ``passthrough`` -- macvtap passthrough: each guest NIC takes one host interface (or a VF of ``pf``).
* ``bridge`` -- guests plug into an existing host bridge (``<forward mode='bridge'/><bridge name=.../>``).

Settings are plain dictionaries; ``settings_of`` reads them from network XML, ``render`` writes a new
definition and ``apply`` changes only the managed parts of an existing one (its UUID, MAC, port groups and
everything else stay).
"""

from __future__ import annotations

import re
from collections import namedtuple

from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml

# allowed: the options that kind takes; required: all of them must be given; one_of: at least one of them.
ForwardKind = namedtuple('ForwardKind', 'mode managed allowed required one_of')

FORWARD_KINDS = {
    'hostdev': ForwardKind(mode='hostdev', managed=True, allowed=('pf', 'vlan'), required=('pf',), one_of=()),
    'passthrough': ForwardKind(mode='passthrough', managed=False, allowed=('pf', 'interfaces'), required=(),
                               one_of=('pf', 'interfaces')),
    'bridge': ForwardKind(mode='bridge', managed=False, allowed=('bridge',), required=('bridge',), one_of=()),
}
OPTIONS = ('pf', 'interfaces', 'bridge', 'vlan')
# Linux interface names: 1-15 bytes, no '/', no whitespace, not '.' or '..' (the kernel's dev_valid_name).
IFNAME_RE = re.compile(r'^(?!\.{1,2}$)[^/\s:]{1,15}$')
VLAN_MAX = 4095


class NetworkSpecError(ValueError):
    """Bad input: the message names the option and the value."""


def _check_ifname(option, value):
    if not isinstance(value, str) or not IFNAME_RE.match(value):
        raise NetworkSpecError('%s: %r is not a Linux interface name (1-15 characters, no "/", ":" or spaces)'
                               % (option, value))


def desired(params):
    """The settings a module's parameters ask for; raise NetworkSpecError for bad input."""
    forward = params.get('forward')
    if forward not in FORWARD_KINDS:
        raise NetworkSpecError('forward: %r is not one of %s' % (forward, ', '.join(sorted(FORWARD_KINDS))))
    kind = FORWARD_KINDS[forward]
    given = [option for option in OPTIONS if params.get(option) not in (None, [])]
    for option in given:
        if option not in kind.allowed:
            raise NetworkSpecError('%s: not used by forward=%s (it takes %s)'
                                   % (option, forward, ', '.join(kind.allowed)))
    for option in kind.required:
        if option not in given:
            raise NetworkSpecError('%s: required for forward=%s' % (option, forward))
    if kind.one_of and not any(option in given for option in kind.one_of):
        raise NetworkSpecError('forward=%s needs one of %s' % (forward, ', '.join(kind.one_of)))
    for option in ('pf', 'bridge'):
        if params.get(option) is not None:
            _check_ifname(option, params[option])
    interfaces = list(params.get('interfaces') or [])
    for index, name in enumerate(interfaces):
        _check_ifname('interfaces[%d]' % index, name)
    vlan = params.get('vlan')
    if vlan is not None and not 0 <= vlan <= VLAN_MAX:
        raise NetworkSpecError('vlan: %r is out of range (0..%d)' % (vlan, VLAN_MAX))
    return {'forward': forward, 'pf': params.get('pf'), 'interfaces': interfaces,
            'bridge': params.get('bridge'), 'vlan': vlan}


def settings_of(xml_text):
    """The managed settings of a network definition, in the module's option format.

    A forward mode outside the table (nat, route, open, none) is reported as it is, so a change to one of
    ours shows in the diff.
    """
    root = _xml.parse(xml_text, 'network XML')
    forward = root.find('forward')
    mode = 'isolated' if forward is None else forward.get('mode', 'nat')
    pf = forward.find('pf') if forward is not None else None
    bridge = root.find('bridge')
    tag = root.find('vlan/tag')
    return {
        'forward': mode,
        'pf': pf.get('dev') if pf is not None else None,
        'interfaces': [node.get('dev') for node in forward.findall('interface')] if forward is not None else [],
        'bridge': bridge.get('name') if bridge is not None and mode == 'bridge' else None,
        'vlan': int(tag.get('id')) if tag is not None and tag.get('id', '').isdigit() else None,
    }


def differences(current, wanted):
    """{setting: (current, wanted)} for every managed setting that differs."""
    return {key: (current.get(key), value) for key, value in wanted.items() if current.get(key) != value}


def _forward_element(wanted):
    kind = FORWARD_KINDS[wanted['forward']]
    forward = _xml.new_element('forward', {'mode': kind.mode})
    if kind.managed:
        forward.set('managed', 'yes')  # libvirt binds each VF to vfio-pci when a guest takes it
    if wanted['pf']:
        forward.append(_xml.new_element('pf', {'dev': wanted['pf']}))
    for name in wanted['interfaces']:
        forward.append(_xml.new_element('interface', {'dev': name}))
    return forward


def render(name, wanted, uuid=None):
    """A new network definition with the wanted settings."""
    root = _xml.new_element('network')
    _xml.child(root, 'name', create=True).text = name
    if uuid:
        _xml.child(root, 'uuid', create=True).text = uuid
    return apply(_xml.to_string(root, pretty=False), wanted)


def apply(xml_text, wanted):
    """The definition ``xml_text`` with the managed parts set to ``wanted``; everything else kept.

    When the forward kind changes, the parts that belonged to the old kind (addresses, NAT ranges, DHCP)
    would not fit the new one, so only name, UUID and description are carried over.
    """
    root = _xml.parse(xml_text, 'network XML')
    if settings_of(xml_text)['forward'] != wanted['forward']:
        for node in list(root):
            if node.tag not in ('name', 'uuid', 'title', 'description', 'metadata'):
                root.remove(node)
    for tag in ('forward', 'vlan'):
        for node in root.findall(tag):
            root.remove(node)
    root.append(_forward_element(wanted))
    if wanted['bridge']:
        _xml.child(root, 'bridge', create=True).set('name', wanted['bridge'])
    if wanted['vlan'] is not None:
        _xml.child(root, 'vlan/tag', create=True).set('id', str(wanted['vlan']))
    return _xml.to_string(root)
