# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Domain-level settings (everything outside ``<devices>``): one table, one row per setting (pure).

A row is a field of the device side's field system (``_device_fields``) rooted at ``<domain>``,
plus what the domain needs to know about it: its group (for the docs), whether a running guest
takes a change live (and through which libvirt call), and whether it exists only at creation.
Groups of related settings (``features``, ``cpu``, ``clock``, ...) are ``Section`` fields whose
sub-fields are themselves fields, so one set of operations (normalize, read, write, clear) serves a
flag three levels down as well as the memory size.

Everything is merged: an omitted option leaves the guest's value alone, and a write touches only the
field's own attribute or element, so metadata, namespaces (``qemu:commandline``) and features no
option describes are kept. Combinations that cannot work are refused by ``RULES`` before anything is
written, each naming the options.
"""

from __future__ import annotations

import copy
import os
import re

from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import (
    KIB_PER, Field, Flag, Integer, OnOff, SpecError, Text, YesNo,
)

CPUSET_PATTERN = r'^\^?[0-9]+(-[0-9]+)?(,\^?[0-9]+(-[0-9]+)?)*$'
CPUSET_HINT = 'a CPU list such as 0-3,6 or ^2'
LIFECYCLE_ACTIONS = ('destroy', 'restart', 'preserve', 'rename-restart', 'coredump-destroy', 'coredump-restart')


# --- field types the domain needs beyond the device side's ----------------------------------------

class Present(Flag):
    """An empty element that means "on" (``<acpi/>``); reads None when absent so gathered stays short."""

    def read(self, element):
        return True if _xml.child(element, self.path) is not None else None


class IntText(Text):
    """An integer in an element's text (``<vcpu>4</vcpu>``, ``<iothreads>2</iothreads>``)."""

    value_type = 'int'

    def __init__(self, option, path, minimum=None, maximum=None, **kwargs):
        super().__init__(option, path, **kwargs)
        self.range = Integer(option, path, None, minimum=minimum, maximum=maximum)

    def normalize(self, value, where):
        return self.range.normalize(value, where) if value is not None else self.default

    def read(self, element):
        text = super().read(element)
        try:
            return int(text) if text is not None else None
        except ValueError:
            return text


