# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Base settings of a domain (pure): build a new definition, or update the few settings we own.

Only memory and vCPUs are changed on an existing domain; machine type and firmware decide the guest's
hardware layout, so a different value is refused rather than silently moving devices around.
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml

DEFAULT_MEMORY_MIB = 1024
DEFAULT_VCPUS = 1


class DomainSpecError(ValueError):
    pass


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
    """The settings this module manages, read from a definition."""
    domain = _xml.parse(domain_xml, 'domain XML')
    memory = domain.find('memory')
    kib = int(memory.text) * _unit_kib(memory.get('unit', 'KiB')) if memory is not None else None
    vcpu = domain.find('vcpu')
    os_type = domain.find('os/type')
    os_el = domain.find('os')
    firmware = 'efi' if os_el is not None and (os_el.get('firmware') == 'efi' or os_el.find('loader') is not None
                                               and 'OVMF' in (os_el.find('loader').text or '').upper()) else 'bios'
    return {
        'name': domain.findtext('name'),
        'uuid': domain.findtext('uuid'),
        'type': domain.get('type'),
        'memory_mib': kib // 1024 if kib is not None else None,
        'vcpus': int(vcpu.text) if vcpu is not None and vcpu.text else None,
        'machine': os_type.get('machine') if os_type is not None else None,
        'arch': os_type.get('arch') if os_type is not None else None,
        'firmware': firmware,
    }


def _unit_kib(unit):
    factors = {'b': 1 / 1024, 'bytes': 1 / 1024, 'kb': 1000 / 1024, 'k': 1, 'kib': 1, 'mb': 1000 ** 2 / 1024,
               'm': 1024, 'mib': 1024, 'gb': 1000 ** 3 / 1024, 'g': 1024 ** 2, 'gib': 1024 ** 2}
    return factors.get(unit.lower(), 1)


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


def differences(current, params, aliases):
    """{setting: (current, wanted)} for settings the user asked for that differ. Raises on immutable ones."""
    changes = {}
    if params.get('memory') is not None and current['memory_mib'] != params['memory']:
        changes['memory'] = (current['memory_mib'], params['memory'])
    if params.get('vcpus') is not None and current['vcpus'] != params['vcpus']:
        changes['vcpus'] = (current['vcpus'], params['vcpus'])
    machine = params.get('machine')
    if machine and current['machine'] not in (machine, aliases.get(machine)):
        raise DomainSpecError('machine: %r differs from the existing domain\'s %r; the machine type decides the '
                              'guest\'s hardware layout and is not changed in place' % (machine, current['machine']))
    firmware = params.get('firmware')
    if firmware and firmware != current['firmware']:
        raise DomainSpecError('firmware: %r differs from the existing domain\'s %r and is not changed in place'
                              % (firmware, current['firmware']))
    if params.get('uuid') and current['uuid'] and params['uuid'].lower() != current['uuid'].lower():
        raise DomainSpecError('uuid: %r differs from the existing domain\'s %r' % (params['uuid'], current['uuid']))
    return changes


def apply_changes(domain_xml, changes):
    """The definition with the changed settings written in, everything else untouched."""
    domain = _xml.parse(domain_xml, 'domain XML')
    if 'memory' in changes:
        kib = str(changes['memory'][1] * 1024)
        for tag in ('memory', 'currentMemory'):
            node = _xml.child(domain, tag, create=(tag == 'memory'))
            if node is not None:
                node.set('unit', 'KiB')
                node.text = kib
    if 'vcpus' in changes:
        vcpu = _xml.child(domain, 'vcpu', create=True)
        vcpu.text = str(changes['vcpus'][1])
        vcpu.attrib.pop('current', None)
    return _xml.to_string(domain)
