# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Device mappings and permitted devices in domain_devices (docs/device_mappings.md).

Where the runner turns ``source: {pf, vf}`` into a VF address before planning, it turns every
``mapping: NAME`` into the concrete device(s) the name resolves to on this host (``host.mappings``): the config
entry is rewritten as if the address had been given, so identity, re-runs, check mode and the passthrough
guards are exactly those of an address. The per-guest result says what each mapping resolved to.
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils import _ids
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_apply import _assignment_requests
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import LibvirtFailure
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import mappings as host_mappings
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.domain_usage import usage_from_domains
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.nodedev_source import NodeDevicesUnavailable


class Options:
    """The validated ``mappings`` and ``permitted`` options."""

    def __init__(self, params):
        self.mappings = host_mappings.parse_mappings(params.get('mappings'))
        self.permitted = host_mappings.parse_permitted(params.get('permitted'), self.mappings)


def asked_mapping(item):
    """The mapping name a declared device asks for, or None."""
    if item.kind is None or item.spec is None:
        return None
    if item.kind.tag == 'interface':
        return (item.spec.get('source') or {}).get('mapping')
    if item.kind.tag == 'hostdev':
        return item.spec.get('mapping')
    return None


def _mapping_type(item):
    """The mapping type a device takes: a hostdev's own type (usb, mdev), else pci (also an interface's VF)."""
    if item.kind.tag == 'hostdev' and item.spec.get('type') in ('usb', 'mdev'):
        return item.spec['type']
    return 'pci'


def check_names(requests, options):
    """Every mapping a device asks for exists and is of the device's type; SpecError names the field."""
    for request in requests:
        for item in request.declared:
            name = asked_mapping(item)
            if name is None:
                continue
            field = item.where + ('.source.mapping' if item.kind.tag == 'interface' else '.mapping')
            mapping = options.mappings.get(name)
            if mapping is None:
                raise SpecError(field, '%r is not the name of a mapping (%s)' % (
                    name, ', '.join(sorted(options.mappings)) if options.mappings else 'the mappings option is empty'))
            if mapping.type != _mapping_type(item):
                raise SpecError(field, 'mapping %s is of type %s, this device takes a %s device'
                                % (name, mapping.type, _mapping_type(item)))
            if item.kind.tag == 'interface' and mapping.multifunction:
                raise SpecError(field, 'mapping %s is multifunction: an interface takes one VF' % name)
            if mapping.count > 1:
                for option in ('mac', 'guest_address'):
                    if option in item.spec and not (option == 'mac' and item.derived is not None):
                        raise SpecError('%s.%s' % (item.where, option), 'does not go with mapping %s of count %d '
                                        '(each of its devices needs its own)' % (name, mapping.count))


def _managed(item):
    """Whether libvirt binds the device to vfio-pci itself: a hostdev unless managed is false, an interface when
    managed is true (libvirt's defaults)."""
    if item.kind.tag == 'interface':
        return item.spec.get('managed') is True
    return item.spec.get('managed') is not False


def _guest_name(connection, request):
    if request.name:
        return request.name
    try:
        return connection.name_of(connection.lookup_uuid(request.uuid))
    except LibvirtFailure:
        return request.uuid   # not there: its run fails when it reads the guest


def _expand(raw, item, entry, host, mapping):
    """The config entries one resolved device becomes (every function of a multifunction slot)."""
    if item.kind.tag == 'interface':
        return [dict(raw, source={'hostdev': entry['device']})]
    if entry.get('mdev') is not None:
        # the model is the type's device_api (vfio-pci for a vGPU) unless the device gives one
        mdev_type = host_mappings.mdev_type_of(host, entry['mdev'])
        model = raw.get('model') or (mdev_type.device_api if mdev_type is not None and mdev_type.device_api
                                     else 'vfio-pci')
        return [dict(raw, mapping=None, uuid=entry['mdev'].uuid, model=model)]
    if entry['usb'] is not None:
        request = host_mappings.usb_request(host, entry['usb'])
        address = '%s.%s' % (request['bus'], request['device']) if request['bus'] is not None else None
        return [dict(raw, mapping=None, vendor=request['vendor'], product=request['product'], address=address)]
    expanded = []
    functions = entry['functions']
    for address in functions:
        spec = dict(raw, mapping=None, address=address)
        guest = raw.get('guest_address')
        if guest and len(functions) > 1:
            # the functions of one host slot stay one multi-function device in the guest
            slot = _ids.pci_text(guest, item.where + '.guest_address').rsplit('.', 1)[0]
            spec['guest_address'] = '%s.%s' % (slot, address.rsplit('.', 1)[1])
            if address == functions[0] and raw.get('multifunction') is None:
                spec['multifunction'] = True
        expanded.append(spec)
    return expanded