class Mebibytes(Field):
    """A size in MiB kept as ``<tag unit='KiB'>N</tag>`` (libvirt's own form), or an attribute with a unit."""

    value_type = 'int'

    def __init__(self, option, path, attr=None, unit_attr='unit', minimum=1, maximum=16 * 1024 * 1024, **kwargs):
        super().__init__(option, path, attr, **kwargs)
        self.unit_attr = unit_attr
        self.range = Integer(option, path, None, minimum=minimum, maximum=maximum)

    def normalize(self, value, where):
        return self.range.normalize(value, where) if value is not None else self.default

    def read(self, element):
        node = _xml.child(element, self.path)
        raw = None if node is None else (node.get(self.attr) if self.attr else (node.text or '').strip())
        if not raw:
            return None
        try:
            kib = int(raw) * KIB_PER.get(node.get(self.unit_attr, 'KiB').lower(), 1)
        except ValueError:
            return raw
        return int(kib // 1024) if kib % 1024 == 0 else kib / 1024

    def write(self, element, value):
        node = _xml.child(element, self.path, create=True)
        node.set(self.unit_attr, 'KiB')
        if self.attr:
            node.set(self.attr, str(value * 1024))
        else:
            node.text = str(value * 1024)

    def clear(self, element):
        node = _xml.child(element, self.path)
        if node is not None:
            node.getparent().remove(node)


class CurrentVcpus(Integer):
    """``<vcpu current='2'>4</vcpu>``; libvirt leaves ``current`` out when all vCPUs are online."""

    def __init__(self, option, **kwargs):
        super().__init__(option, 'vcpu', 'current', **kwargs)

    def read(self, element):
        value = super().read(element)
        if value is None:
            return IntText(self.option, 'vcpu').read(element)
        return value


class PageSize(Integer):
    """Huge page size in KiB on ``<page size= unit='KiB'/>``."""

    def write(self, element, value):
        node = _xml.child(element, self.path, create=True)
        node.set(self.attr, str(value))
        node.set('unit', 'KiB')

    def read(self, element):
        node = _xml.child(element, self.path)
        if node is None or node.get(self.attr) is None:
            return None
        try:
            return int(int(node.get(self.attr)) * KIB_PER.get(node.get('unit', 'KiB').lower(), 1))
        except ValueError:
            return node.get(self.attr)


class StateValue(Field):
    """A Hyper-V value with its switch: ``vendor_id: KVMKVMKVM`` -> ``<vendor_id state='on' value='KVMKVMKVM'/>``."""

    def __init__(self, option, path, max_length=None, **kwargs):
        super().__init__(option, path, 'value', **kwargs)
        self.max_length = max_length

    def normalize(self, value, where):
        value = super().normalize(value, where)
        if value is not None and (not value or (self.max_length and len(value) > self.max_length)):
            raise SpecError(where, '%r must be 1 to %d characters (it is %d)' % (value, self.max_length, len(value)))
        return value

    def read(self, element):
        node = _xml.child(element, self.path)
        if node is None or node.get('state') != 'on':
            return None
        return node.get('value')

    def write(self, element, value):
        node = _xml.child(element, self.path, create=True)
        node.set('state', 'on')
        node.set('value', value)

    def clear(self, element):
        Flag.clear(self, element)


class BootOrder(Field):
    """``order: [cdrom, hd]`` -> ``<os><boot dev='cdrom'/><boot dev='hd'/>`` (replaces the whole list)."""

    value_type = 'list'
    DEVICES = ('hd', 'cdrom', 'network', 'fd')

    def __init__(self, option, **kwargs):
        super().__init__(option, '', None, **kwargs)

    def normalize(self, value, where):
        if value is None:
            return self.default
        if not isinstance(value, list):
            raise SpecError(where, '%r must be a list of: %s ([] for per-device boot order)'
                            % (value, ', '.join(self.DEVICES)))
        for device in value:
            if device not in self.DEVICES:
                raise SpecError(where, '%r is not one of: %s' % (device, ', '.join(self.DEVICES)))
        if len(set(value)) != len(value):
            raise SpecError(where, '%r names a device more than once' % (value,))
        return list(value)

    def read(self, element):
        order = [node.get('dev') for node in element.iterchildren('boot')]
        return order or None

    def write(self, element, value):
        old = list(element.iterchildren('boot'))
        position = element.index(old[0]) if old else len(element)
        for node in old:
            element.remove(node)
        for offset, device in enumerate(value):
            element.insert(position + offset, _xml.new_element('boot', {'dev': device}))

    def clear(self, element):
        for node in list(element.iterchildren('boot')):
            element.remove(node)


class Section(Field):
    """A group of fields under one element; its value is a dict of those fields' options (merged)."""

    value_type = 'dict'

    def __init__(self, option, path, fields, **kwargs):
        super().__init__(option, path, None, **kwargs)
        self.fields = {field.option: field for field in fields}

    def normalize(self, value, where):
        if value is None:
            return self.default
        if not isinstance(value, dict):
            raise SpecError(where, '%r must be a dictionary with: %s' % (value, ', '.join(self.fields)))
        unknown = sorted(key for key, val in value.items() if key not in self.fields and val is not None)
        if unknown:
            raise SpecError(where, 'unknown option(s) %s (allowed: %s)' % (', '.join(unknown), ', '.join(self.fields)))
        result = {}
        for option, field in self.fields.items():
            normalized = field.normalize(value.get(option), '%s.%s' % (where, option))
            if normalized is not None:
                result[option] = normalized
        return result

    def read(self, element):
        node = _xml.child(element, self.path)
        if node is None:
            return None
        result = {}
        for option, field in self.fields.items():
            value = field.read(node)
            if value is not None:
                result[option] = value
        return result or None

    def write(self, element, value):
        node = _xml.child(element, self.path, create=True)
        for option, field in self.fields.items():
            if option in value:
                write_field(field, node, value[option])
        if self.path and not len(node) and not node.attrib and not (node.text or '').strip():
            _xml.prune_empty(element, self.path)

    def clear(self, element):
        node = _xml.child(element, self.path)
        if node is not None:
            node.getparent().remove(node)


class KeyedList(Field):
    """Repeated elements told apart by one attribute: ``[{name: rtc, tickpolicy: catchup}]`` ->
    ``<timer name='rtc' tickpolicy='catchup'/>``. Listed entries are merged into the entry with the
    same key (created when missing); unlisted entries are kept."""

    value_type = 'list'

    def __init__(self, option, path, tag, key_field, fields, **kwargs):
        super().__init__(option, path, None, **kwargs)
        self.tag = tag
        self.key_field = key_field    # the entry's identity: a field on the entry element itself ('' path)
        self.key = (key_field.option, key_field.attr)
        self.fields = {field.option: field for field in fields}

    def normalize(self, value, where):
        if value is None:
            return self.default
        if not isinstance(value, list):
            raise SpecError(where, '%r must be a list of dictionaries' % (value,))
        result, seen = [], set()
        for index, item in enumerate(value):
            here = '%s[%d]' % (where, index)
            if not isinstance(item, dict) or item.get(self.key[0]) is None:
                raise SpecError(here, '%r must be a dictionary with %s' % (item, self.key[0]))
            key = self.key_field.normalize(item[self.key[0]], '%s.%s' % (here, self.key[0]))
            if key in seen:
                raise SpecError(here, '%s %r is listed twice' % (self.key[0], key))
            seen.add(key)
            rest = {k: v for k, v in item.items() if k != self.key[0]}
            entry = Section(self.option, '', self.fields.values()).normalize(rest, here)
            result.append(dict({self.key[0]: key}, **entry))
        return result

    def _entries(self, element):
        node = _xml.child(element, self.path)
        return [] if node is None else list(node.iterchildren(self.tag))

    def read(self, element):
        result = []
        for entry in self._entries(element):
            item = {self.key[0]: self.key_field.read(entry)}
            for option, field in self.fields.items():
                value = field.read(entry)
                if value is not None:
                    item[option] = value
            result.append(item)
        return result or None

    def write(self, element, value):
        node = _xml.child(element, self.path, create=True)
        for item in value:
            key = self.key_field.to_text(item[self.key[0]])
            entry = next((el for el in node.iterchildren(self.tag) if el.get(self.key[1]) == key), None)
            if entry is None:
                entry = _xml.new_element(self.tag, {self.key[1]: key})
                node.append(entry)
            for option, field in self.fields.items():
                if option in item:
                    write_field(field, entry, item[option])

    def clear(self, element):
        for entry in self._entries(element):
            entry.getparent().remove(entry)


def write_field(field, element, value):
    """Write only what differs, so an unchanged value never rewrites the XML it came from."""
    if field.read(element) == value and not isinstance(field, (Section, KeyedList)):
        return
    field.write(element, value)


# --- the table ----------------------------------------------------------------------------------

class Row:
    """One top-level option: its field, the docs group, and how a running guest takes a change.

    ``live`` names the libvirt call that applies a change to a running guest (see ``LIVE_CALLS`` in
    the module); a row without it waits for the next boot. ``create_only`` settings are read and
    shown, but decide the guest's hardware and are not changed in place.
    """

    def __init__(self, field, group, live=None, create_only=False, example=None):
        self.field = field
        self.group = group
        self.live = live
        self.create_only = create_only
        self.example = example

    @property
    def option(self):
        return self.field.option


def _hyperv_switch(option, tag, description):
    return OnOff(option, tag, 'state', description=description)


HYPERV = Section('hyperv', 'hyperv', [
    Field('mode', '', 'mode', choices=('custom', 'passthrough'),
          description='V(passthrough) gives every enlightenment the host offers; V(custom) (default) only the listed ones.'),
    _hyperv_switch('relaxed', 'relaxed', 'Relaxed timing (no watchdog BSOD on a busy host).'),
    _hyperv_switch('vapic', 'vapic', 'Virtual APIC assist.'),
    _hyperv_switch('spinlocks', 'spinlocks', 'Spinlock notifications (with O(features.hyperv.spinlocks_retries)).'),
    Integer('spinlocks_retries', 'spinlocks', 'retries', minimum=4095, maximum=2 ** 32 - 1,
            description='Retries before a spinlock notification (at least 4095; Windows guests commonly 8191).'),
    _hyperv_switch('vpindex', 'vpindex', 'Virtual processor index (needed by synic, stimer, tlbflush, ipi).'),
    _hyperv_switch('runtime', 'runtime', 'Processor time accounting.'),
    _hyperv_switch('synic', 'synic', 'Synthetic interrupt controller (needs vpindex).'),
    _hyperv_switch('stimer', 'stimer', 'Synthetic timers (need synic and the hypervclock timer).'),
    OnOff('stimer_direct', 'stimer/direct', 'state', description='Direct-mode synthetic timers.'),
    _hyperv_switch('reset', 'reset', 'Hyper-V reset.'),
    StateValue('vendor_id', 'vendor_id', max_length=12,
               description='Hyper-V vendor id the guest sees (1 to 12 characters); NVIDIA drivers in older '
                           'releases refuse a GPU when it reveals a hypervisor.'),
    _hyperv_switch('frequencies', 'frequencies', 'TSC and APIC frequency MSRs.'),
    _hyperv_switch('reenlightenment', 'reenlightenment', 'Re-enlightenment on migration.'),
    _hyperv_switch('tlbflush', 'tlbflush', 'Paravirtualized TLB flush.'),
    _hyperv_switch('ipi', 'ipi', 'Paravirtualized IPIs.'),
    _hyperv_switch('evmcs', 'evmcs', 'Enlightened VMCS (nested virtualization).'),
], description='Hyper-V enlightenments (C(<features><hyperv>)).')

KVM = Section('kvm', 'kvm', [
    OnOff('hidden', 'hidden', 'state', description='Hide the KVM signature from the guest (GPU drivers that refuse VMs).'),
    OnOff('hint_dedicated', 'hint-dedicated', 'state', description='Tell the guest its vCPUs are pinned to dedicated host CPUs.'),
    OnOff('poll_control', 'poll-control', 'state', description='Guest halt-polling control.'),
], description='KVM features (C(<features><kvm>)).')

FEATURES = Section('features', 'features', [
    Present('acpi', 'acpi', description='ACPI (needed for graceful shutdown).'),
    Present('apic', 'apic', description='APIC.'),
    Present('pae', 'pae', description='Physical address extension.'),
    OnOff('vmport', 'vmport', 'state', description='VMware I/O port emulation.'),
    OnOff('pmu', 'pmu', 'state', description='Performance monitoring unit.'),
    OnOff('smm', 'smm', 'state', description='System management mode (secure boot firmware on q35 needs it).'),
    Field('ioapic', 'ioapic', 'driver', choices=('kvm', 'qemu'), description='I/O APIC driver.'),
    KVM,
    HYPERV,
], description='Hypervisor features.')

TOPOLOGY = Section('topology', 'topology', [
    Integer(name, '', name, minimum=1, maximum=4096, description='%s of the guest CPU topology.' % name.capitalize())
    for name in ('sockets', 'dies', 'cores', 'threads')
], description='CPU topology; sockets x dies x cores x threads must equal O(vcpus).')

NUMA_CELLS = KeyedList('numa', 'numa', 'cell', Integer('id', '', 'id', minimum=0, maximum=1023), [
    Field('cpus', '', 'cpus', pattern=CPUSET_PATTERN, pattern_hint=CPUSET_HINT, description='vCPUs of the cell.'),
    Mebibytes('memory', '', 'memory', description='Memory of the cell in MiB.'),
    Field('memory_access', '', 'memAccess', choices=('shared', 'private'), description='Memory access mode of the cell.'),
], description='Guest NUMA cells, each C({id, cpus, memory}) (memory in MiB).')

CPU = Section('cpu', 'cpu', [
    Field('mode', '', 'mode', choices=('host-passthrough', 'host-model', 'custom', 'maximum'),
          description='V(host-passthrough) (the host CPU as is; needs KVM), V(host-model), V(custom) with '
                      'O(cpu.model), or V(maximum) (everything the hypervisor can do; what QEMU under TCG offers).'),
    Text('model', 'model', description='CPU model for V(custom), for example V(Skylake-Client-IBRS).'),
    Field('fallback', 'model', 'fallback', choices=('allow', 'forbid'), description='Whether libvirt may pick a close model.'),
    Field('match', '', 'match', choices=('exact', 'minimum', 'strict'), description='How strictly the model must match.'),
    Field('check', '', 'check', choices=('none', 'partial', 'full'), description='How libvirt checks the CPU at start.'),
    OnOff('migratable', '', 'migratable', description='Leave out features that block migration (host-passthrough).'),
    TOPOLOGY,
    Section('cache', 'cache', [
        Field('mode', '', 'mode', choices=('emulate', 'passthrough', 'disable'), description='Cache information mode.'),
        Integer('level', '', 'level', minimum=1, maximum=3, description='Emulated cache level.'),
    ], description='CPU cache information.'),
    KeyedList('features', '', 'feature', Field('name', '', 'name', pattern=r'^[a-z0-9_.-]+$',
                                               pattern_hint='a CPU feature name such as vmx'), [
        Field('policy', '', 'policy', choices=('force', 'require', 'optional', 'disable', 'forbid'),
              description='What to do with the feature.'),
    ], description='CPU feature policies, each C({name, policy}), for example C({name: vmx, policy: require}).'),
    NUMA_CELLS,
], description='Guest CPU model and topology.')

TIMER_NAMES = ('rtc', 'pit', 'hpet', 'hypervclock', 'kvmclock', 'tsc', 'platform')
CLOCK = Section('clock', 'clock', [
    Field('offset', '', 'offset', choices=('utc', 'localtime', 'timezone', 'variable'),
          description='V(localtime) for Windows guests, V(utc) for the others.'),
    Field('timezone', '', 'timezone', description='Time zone for O(clock.offset=timezone), for example V(Europe/Paris).'),
    KeyedList('timers', '', 'timer', Field('name', '', 'name', choices=TIMER_NAMES), [
        Field('tickpolicy', '', 'tickpolicy', choices=('delay', 'catchup', 'merge', 'discard'),
              description='What to do with missed ticks.'),
        YesNo('present', '', 'present', description='Whether the guest has the timer.'),
        Field('track', '', 'track', choices=('boot', 'guest', 'wall', 'realtime'), description='What the RTC follows.'),
    ], description='Timers, each C({name, tickpolicy, present}); name one of %s.' % ', '.join(TIMER_NAMES)),
], description='Guest clock and timers.')

MEMORY_BACKING = Section('memory_backing', 'memoryBacking', [
    Present('hugepages', 'hugepages', description='Back guest memory with huge pages (the host must have them reserved).'),
    PageSize('hugepage_size', 'hugepages/page', 'size', minimum=4, maximum=16 * 1024 * 1024,
             description='Huge page size in KiB (V(2048) or V(1048576) on x86); the host\'s default when omitted.'),
    Field('hugepage_nodeset', 'hugepages/page', 'nodeset', pattern=CPUSET_PATTERN, pattern_hint='guest NUMA nodes such as 0-1',
          description='Guest NUMA nodes these huge pages back.'),
    Present('nosharepages', 'nosharepages', description='Keep KSM from merging the guest\'s pages.'),
    Present('locked', 'locked', description='Lock guest memory in host RAM (no swapping).'),
    Field('source', 'source', 'type', choices=('file', 'anonymous', 'memfd'), description='Memory source; V(memfd) for virtiofs.'),
    Field('access', 'access', 'mode', choices=('shared', 'private'), description='V(shared) is what virtiofs (vhost-user) needs.'),
    Field('allocation', 'allocation', 'mode', choices=('immediate', 'ondemand'), description='Allocate memory up front or on demand.'),
    Present('discard', 'discard', description='Discard memory when the guest frees it.'),
], description='How guest memory is backed on the host.')

CPUTUNE = Section('cputune', 'cputune', [
    KeyedList('vcpupin', '', 'vcpupin', Integer('vcpu', '', 'vcpu', minimum=0, maximum=4095), [
        Field('cpuset', '', 'cpuset', pattern=CPUSET_PATTERN, pattern_hint=CPUSET_HINT, description='Host CPUs.'),
    ], description='vCPU pinning, each C({vcpu, cpuset}); changed live on a running guest.'),
    Field('emulatorpin', 'emulatorpin', 'cpuset', pattern=CPUSET_PATTERN, pattern_hint=CPUSET_HINT,
          description='Host CPUs for the emulator threads; changed live.'),
    KeyedList('iothreadpin', '', 'iothreadpin', Integer('iothread', '', 'iothread', minimum=1, maximum=1024), [
        Field('cpuset', '', 'cpuset', pattern=CPUSET_PATTERN, pattern_hint=CPUSET_HINT, description='Host CPUs.'),
    ], description='IOThread pinning, each C({iothread, cpuset}); changed live.'),
], description='vCPU, emulator and IOThread pinning.')

NUMATUNE = Section('numatune', 'numatune', [
    Field('mode', 'memory', 'mode', choices=('strict', 'preferred', 'interleave', 'restrictive'),
          description='Host NUMA memory policy.'),
    Field('nodeset', 'memory', 'nodeset', pattern=CPUSET_PATTERN, pattern_hint='host NUMA nodes such as 0-1',
          description='Host NUMA nodes.'),
    Field('placement', 'memory', 'placement', choices=('static', 'auto'), description='Static nodeset or numad.'),
], description='Host NUMA memory policy for the guest.')

BOOT = Section('boot', 'os', [
    BootOrder('order', description='Boot devices in order (V(hd), V(cdrom), V(network), V(fd)); V([]) leaves '
                                   'booting to per-device boot_order (libvirt refuses both together).'),
    YesNo('menu', 'bootmenu', 'enable', description='Show the firmware boot menu.'),
    Integer('menu_timeout', 'bootmenu', 'timeout', minimum=0, maximum=65535, description='Boot menu timeout in ms.'),
    Text('kernel', 'kernel', description='Direct kernel boot: path of the kernel on the host.'),
    Text('initrd', 'initrd', description='Direct kernel boot: path of the initramfs on the host.'),
    Text('cmdline', 'cmdline', description='Direct kernel boot: kernel command line.'),
    Field('smbios', 'smbios', 'mode', choices=('emulate', 'host', 'sysinfo'),
          description='Where the guest\'s SMBIOS tables come from; V(sysinfo) uses O(sysinfo).'),
], description='Boot order, boot menu and direct kernel boot (C(<os>)).')


def _smbios(block, names):
    return Section(block, block, [Text(name, 'entry[name=%s]' % name, description='SMBIOS %s %s.' % (block, name))
                                  for name in names], description='SMBIOS %s strings.' % block)


SYSINFO = Section('sysinfo', 'sysinfo[type=smbios]', [
    _smbios('bios', ('vendor', 'version', 'date', 'release')),
    _smbios('system', ('manufacturer', 'product', 'version', 'serial', 'sku', 'family')),
    _smbios('baseBoard', ('manufacturer', 'product', 'version', 'serial', 'asset', 'location')),
    _smbios('chassis', ('manufacturer', 'version', 'serial', 'asset', 'sku')),
], description='SMBIOS strings the guest sees (set O(boot.smbios=sysinfo) for QEMU to use them).')


class Firmware(Field):
    """``bios`` or ``efi``: libvirt's firmware auto-selection (``<os firmware='efi'>``); a hand-made
    definition with an explicit OVMF loader reads as ``efi`` too."""

    def __init__(self, option, **kwargs):
        super().__init__(option, 'os', 'firmware', choices=('bios', 'efi'), **kwargs)

    def read(self, element):
        os_el = element.find('os')
        if os_el is None:
            return None
        if os_el.get('firmware') == 'efi':
            return 'efi'
        loader = os_el.find('loader')
        if loader is not None and (loader.get('type') == 'pflash' or 'OVMF' in (loader.text or '').upper()):
            return 'efi'
        return 'bios'

    def write(self, element, value):
        os_el = _xml.child(element, 'os', create=True)
        if value == 'efi':
            os_el.set('firmware', 'efi')
            return
        os_el.attrib.pop('firmware', None)
        for tag in ('loader', 'nvram', 'firmware'):  # what made it UEFI goes with it
            for node in list(os_el.iterchildren(tag)):
                os_el.remove(node)


def _firmware_feature(option, name, description):
    return YesNo(option, 'os/firmware/feature[name=%s]' % name, 'enabled', description=description)


ROWS = [
    Row(Field('machine', 'os/type', 'machine', description='Machine type, for example V(q35) or V(pc).'),
        'Machine', create_only=True),
    Row(Firmware('firmware', description='V(bios) or V(efi) (UEFI through libvirt\'s firmware auto-selection, '
                                         'needs Debian\'s C(ovmf) on the host).'), 'Firmware', create_only=True),
    Row(_firmware_feature('secure_boot', 'secure-boot', 'UEFI secure boot (needs O(firmware=efi) and, on q35, '
                                                        'O(features.smm=true)).'), 'Firmware'),
    Row(_firmware_feature('enrolled_keys', 'enrolled-keys', 'Firmware with the Microsoft keys pre-enrolled '
                                                            '(what Windows 11 expects).'), 'Firmware'),
    Row(Section('loader', 'os/loader', [
        Text('path', '', description='Host path of the firmware code, for example V(/usr/share/OVMF/OVMF_CODE_4M.fd).'),
        YesNo('readonly', '', 'readonly', description='The code is read-only (pflash UEFI code is).'),
        Field('type', '', 'type', choices=('rom', 'pflash'), description='V(pflash) for UEFI.'),
        YesNo('secure', '', 'secure', description='Secure boot capable code (needs SMM).'),
    ], description='An explicit firmware loader instead of auto-selection (hand-made and older guests); giving '
                   'one to a BIOS guest changes its firmware (see O(change_firmware)).'), 'Firmware'),
    Row(Field('nvram_template', 'os/nvram', 'template',
              description='UEFI variable store template (host path); libvirt takes it only with an explicit '
                          'O(loader), not with O(firmware=efi) auto-selection.'), 'Firmware'),
    Row(Mebibytes('memory', 'memory', minimum=16,
                  description='Maximum memory in MiB (also sets the current memory unless O(current_memory) is given).'),
        'Memory'),
    Row(Mebibytes('current_memory', 'currentMemory', description='Current memory in MiB (balloon target); '
                                                                 'changed live on a running guest that has a memory '
                                                                 'balloon device, else at its next boot.'), 'Memory',
        live='memory'),
    Row(IntText('vcpus', 'vcpu', minimum=1, maximum=4096, description='Maximum number of vCPUs.'), 'CPU'),
    Row(CurrentVcpus('current_vcpus', minimum=1, maximum=4096,
                     description='vCPUs online at boot (up to O(vcpus)); changed live on a running guest.'), 'CPU',
        live='vcpus'),
    Row(CPU, 'CPU'),
    Row(IntText('iothreads', 'iothreads', minimum=0, maximum=1024, description='Number of IOThreads.'), 'Tuning'),
    Row(CPUTUNE, 'Tuning', live='pinning'),
    Row(NUMATUNE, 'Tuning'),
    Row(MEMORY_BACKING, 'Memory'),
    Row(BOOT, 'Boot'),
    Row(FEATURES, 'Features'),
    Row(CLOCK, 'Clock'),
    Row(Text('on_poweroff', 'on_poweroff', choices=LIFECYCLE_ACTIONS, description='Action when the guest powers off.'),
        'Lifecycle'),
    Row(Text('on_reboot', 'on_reboot', choices=LIFECYCLE_ACTIONS, description='Action when the guest reboots.'),
        'Lifecycle'),
    Row(Text('on_crash', 'on_crash', choices=LIFECYCLE_ACTIONS, description='Action when the guest crashes.'),
        'Lifecycle'),
    Row(Text('title', 'title', description='Short title (one line); changed live.'), 'Lifecycle', live='title'),
    Row(Text('description', 'description', description='Free-form description; changed live.'), 'Lifecycle',
        live='description'),
    Row(SYSINFO, 'SMBIOS'),
]
TABLE = {row.option: row for row in ROWS}


# --- planning -----------------------------------------------------------------------------------

def normalize(params, where=''):
    """The settings the user gave, validated and normalized ({option: value}); raises SpecError."""
    result = {}
    for row in ROWS:
        value = params.get(row.option)
        if value is None:
            continue
        if row.option == 'title' and '\n' in str(value):
            raise SpecError(where + row.option, '%r must be one line' % (value,))
        result[row.option] = row.field.normalize(value, where + row.option)
    return result


def read(domain):
    """Every setting the table describes, in option format ({option: value}, unset ones left out)."""
    result = {}
    for row in ROWS:
        value = row.field.read(domain)
        if value is not None:
            result[row.option] = value
    return result


def flatten(settings, prefix=''):
    """{'features.hyperv.vendor_id': 'x', ...}: one line per setting, for diffs and change lists."""
    flat = {}
    for option, value in settings.items():
        path = prefix + option
        if isinstance(value, dict):
            flat.update(flatten(value, path + '.'))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                key_option = next(iter(item))
                flat.update(flatten({k: v for k, v in item.items() if k != key_option},
                                    '%s[%s=%s].' % (path, key_option, item[key_option])))
                if len(item) == 1:
                    flat['%s[%s=%s]' % (path, key_option, item[key_option])] = True
        else:
            flat[path] = value
    return flat


class Plan:
    """The planned definition of one domain and what changes, per top-level option and per setting."""

    def __init__(self, tree, before, after):
        self.tree = tree
        self.before = before      # {option: value} read from the definition before
        self.after = after        # {option: value} read from the planned definition
        flat_before, flat_after = flatten(before), flatten(after)
        self.changed_settings = sorted(path for path in set(flat_before) | set(flat_after)
                                       if flat_before.get(path) != flat_after.get(path))
        self.changed_options = [row.option for row in ROWS if before.get(row.option) != after.get(row.option)]

    @property
    def changed(self):
        return bool(self.changed_options)

    @property
    def new_xml(self):
        return _xml.to_string(self.tree)


def plan(domain_xml, settings, machine_aliases=None, change_firmware=False, creating=False):
    """Apply normalized ``settings`` to a definition; refuses what cannot be changed in place."""
    domain = _xml.parse(domain_xml, 'domain XML')
    before = read(domain)
    tree = copy.deepcopy(domain)
    for row in ROWS:
        if row.option not in settings:
            continue
        value = settings[row.option]
        if row.create_only and not creating:
            current = before.get(row.option)
            if row.option == 'machine' and current in (value, (machine_aliases or {}).get(value)):
                continue
            if current == value:
                continue
            if row.option == 'firmware' and change_firmware:
                pass
            elif row.option == 'firmware':
                raise SpecError('firmware', '%r differs from the existing domain\'s %r: changing the firmware changes '
                                'what the guest boots (its boot entries live in the old firmware\'s NVRAM); set '
                                'change_firmware: true to do it anyway' % (value, current))
            else:
                raise SpecError(row.option, '%r differs from the existing domain\'s %r; the machine type decides the '
                                'guest\'s hardware layout and is not changed in place' % (value, current))
        if row.option == 'boot' and value.get('order') == [] and _default_boot_only(tree):
            value = {k: v for k, v in value.items() if k != 'order'}
        write_field(row.field, tree, value)
    _couple(tree, before, settings)
    after = read(tree)
    if not creating and not change_firmware and before.get('firmware') != after.get('firmware'):
        raise SpecError('loader', 'would change the firmware of the existing domain from %s to %s, which changes '
                        'what the guest boots; set change_firmware: true to do it anyway'
                        % (before.get('firmware'), after.get('firmware')))
    return Plan(tree, before, after)


# What libvirt (9.0) writes into a definition by itself, for check mode's prediction of the read-back
# definition. The real run reports what libvirt really kept; the functional tests compare the two.
def _default_boot_only(tree):
    """``boot.order: []`` (leave booting to per-device boot order) is met by a guest without per-device
    boot order that has libvirt's default ``<boot dev='hd'/>``: libvirt writes it back on every define."""
    return not tree.findall('devices/*/boot') and [el.get('dev') for el in tree.findall('os/boot')] in ([], ['hd'])


def _set_default(element, attr, value):
    if element.get(attr) is None:
        element.set(attr, value)


def libvirt_fills(tree, creating, domain_type, machine_aliases):
    os_type = _xml.child(tree, 'os/type')
    if os_type is not None and os_type.get('machine') in (machine_aliases or {}):
        os_type.set('machine', machine_aliases[os_type.get('machine')])
    cpu = tree.find('cpu')
    if creating and cpu is None and domain_type == 'qemu':
        cpu = _xml.new_element('cpu', {'mode': 'custom', 'match': 'exact', 'check': 'none'})
        _xml.child(cpu, 'model', create=True).set('fallback', 'forbid')
        cpu.find('model').text = 'qemu64'
        tree.append(cpu)
    if cpu is not None:
        mode = cpu.get('mode', 'custom')
        cpu.set('mode', mode)
        _set_default(cpu, 'check', {'host-model': 'partial'}.get(mode, 'none'))
        if mode == 'host-passthrough':
            _set_default(cpu, 'migratable', 'on')
        if mode == 'custom' and cpu.find('model') is not None:
            _set_default(cpu, 'match', 'exact')
            _set_default(cpu.find('model'), 'fallback', 'allow')
        topology = cpu.find('topology')
        if topology is not None:
            _set_default(topology, 'dies', '1')
    hyperv = _xml.child(tree, 'features/hyperv')
    if hyperv is not None:
        _set_default(hyperv, 'mode', 'custom')
    os_el = _xml.child(tree, 'os', create=True)
    if os_el.find('boot') is None and os_el.find('kernel') is None and tree.find('devices/*/boot') is None:
        os_el.append(_xml.new_element('boot', {'dev': 'hd'}))
    if not creating:
        return
    for tag, value in (('on_poweroff', 'destroy'), ('on_reboot', 'restart'), ('on_crash', 'destroy')):
        if tree.find(tag) is None:
            _xml.child(tree, tag, create=True).text = value
    _set_default(_xml.child(tree, 'clock', create=True), 'offset', 'utc')
    if tree.find('currentMemory') is None and tree.find('memory') is not None:
        tree.insert(list(tree).index(tree.find('memory')) + 1, copy.deepcopy(tree.find('memory')))
        tree[list(tree).index(tree.find('memory')) + 1].tag = 'currentMemory'


def _couple(tree, before, settings):
    """Settings that move together (as the module always did): a new maximum memory is also the current
    one, and a new vCPU maximum brings all of them online, unless the current value is given too."""
    if 'memory' in settings and 'current_memory' not in settings and before.get('memory') != settings['memory']:
        TABLE['current_memory'].field.write(tree, settings['memory'])
    if 'vcpus' in settings and 'current_vcpus' not in settings and before.get('vcpus') != settings['vcpus']:
        TABLE['current_vcpus'].field.clear(tree)


def live_changes(plan_):
    """(option, before, after) of the changed options a running guest takes live."""
    return [(option, plan_.before.get(option), plan_.after.get(option)) for option in plan_.changed_options
            if TABLE[option].live]


def waiting_for_restart(plan_, handled_live):
    """Changed settings a running guest sees only after its next boot (all but those changed live)."""
    live = set(handled_live)
    return [path for path in plan_.changed_settings if path.split('.')[0].split('[')[0] not in live]


# --- combinations that cannot work ----------------------------------------------------------------

def _on(domain, path, attr, word):
    node = _xml.child(domain, path)
    return node is not None and node.get(attr) == word


def check(domain, given, host=None, will_run=False, domain_type=None):
    """Refuse combinations that libvirt or QEMU would reject (or that would do harm), naming the options.

    ``given`` is the set of top-level options the user gave (a rule is checked when it involves one of
    them, so a hand-made guest is not refused for what the task does not touch); ``will_run``: the guest
    is about to be started, so what would keep it from starting is checked whatever the task gives; ``host`` is
    ``{'hugepage_sizes': {size_kib: free_pages}}`` of the local host, or None when the host is remote.
    """
    problems = []
    settings = read(domain)
    machine = settings.get('machine') or ''
    features = settings.get('features') or {}
    secure = settings.get('secure_boot') is True
    if secure and given & {'secure_boot', 'firmware', 'features'}:
        if settings.get('firmware') != 'efi':
            problems.append('secure_boot: true needs firmware: efi (the guest has firmware: %s)'
                            % settings.get('firmware'))
        if 'q35' in machine and features.get('smm') is not True:
            problems.append('secure_boot: true on a q35 guest needs features.smm: true (secure boot firmware '
                            'relies on SMM to protect its variables; the guest has %s)'
                            % ('no smm setting' if features.get('smm') is None else 'smm: %s' % features.get('smm')))
    if settings.get('enrolled_keys') and not secure and given & {'enrolled_keys', 'secure_boot'}:
        problems.append('enrolled_keys: true needs secure_boot: true')
    topology = (settings.get('cpu') or {}).get('topology')
    if topology and given & {'cpu', 'vcpus'}:
        product = 1
        for part in ('sockets', 'dies', 'cores', 'threads'):
            product *= topology.get(part, 1)
        if product != settings.get('vcpus'):
            problems.append('cpu.topology: %s gives %d vCPUs but vcpus is %s (sockets x dies x cores x threads '
                            'must equal vcpus)' % (topology, product, settings.get('vcpus')))
    order = (settings.get('boot') or {}).get('order')
    per_device = [el for el in domain.iterfind('devices/*/boot') if el.get('order')]
    if order and per_device and 'boot' in given:
        problems.append('boot.order: %s cannot be used together with per-device boot_order (%d device(s) of the '
                        'guest have one): give one or the other' % (order, len(per_device)))
    backing = settings.get('memory_backing') or {}
    virtiofs = [el for el in domain.iterfind('devices/filesystem') if _on(el, 'driver', 'type', 'virtiofs')]
    if virtiofs and backing.get('access') != 'shared' and given & {'memory_backing', 'numa'}:
        problems.append('memory_backing.access: virtiofs (filesystem %s) needs shared memory: set '
                        'memory_backing.access: shared (with source: memfd, or hugepages)'
                        % ', '.join(_xml.child(el, 'target').get('dir', '?') for el in virtiofs))
    if settings.get('nvram_template') and _on(domain, 'os', 'firmware', 'efi') and given & {'nvram_template', 'firmware'}:
        problems.append('nvram_template: libvirt refuses an NVRAM template together with firmware auto-selection '
                        '(firmware: efi); it applies to a definition with an explicit <loader>')
    if backing.get('hugepages') and host is not None and ('memory_backing' in given or will_run):
        problems.extend(_hugepage_problems(settings, host, will_run))
    if will_run and domain_type == 'qemu':
        problems.extend(_tcg_problems(settings))
    return problems


def _hugepage_problems(settings, host, will_run):
    sizes = host.get('hugepage_sizes') or {}
    backing = settings['memory_backing']
    size = backing.get('hugepage_size') or host.get('default_hugepage_size')
    if size not in sizes:
        return ['memory_backing.hugepage_size: %s KiB pages are not offered by this host (it offers: %s KiB)'
                % (size, ', '.join(str(s) for s in sorted(sizes)) or 'none')]
    needed = -(-settings.get('memory', 0) * 1024 // size)
    if will_run and sizes[size] < needed:
        return ['memory_backing.hugepages: the guest needs %d free %d KiB pages for memory: %s MiB, the host has %d '
                'free (reserve them with vm.nr_hugepages or the hugepages= kernel argument)'
                % (needed, size, settings.get('memory'), sizes[size])]
    return []


def _tcg_problems(settings):
    """What QEMU refuses to start under TCG (domain type qemu), found on this project's test hosts."""
    problems = []
    if (settings.get('cpu') or {}).get('mode') == 'host-passthrough':
        problems.append('cpu.mode: host-passthrough needs KVM; a type qemu (TCG) guest cannot start with it '
                        '(use cpu.mode: maximum)')
    hyperv = (settings.get('features') or {}).get('hyperv') or {}
    if hyperv.get('vpindex') is True:
        problems.append('features.hyperv.vpindex: QEMU under TCG (type qemu) refuses to start with vpindex on; '
                        'it and what needs it (synic, stimer) are for KVM guests')
    return problems


def gather(domain_xml):
    """(settings in option format, parts of the definition outside <devices> no option describes)."""
    domain = _xml.parse(domain_xml, 'domain XML')
    if domain.tag != 'domain':
        raise _xml.XMLInputError('domain XML has root <%s>, expected <domain>' % domain.tag)
    settings = read(domain)
    rendered = _xml.new_element('domain')
    for option, value in settings.items():
        TABLE[option].field.write(rendered, value)
    return settings, unmanaged(domain, rendered)


# elements and attributes that identify the domain or that libvirt owns; not settings
IDENTITY = {'name', 'uuid', 'devices', 'os/type', '@type', '@id', 'vcpu@placement', 'resource', 'seclabel'}


def unmanaged(actual, rendered, path=''):
    """Paths of the parts of ``actual`` that ``rendered`` (the settings written back) lacks."""
    found = []
    for attr, value in actual.attrib.items():
        if '%s@%s' % (path, attr) in IDENTITY:
            continue
        if rendered is None or rendered.get(attr) != value:
            found.append('%s@%s' % (path, attr))
    if rendered is not None and (actual.text or '').strip() != (rendered.text or '').strip() and path:
        found.append(path)
    used = []  # matched elements (kept referenced: lxml proxies are not stable by id)
    for node in actual:
        if not isinstance(node.tag, str):
            continue
        tag = node.tag if not node.tag.startswith('{') else '%s:%s' % (node.prefix, node.tag.split('}')[1])
        here = (path + '/' if path else '') + tag
        if here in IDENTITY:
            continue
        match = None
        if rendered is not None:
            match = next((el for el in rendered if not any(el is other for other in used) and el.tag == node.tag
                          and _same_key(el, node)), None)
        if match is None:
            found.append(here)
            continue
        used.append(match)
        found.extend(unmanaged(node, match, here))
    return found


def _same_key(left, right):
    return all(left.get(attr) == right.get(attr) for attr in ('name', 'dev', 'vcpu', 'iothread', 'id', 'type'))


def predicted_after(plan_, creating, domain_type, machine_aliases):
    """Check mode's view of the definition libvirt will keep (the plan plus libvirt's own additions)."""
    tree = copy.deepcopy(plan_.tree)
    libvirt_fills(tree, creating, domain_type, machine_aliases)
    return tree


def verify(settings, readback_xml, machine_aliases=None):
    """After a define: every given setting is in libvirt's definition as asked. Returns the problems."""
    kept = flatten(read(_xml.parse(readback_xml, 'domain XML')))
    problems = []
    for path, value in flatten(settings).items():
        if path == 'machine' and kept.get(path) in (value, (machine_aliases or {}).get(value)):
            continue
        if value is False and kept.get(path) is None:
            continue  # an element that means "on" (<hugepages/>) is absent: off
        if kept.get(path) != value and not (path == 'boot.order' and value == [] and kept.get(path) in (None, ['hd'])):
            problems.append('%s: libvirt kept %r, asked %r' % (path, kept.get(path), value))
    return problems


def cpumap(cpuset, host_cpus):
    """'0-2,^1' -> (True, False, True, False, ...) of length host_cpus, for libvirt's pinning calls."""
    chosen, excluded = set(), set()
    for part in cpuset.split(','):
        target = excluded if part.startswith('^') else chosen
        first, _dash, last = part.lstrip('^').partition('-')
        target.update(range(int(first), int(last or first) + 1))
    chosen -= excluded
    if not chosen or max(chosen) >= host_cpus:
        raise SpecError('cpuset', '%r names CPUs the host does not have (it has %d)' % (cpuset, host_cpus))
    return tuple(cpu in chosen for cpu in range(host_cpus))


def read_host_hugepages(root='/'):
    """{'hugepage_sizes': {size_kib: free pages}, 'default_hugepage_size': KiB} of the local host."""
    base = os.path.join(root, 'sys/kernel/mm/hugepages')
    sizes = {}
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        match = re.match(r'^hugepages-([0-9]+)kB$', name)
        if match:
            with open(os.path.join(base, name, 'free_hugepages')) as handle:
                sizes[int(match.group(1))] = int(handle.read().strip() or 0)
    default = None
    try:
        with open(os.path.join(root, 'proc/meminfo')) as handle:
            for line in handle:
                if line.startswith('Hugepagesize:'):
                    default = int(line.split()[1])
    except OSError:
        pass
    return {'hugepage_sizes': sizes, 'default_hugepage_size': default}


# --- Ansible argument spec and docs, from the table -----------------------------------------------

def _spec_of(field):
    if isinstance(field, Section):
        return {'type': 'dict', 'options': {name: _spec_of(sub) for name, sub in field.fields.items()}}
    if isinstance(field, KeyedList):
        options = {field.key_field.option: dict(_spec_of(field.key_field), required=True)}
        options.update((name, _spec_of(sub)) for name, sub in field.fields.items())
        return {'type': 'list', 'elements': 'dict', 'options': options}
    if isinstance(field, BootOrder):
        return {'type': 'list', 'elements': 'str', 'choices': list(BootOrder.DEVICES)}
    spec = {'type': field.value_type}
    if field.choices:
        spec['choices'] = list(field.choices)
    return spec


def argument_spec():
    """The settings' options as Ansible argument spec (types and choices; ranges are checked by ``normalize``)."""
    return {row.option: _spec_of(row.field) for row in ROWS}


def documentation():
    """The settings' options as module documentation (the doc fragment is generated from this)."""
    def doc(field):
        entry = _spec_of(field)
        entry.pop('options', None)
        entry['description'] = [field.description] if field.description else ['See the libvirt domain XML format.']
        if isinstance(field, Section):
            entry['suboptions'] = {name: doc(sub) for name, sub in field.fields.items()}
        elif isinstance(field, KeyedList):
            key = doc(field.key_field)
            key['required'] = True
            key['description'] = ['Identity of the entry (C(%s) in the XML).' % field.key_field.attr]
            entry['suboptions'] = dict([(field.key_field.option, key)] + [(n, doc(f)) for n, f in field.fields.items()])
        return entry
    options = {}
    for row in ROWS:
        entry = doc(row.field)
        entry['description'] = entry['description'] + ['Group: %s.' % row.group] + (
            ['A running guest takes a change live.'] if row.live else []) + (
            ['Only used when the domain is created; a different value on an existing domain is refused '
             '(the firmware changes with O(change_firmware=true)).']
            if row.create_only else [])
        options[row.option] = entry
    return options
