# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The runner of virtdev.libvirt.domain_devices: one task over one or many guests on one connection.

The module file holds only its options and documentation; this file validates the request, reads and
plans every guest (``_device_apply.DomainRun``), checks the host devices they would assign, writes each
guest under its lock and puts the result together (docs/architecture.md).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.parameters import DEFAULT_TYPE_VALIDATORS
from ansible.module_utils.parsing.convert_bool import boolean

from ansible_collections.virtdev.libvirt.plugins.module_utils import (
    _common, _device_engine, _device_mappings, _guest_lock, _ids, _secrets, _xml,
)
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_apply import (
    ApplyError, DomainRun, assigns_host_devices, names_vf_by_pf, preflight, read_host, vf_address,
)
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import DEVICE_TAGS, device_argument_spec
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import ConnectionLost, LibvirtFailure
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import mappings as host_mappings
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import nodedev_source, source
from ansible_collections.virtdev.libvirt.plugins.module_utils.host import preflight as host_preflight

WRITING_STATES = ('merged', 'replaced', 'overridden', 'deleted')
ON_ERROR = ('continue', 'stop')
RESULT_DETAIL = ('compact', 'full')
# O(domains): Ansible checks only the shape of the manifest; each device is converted to its option types here
# and validated by the kind table (Kind.normalize), once (docs/performance.md, "Where the time goes")
MANIFEST_SPEC = {'domain': {'type': 'str'}, 'uuid': {'type': 'str'}, 'config': {'type': 'list', 'elements': 'dict'}}
DEVICE_OPTIONS = device_argument_spec()
# option paths of a device ('password') that are secrets, as the kind table marks them
DEVICE_SECRETS = frozenset(_common.no_log_paths(DEVICE_OPTIONS))
# (option, lowest, highest) of the integer options
RANGES = (('restart_timeout', 0, 86400), ('detach_timeout', 1, 3600), ('detach_attempts', 1, 100),
          ('lock_timeout', 0, 86400))


class Module(AnsibleModule):
    """AnsibleModule whose manifest (O(domains)) has no nested device argspec: the secrets of its devices are
    registered as no_log values as soon as the parameters are read, so that nothing Ansible logs (the
    journal's "Invoked with") or returns (an argspec failure's ``invocation``) shows them."""

    def _load_params(self):
        super()._load_params()
        for device in manifest_devices(self.params):
            for path in DEVICE_SECRETS:
                value = _at(device, path)
                if value is not None and not isinstance(value, (dict, list)):
                    value = value if isinstance(value, str) else str(value)
                    # every escaped form too: Ansible logs the manifest as the repr of a list
                    self.no_log_values.update({value} | _secrets.forms(value) if value else set())


def manifest_devices(params):
    """Every device dict of O(domains) (raw parameters: anything that is not a device is skipped)."""
    domains = params.get('domains') if isinstance(params, dict) else None
    for entry in domains if isinstance(domains, list) else ():
        config = entry.get('config') if isinstance(entry, dict) else None
        for device in config if isinstance(config, list) else ():
            if isinstance(device, dict):
                yield device


def _at(device, path):
    value = device
    for part in path.split('.'):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def convert_types(config, where, options=None):
    """A manifest's device list with each option converted to its type the way Ansible converts a typed
    option (V(yes) a boolean, V('4') an integer); wrong types are refused naming the field and the value
    (a secret's value is not shown). Unknown options and everything else are left to the kind table."""
    if not isinstance(config, list):
        return config
    return [_convert_device(device, '%s[%d]' % (where, index), options or DEVICE_OPTIONS)
            if isinstance(device, dict) else device for index, device in enumerate(config)]


def _convert_device(device, where, options):
    converted = {}
    for key, value in device.items():
        spec = options.get(key)
        if value is not None and spec is not None:
            here = '%s.%s' % (where, key)
            try:
                value = DEFAULT_TYPE_VALIDATORS[spec['type']](value)
            except (TypeError, ValueError):
                shown = '(value hidden)' if spec.get('no_log') else repr(value)
                raise SpecError(here, '%s is not a valid %s' % (shown, spec['type'])) from None
            if spec.get('options') and isinstance(value, dict):
                value = _convert_device(value, here, spec['options'])
        converted[key] = value
    return converted