def resolve(connection, requests, options, read_host, state):
    """Rewrite the requests' devices that ask for a mapping into the devices it resolves to on this host.

    ``read_host()``: the host model (sysfs or node devices). Each request gets ``mapped`` (what each mapping
    resolved to, for its result) and ``mapping_error`` (why its guest cannot get a device: its run is refused
    before anything is written). Nothing is read when no device asks for a mapping."""
    wanted = []
    for request in requests:
        request.mapped, request.mapping_error = [], None
        for item in request.declared:
            if asked_mapping(item) is not None:
                wanted.append(request)
                break
    if not wanted:
        return None
    host = read_host()
    usage = usage_from_domains(connection.domain_definitions())
    for request in wanted:
        guest = _guest_name(connection, request)
        asks = [(item, host_mappings.Ask(guest, item.where, asked_mapping(item), _managed(item)))
                for item in request.declared if asked_mapping(item) is not None]
        request.asks = asks
    # one pass over every guest of the task, in its order: the same manifest resolves the same way
    host_mappings.resolve(host, options.mappings, usage, [ask for request in wanted for _item, ask in request.asks],
                          keep_only=state == 'deleted', permitted=options.permitted)
    for request in wanted:
        errors = [ask.error for _item, ask in request.asks if ask.error]
        if errors:
            request.mapping_error = '; '.join('%s: %s' % (ask.where, ask.error) for _item, ask in request.asks
                                              if ask.error)
            continue
        by_item = {id(item): ask for item, ask in request.asks}
        config, wheres = [], []
        for raw, item in zip(request.config, request.declared):
            ask = by_item.get(id(item))
            if ask is None:
                config.append(raw)
                wheres.append(item.where)
                continue
            mapping = options.mappings[ask.mapping]
            for entry in ask.devices:
                for expanded in _expand(raw, item, entry, host, mapping):
                    config.append(expanded)
                    wheres.append(item.where)
            request.mapped.append({'where': item.where, 'mapping': ask.mapping,
                                   'devices': [entry['device'] for entry in ask.devices],
                                   'functions': [address for entry in ask.devices for address in entry['functions']],
                                   'kept': list(ask.kept)})
        request.config = config
        request.declared = request.redeclare(request.name or request.uuid)
        for item, where in zip(request.declared, wheres):
            item.where = where   # an entry's devices keep its place in the messages
    return host


def check_permitted(runs, options, host):
    """With ``permitted``, refuse every run asking for a host device outside it: by mapping, typed address or raw
    XML alike (the requests the passthrough guards judge, ``_ids.host_device_requests``). ``host``: the host model,
    or a function reading it (called only when some run asks for a device). Returns the refusals."""
    if options is None or options.permitted is None:
        return []
    errors, wanted = [], []
    for run in runs:
        try:
            wanted.append((run, _assignment_requests(run)))
        except _ids.IdError as exc:
            _refuse(run, errors, ['%s [guard address]' % exc])
    wanted = [(run, requests) for run, requests in wanted if requests]
    if not wanted:
        return errors
    try:
        host = host() if callable(host) else host
    except NodeDevicesUnavailable as exc:
        for run, _requests in wanted:
            _refuse(run, errors, ['the permitted devices cannot be checked: %s' % exc])
        return errors
    for run, requests in wanted:
        outside = host_mappings.permitted_check(host, options.mappings, options.permitted, requests)
        if outside:
            _refuse(run, errors, outside)
    return errors


def _refuse(run, errors, messages):
    run.refusals = list(messages)
    errors.extend('domain %s: %s' % (run.name, text) for text in messages)
    run.fail('refused to assign host devices, nothing of it was written: %s' % '; '.join(messages))


def note_in_result(result, request):
    """The result of a guest with the devices its mappings resolved to (``mappings``)."""
    if getattr(request, 'mapped', None):
        result['mappings'] = request.mapped
    return result


def note_in_diff(diff, request):
    """--diff says which concrete device each mapping resolved to."""
    if diff is None or not getattr(request, 'mapped', None):
        return diff
    resolved = ', '.join(
        '%s %s -> %s%s' % (entry['where'], entry['mapping'], ', '.join(entry['functions'] or entry['devices']),
                           ' (kept)' if entry['kept'] and len(entry['kept']) == len(entry['devices']) else '')
        for entry in request.mapped)
    return dict(diff, after_header='%s (mappings: %s)' % (diff['after_header'], resolved))
