# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Base of a domain (pure): the skeleton of a new definition, its summary, and free PCIe root ports.

The domain-level settings themselves (memory, CPU, firmware, features, ...) are the table in
``_domain_settings``.
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils import _domain_settings, _xml

DEFAULT_MEMORY_MIB = 1024
DEFAULT_VCPUS = 1


def machine_aliases(capabilities_xml):
    """{alias: canonical} from host capabilities, e.g. {'q35': 'pc-q35-7.2', 'pc': 'pc-i440fx-7.2'}."""
    aliases = {}
    caps = _xml.parse(capabilities_xml, 'capabilities XML')
    for machine in caps.iter('machine'):
        canonical = machine.get('canonical')
        if canonical and machine.text:
            aliases[machine.text.strip()] = canonical
    return aliases


def settings_of(domain_xml):
    """The domain's summary (the module's ``domain`` return value), read through the settings table."""
    domain = _xml.parse(domain_xml, 'domain XML')
    settings = _domain_settings.read(domain)
    os_type = domain.find('os/type')
    return {
        'name': domain.findtext('name'),
        'uuid': domain.findtext('uuid'),
        'type': domain.get('type'),
        'memory_mib': settings.get('memory'),
        'vcpus': settings.get('vcpus'),
        'machine': settings.get('machine'),
        'arch': os_type.get('arch') if os_type is not None else None,
        'firmware': settings.get('firmware') or 'bios',
    }


def new_definition(params):
    """XML for a new domain from the module's parameters (libvirt adds its default devices)."""
    domain = _xml.new_element('domain', {'type': params['type']})
    _xml.child(domain, 'name', create=True).text = params['name']
    if params.get('uuid'):
        _xml.child(domain, 'uuid', create=True).text = params['uuid']
    memory = _xml.child(domain, 'memory', create=True)
    memory.set('unit', 'MiB')
    memory.text = str(params.get('memory') or DEFAULT_MEMORY_MIB)
    _xml.child(domain, 'vcpu', create=True).text = str(params.get('vcpus') or DEFAULT_VCPUS)
    os_el = _xml.child(domain, 'os', create=True)
    if params.get('firmware') == 'efi':
        os_el.set('firmware', 'efi')
    os_type = _xml.child(os_el, 'type', create=True)
    os_type.set('arch', params.get('arch') or 'x86_64')
    if params.get('machine'):
        os_type.set('machine', params['machine'])
    os_type.text = 'hvm'
    features = _xml.child(domain, 'features', create=True)
    _xml.child(features, 'acpi', create=True)
    _xml.child(features, 'apic', create=True)
    _xml.child(domain, 'devices', create=True)
    return _xml.to_string(domain)


def free_root_ports(domain_xml):
    """How many pcie-root-port controllers have nothing plugged in (a q35 guest hot-plugs PCIe devices
    only into empty ports; libvirt fills the ports it is given with the guest's own devices first)."""
    domain = _xml.parse(domain_xml, 'domain XML')
    ports = {int(el.get('index')) for el in domain.iterfind('devices/controller')
             if el.get('type') == 'pci' and el.get('model') == 'pcie-root-port' and el.get('index') is not None}
    used = set()
    for address in domain.iterfind('devices/*/address'):
        if address.get('type') == 'pci' and address.get('bus') is not None:
            used.add(int(address.get('bus'), 0))
    return len(ports - used)


def with_root_ports(domain_xml, count):
    """The definition with ``count`` more (unaddressed) pcie-root-port controllers; libvirt numbers them."""
    domain = _xml.parse(domain_xml, 'domain XML')
    devices = _xml.child(domain, 'devices', create=True)
    for _port in range(count):
        devices.append(_xml.new_element('controller', {'type': 'pci', 'model': 'pcie-root-port'}))
    return _xml.to_string(domain)


def has_balloon(xml):
    """Whether a domain XML has a memory balloon device (libvirt adds a virtio one unless model='none')."""
    return any(balloon.get('model') != 'none' for balloon in _xml.parse(xml).iterfind('devices/memballoon'))