def echo(params):
    """``invocation.module_args``: a manifest is summarized unless O(result_detail=full) (the controller would
    otherwise receive, scrub and store the whole manifest with every run's result)."""
    if params.get('domains') is None or params.get('result_detail') == 'full':
        return params
    devices = sum(1 for _device in manifest_devices(params))
    return dict(params, domains='%d domains, %d devices (not echoed; result_detail=full echoes them)'
                % (len(params['domains']), devices))


class Request:
    """One guest of the task: asked for by name or by UUID, with its validated devices."""

    def __init__(self, name, uuid, config, where):
        self.name = name
        self.uuid = uuid.lower() if uuid else None
        self.config = config or []
        self.where = where
        # validated now, before anything is read; a guest asked for by UUID is declared again under its
        # real name once it is found (MACs derived from the name)
        self.declared = _device_engine.declare(self.config, name or self.uuid, where)

    def redeclare(self, name):
        return _device_engine.declare(self.config, name, self.where)


class DomainDevices:
    """Runs one state over the requested domains on one connection."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.connection = None
        self.host_checks = None  # what the passthrough guards read and what they could not check
        self.mapping_options = None  # the validated mappings and permitted options
        self.mapped_host = None  # the host model the mappings were resolved on
        self.held_host_lock = None  # the host passthrough lock while held (host_lock)

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, **extra)

    def requests(self):
        """The guests of the task; every spec is validated before anything is read."""
        try:
            if self.params['domains'] is not None:
                raw = [(entry['domain'], entry['uuid'],
                        convert_types(entry['config'], 'domains[%d].config' % index), 'domains[%d]' % index)
                       for index, entry in enumerate(self.params['domains'])]
            else:
                raw = [(self.params['domain'], self.params['uuid'], self.params['config'], None)]
        except SpecError as exc:
            self.fail(str(exc))
        for name, uuid, _config, where in raw:
            prefix = where + '.' if where else ''
            if where and (name is None) == (uuid is None):
                self.fail('%s: give domain (a name) or uuid, %s' % (where, 'not both' if name else 'one of them'))
            if uuid is not None and not _ids.is_uuid(uuid):
                self.fail('%suuid: %r is not a UUID' % (prefix, uuid))
        for position, label in ((0, 'domain'), (1, 'uuid')):
            values = [str(item[position]).lower() if position else item[position] for item in raw
                      if item[position] is not None]
            duplicates = sorted({value for value in values if values.count(value) > 1})
            if duplicates:
                self.fail('domains: %s %s is listed more than once' % (label, ', '.join(repr(v) for v in duplicates)))
        try:
            return [Request(name, uuid, config, (where + '.config') if where else 'config')
                    for name, uuid, config, where in raw]
        except SpecError as exc:
            self.fail(str(exc))

    # -- states without a connection --------------------------------------------------------------
    def rendered(self):
        request, = self.requests()
        for item in request.declared:
            if _device_mappings.asked_mapping(item) is not None:
                self.fail('%s: a mapping is resolved on the host, which state=rendered does not read: give the '
                          'address' % item.where)
            if names_vf_by_pf(item):
                self.fail('%s.source.pf: a VF given by pf and vf is found on the host, which state=rendered does '
                          'not read: give its PCI address as source.hostdev' % item.where)
        self.module.exit_json(changed=False, rendered=_device_engine.render(request.declared))

    def parsed(self):
        try:
            self.module.exit_json(changed=False, parsed=_device_engine.gather(self.params['running_config'],
                                                                              self.params['gather_implicit']))
        except _xml.XMLInputError as exc:
            self.fail('running_config: %s' % exc)

    # -- states with a connection -----------------------------------------------------------------
    def gathered(self):
        self.connection = _common.connect(self.module)
        try:
            if self.params['uuid']:
                dom = self.connection.lookup_uuid(self.params['uuid'])
            else:
                dom = self.connection.lookup(self.params['domain'])
            self.module.exit_json(changed=False, gathered=_device_engine.gather(self.connection.xml(dom),
                                                                                self.params['gather_implicit']))
        except LibvirtFailure as exc:
            self.fail(str(exc))

    def converge(self):
        requests = self.requests()
        self.mapping_options = self.mapping_options_of(requests)
        self.connection = _common.connect(self.module)
        self.resolve_vfs(requests)
        self.resolve_mappings(requests)
        for request in requests:  # declared again only once a guest asked for by UUID is found
            if request.uuid is None:
                request.config = None
        params = self.params
        runs = [DomainRun(self.connection, request.name, request.declared, params['state'], params['apply'],
                          self.module.check_mode, params['detach_timeout'], params['detach_attempts'],
                          uuid=request.uuid, redeclare=request.redeclare,
                          allow_live_removal=params['allow_live_removal'],
                          overridden_kinds=params['overridden_kinds'])
                for request in requests]
        mapping_refusals = []
        for run, request in zip(runs, requests):
            if getattr(request, 'mapping_error', None):
                run.refusals = [request.mapping_error]
                mapping_refusals.append('domain %s: %s' % (run.name, request.mapping_error))
                run.fail('refused to assign host devices, nothing of it was written: %s' % request.mapping_error)
        # read and plan every domain first: with on_error=stop a bad one fails the task before any write
        for run in runs:
            if run.error is not None:
                continue
            if self.connection.lost:
                run.fail('not read: the connection to libvirt was lost')
                continue
            try:
                run.prepare()
            except (SpecError, LibvirtFailure, ApplyError) as exc:
                run.fail(exc)
        refusals = mapping_refusals + self.check_permitted([run for run in runs if run.error is None])
        self.hold_host_lock([run for run in runs if run.error is None])
        refusals += self.check_host([run for run in runs if run.error is None])
        halted = self.halted_before_writing(runs)
        lock_dir = _guest_lock.lock_dir(params['uri'])
        compact = params['domains'] is not None and params['result_detail'] != 'full'
        results, diffs = [], []
        for run, request in zip(runs, requests):
            if run.error is None and halted is None:
                halted = self.write(run, lock_dir)
            elif run.error is None:
                run.skipped = halted
            # settle each domain as it is done: a host of hundreds of guests is not held in memory twice
            results.append(_device_mappings.note_in_result(
                run.result(compact=compact, devices=not compact or self.module._diff), request))
            diffs.append(_device_mappings.note_in_diff(run.diff(), request) if self.module._diff else None)
            run.release()
            request.declared = request.config = None  # its elements: the module's peak memory is at exit_json
        self.finish(runs, results, [diff for diff in diffs if diff], refusals)

    def halted_before_writing(self, runs):
        """With on_error=stop any failure while reading and planning means nothing is written."""
        failed = [run.name for run in runs if run.error is not None]
        if self.connection.lost:
            return 'the connection to libvirt was lost'
        if failed and self.params['on_error'] == 'stop':
            return 'on_error=stop and %s %s failed before anything was written' % (
                'domain' if len(failed) == 1 else 'domains', _names(failed))
        return None

    def write(self, run, lock_dir):
        """Apply one guest under its lock; return why the guests after it must not be attempted, if so."""
        if not run.has_work(self.params['restart'] == 'if_required'):
            for warning in run.plan_warnings:
                self.module.warn(warning)
            return None
        try:
            with run.locked(lock_dir, self.params['lock_timeout']):
                try:
                    run.apply()
                    # under the lock too: a restart writes its record into the definition's metadata
                    run.restart(self.params['restart'] == 'if_required', self.params['restart_timeout'])
                except (LibvirtFailure, ApplyError) as exc:
                    raise ApplyError(self.start_if_ours(run, exc)) from exc
        except (LibvirtFailure, ApplyError, _guest_lock.LockError) as exc:
            run.fail(exc)
            if self.connection.lost:
                return 'the connection to libvirt was lost while domain %s was written' % run.name
            if self.params['on_error'] == 'stop':
                return 'on_error=stop and domain %s failed' % run.name
        finally:
            for warning in run.plan_warnings + run.warnings:
                self.module.warn(warning)
        return None

    def start_if_ours(self, run, exc):
        """A guest that is off because of this module's shutdown request is never left off, even when its run
        failed; returns the failure's message (with the start's failure, if that failed too)."""
        if isinstance(exc, ConnectionLost):
            raise exc
        try:
            run.start_if_ours()
        except (LibvirtFailure, ApplyError) as start_failure:
            return '%s; %s' % (exc, start_failure)
        return str(exc)

    def host_source(self):
        """Where the host is read from: libvirt's node devices for a URI naming a host (None: sysfs)."""
        if source.reads_node_devices(self.params['host_root'], self.params['uri']):
            return nodedev_source.NodeDeviceSource(self.connection)
        return None

    def resolve_vfs(self, requests):
        """Interfaces given ``source: {pf, vf}`` take the VF's PCI address (``source: {hostdev}``) before any
        guest is read or planned, so identity, re-runs and the passthrough guards see what an address given
        directly gives. A PF or index the host does not have fails the task naming it; nothing is written."""
        if not any(names_vf_by_pf(item) for request in requests for item in request.declared):
            return
        try:
            host = read_host(self.params['host_root'], self.host_source())
        except nodedev_source.NodeDevicesUnavailable as exc:
            self.fail('source.pf: the VFs of a PF cannot be found: %s (nothing was changed)' % exc)
        try:
            for request in requests:
                if not any(names_vf_by_pf(item) for item in request.declared):
                    continue
                # declare() makes one item per config entry, in order
                request.config = [
                    dict(raw, source={'hostdev': vf_address(host, item.spec['source'], item.where + '.source')})
                    if names_vf_by_pf(item) else raw
                    for raw, item in zip(request.config, request.declared)]
                request.declared = request.redeclare(request.name or request.uuid)
        except SpecError as exc:
            self.fail('%s (nothing was changed)' % exc)

    def mapping_options_of(self, requests):
        """The validated mappings and permitted options; a device asking for a mapping that is not there (or of
        another type) fails the task naming the field, before anything is read."""
        try:
            options = _device_mappings.Options(self.params)
            _device_mappings.check_names(requests, options)
        except (host_mappings.MappingError, SpecError) as exc:
            self.fail('%s (nothing was changed)' % exc)
        return options

    def resolve_mappings(self, requests):
        """Devices asking for a mapping take the device(s) it resolves to on this host (docs/device_mappings.md)
        before any guest is planned, as ``source: {pf, vf}`` does; a guest that cannot get one is refused."""
        if not self.module.check_mode and any(_device_mappings.asked_mapping(item) is not None
                                              for request in requests for item in request.declared):
            # one choice of free devices at a time per host: two runs must not both take the same free device.
            # Held until every guest is written (run() releases it; flock also ends with the process).
            try:
                self.held_host_lock = self.host_lock()
            except _guest_lock.LockError as exc:
                self.fail('mappings: the free devices cannot be chosen now: %s' % exc)
        try:
            self.mapped_host = _device_mappings.resolve(
                self.connection, requests, self.mapping_options,
                lambda: read_host(self.params['host_root'], self.host_source()), self.params['state'])
        except nodedev_source.NodeDevicesUnavailable as exc:
            self.fail('mappings: cannot be resolved, the host cannot be read: %s (nothing was changed)' % exc)
        except (ValueError, LibvirtFailure) as exc:  # SpecError, an unreadable domain XML
            self.fail('mappings: %s (nothing was changed)' % exc)

    def host_lock(self):
        """The host's passthrough lock: held from the guards' look at other guests until this run's guests are
        written, so two runs never both give one host device (docs/concurrency.md). Released by run() once
        every guest is written and the result printed (or when the process ends: flock)."""
        return _guest_lock.GuestLock(_guest_lock.lock_dir(self.params['uri']), 'device-mappings',
                                     'host devices', self.params['lock_timeout']).__enter__()

    def release_host_lock(self):
        """Ends the run's hold on the host lock; a module in a long-lived process (tests, a fork server's
        parent) must not keep it past its run."""
        if self.held_host_lock is not None:
            self.held_host_lock.__exit__(None, None, None)
            self.held_host_lock = None

    def hold_host_lock(self, runs):
        """A real run that would give a guest a host device takes the host's passthrough lock before the guards
        read which devices other guests use (a run choosing from mappings holds it already)."""
        if self.module.check_mode or self.held_host_lock is not None or \
                host_checks_mode(self.params['host_checks']) == 'off':
            return
        if not any(assigns_host_devices(run) for run in runs):
            return
        try:
            self.held_host_lock = self.host_lock()
        except _guest_lock.LockError as exc:
            self.fail('host devices: the passthrough guards cannot run now, nothing was changed: %s' % exc)

    def check_permitted(self, runs):
        """With ``permitted``, refuse every run asking for a host device outside it. Returns the refusals."""
        host = self.mapped_host or (lambda: read_host(self.params['host_root'], self.host_source()))
        return _device_mappings.check_permitted(runs, self.mapping_options, host)

    def check_host(self, runs):
        """Passthrough guards for every host device the runs would assign (before any write): refused guests
        fail (with on_error=stop, nothing is written then). Returns the refusals.

        The host is read from sysfs when libvirt runs on this machine, else from libvirt's node devices, and
        the guards those cannot answer are named per device (refused with host_checks=strict)."""
        mode = host_checks_mode(self.params['host_checks'])
        if mode == 'off' or not runs:
            return []
        root, uri = self.params['host_root'], self.params['uri']
        host_source = self.host_source()
        remote = host_source is not None
        # disk sources: this machine's files for a URI without a host name, else the host's storage pools
        paths = host_preflight.LocalPaths() if source.uri_host(uri) is None else host_preflight.PoolPaths(self.connection)
        errors, warnings = preflight(self.connection, runs, root, self.params['force'], host_source=host_source,
                                     paths=paths)
        if any(run.host_requests for run in runs):
            self.host_checks = {'source': nodedev_source.SOURCE if remote else 'sysfs', 'not_checked': []}
            if remote:
                errors += self.not_checked_remotely(runs, uri, strict=mode == 'strict')
        if any(run.unchecked_paths for run in runs):
            errors += self.paths_not_checked(runs, uri, strict=mode == 'strict')
        for warning in warnings:
            self.module.warn(warning)
        for run in runs:
            if run.refusals:
                run.fail('refused by the host checks, nothing of it was written: %s' % '; '.join(run.refusals))
        return errors

    def not_checked_remotely(self, runs, uri, strict):
        """Name, per device, the guards libvirt's node devices cannot answer; with ``strict`` they refuse the run.
        Returns the new refusals."""
        errors = []
        for run in runs:
            devices = []
            for request in run.host_requests:
                rows = nodedev_source.not_checked(request['type'])
                device = request.get('address') or request.get('uuid') or (
                    '%s:%s' % (request['vendor'], request['product']) if request.get('vendor')
                    else 'usb bus %s device %s' % (request.get('bus'), request.get('device')))
                self.host_checks['not_checked'].append({'domain': run.name, 'device': device,
                                                        'where': request.get('where'), 'guards': rows})
                devices.append('%s (%s)' % (request.get('where'), device))
            if not devices:
                continue
            rows = [row for request in run.host_requests for row in nodedev_source.not_checked(request['type'])]
            what = '; '.join(_unique('%s: %s' % (row['guard'], row['what']) for row in rows))
            message = ('over %s the guards run on libvirt\'s node devices, which cannot answer these for %s: %s'
                       % (_host_of(uri), ', '.join(devices), what))
            if strict:
                run.refusals.append('host_checks=strict and %s [guard not checked]' % message)
                errors.append('domain %s: %s' % (run.name, run.refusals[-1]))
            else:
                self.module.warn('domain %s: not checked: %s (host_checks: strict refuses instead)' % (run.name,
                                                                                                       message))
        return errors

    def paths_not_checked(self, runs, uri, strict):
        """Name the disk sources in no storage pool of a remote host (their existence cannot be told from here);
        with ``strict`` they refuse the run. Returns the new refusals."""
        if self.host_checks is None:
            self.host_checks = {'source': 'libvirt storage pools', 'not_checked': []}
        errors = []
        for run in runs:
            if not run.unchecked_paths:
                continue
            why = 'the path is in no storage pool of %s' % _host_of(uri)
            for request in run.unchecked_paths:
                self.host_checks['not_checked'].append({
                    'domain': run.name, 'device': request['path'], 'where': request['where'],
                    'guards': [{'guard': 'source_exists', 'what': 'whether the file or block device exists',
                                'why': why}]})
            message = '%s: whether %s exist%s (%s)' % (
                'not checked', ', '.join('%s (%s)' % (r['where'], r['path']) for r in run.unchecked_paths),
                's' if len(run.unchecked_paths) == 1 else '', why)
            if strict:
                run.refusals.append('host_checks=strict and %s [guard source_exists]' % message)
                errors.append('domain %s: %s' % (run.name, run.refusals[-1]))
            else:
                self.module.warn('domain %s: %s (host_checks: strict refuses instead)' % (run.name, message))
        return errors

    def finish(self, runs, results, diffs, refusals):
        outcome = {'changed': any(result['changed'] for result in results),
                   'libvirt_calls': dict(self.connection.calls)}
        if self.params['domains'] is not None:
            outcome['results'] = results
        else:
            outcome.update(results[0])
            for key in ('domain', 'msg', 'failed'):
                outcome.pop(key, None)
        if refusals:
            outcome['refusals'] = refusals
        if self.host_checks is not None:
            outcome['host_checks'] = self.host_checks
        if diffs:
            outcome['diff'] = diffs if len(diffs) > 1 else diffs[0]
        failed = [run for run in runs if run.error is not None]
        if refusals and (self.params['on_error'] == 'stop' or self.params['domains'] is None):
            self.fail('refused before writing (host checks or device rules), nothing was changed: %s'
                      % '; '.join(refusals), **outcome)
        if failed:
            self.fail(self.failure_message(runs, failed, results), **outcome)
        self.module.exit_json(**outcome)

    def failure_message(self, runs, failed, results):
        if self.params['domains'] is None:
            return failed[0].error
        written = [result['domain'] for result in results if result['outcome'] == 'written']
        unknown = [result['domain'] for result in results if result['outcome'] == 'unknown']
        skipped = [run.name for run in runs if run.skipped]
        # the first few failures in the message (one or two lines); every one is in its domain's result
        parts = ['%d of %d domains failed: %s' % (len(failed), len(runs), _names([run.error for run in failed], 3,
                                                                                 '; '))]
        parts.append('written: %s' % (_names(written) if written else 'none'))
        if unknown:
            parts.append('unknown whether written (the connection was lost mid-call): %s' % _names(unknown))
        if skipped:
            parts.append('not attempted: %s' % _names(skipped))
        return '. '.join(parts)


def _names(names, shown=20, separator=', '):
    """'a, b, c' (and how many more)."""
    text = separator.join(names[:shown])
    return text + (' and %d more' % (len(names) - shown) if len(names) > shown else '')


def _unique(items):
    """The items in their order, each once."""
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def _host_of(uri):
    """'qemu+ssh://hv1/system' for a URI, without its user, port and query (key files, sockets)."""
    parts = urlsplit(uri)
    return '%s://%s%s' % (parts.scheme, parts.hostname or '', parts.path)


def host_checks_mode(value):
    """'on', 'off' or 'strict' from O(host_checks) (a boolean or V(strict)); validated in main()."""
    if isinstance(value, str) and value.strip().lower() == 'strict':
        return 'strict'
    return 'on' if boolean(value, strict=True) else 'off'


def run(module):
    """The whole task: the module's main() after AnsibleModule is made."""
    _common.mask_secrets(module, echo=echo)
    # NUL, control characters, lone surrogates: refused naming the option
    _common.check_strings(module, secret_paths=['domains.config.' + path for path in DEVICE_SECRETS])
    _common.require_libraries(module, need_libvirt=module.params['state'] not in ('rendered', 'parsed'))
    runner = DomainDevices(module)
    state = module.params['state']
    if state in WRITING_STATES and not (module.params['domain'] or module.params['uuid']) \
            and module.params['domains'] is None:
        module.fail_json(msg='domain: state=%s needs domain (or uuid, or domains)' % state)
    try:
        host_checks_mode(module.params['host_checks'])
    except TypeError:
        module.fail_json(msg='host_checks: %r is not one of true, false, strict' % (module.params['host_checks'],))
    for option, low, high in RANGES:
        if not low <= module.params[option] <= high:
            module.fail_json(msg='%s: %r is out of range (%d..%d)' % (option, module.params[option], low, high))
    unknown = [kind for kind in module.params['overridden_kinds'] or () if kind not in DEVICE_TAGS]
    if unknown:
        module.fail_json(msg='overridden_kinds: %s %s not a device kind (one of %s)' % (
            ', '.join(repr(kind) for kind in unknown), 'is' if len(unknown) == 1 else 'are',
            ', '.join(sorted(DEVICE_TAGS))))
    if module.params['overridden_kinds'] is not None and state != 'overridden':
        module.fail_json(msg='overridden_kinds: applies only to state=overridden (state is %s)' % state)
    if not module.params['gather_implicit'] and state not in ('gathered', 'parsed'):
        module.fail_json(msg='gather_implicit: applies only to state=gathered or parsed (state is %s)' % state)
    if state in WRITING_STATES:
        try:
            runner.converge()
        finally:  # after exit_json has printed the result: every guest is written by then
            runner.release_host_lock()
    else:
        getattr(runner, state)()
