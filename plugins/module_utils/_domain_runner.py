# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The runner of virtdev.libvirt.domain: one guest's domain-level settings, its life cycle and autostart.

The module file holds only its options and documentation; the settings themselves are the table in
``_domain_settings``, the skeleton of a new definition is ``_domain_spec`` (docs/architecture.md).
"""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _domain_settings, _domain_spec, _ids, _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils._libvirt import LibvirtFailure

LOCAL_HOST_ROOT = '/'
# a current value changes live only within a maximum that the running guest already has
LIVE_WITHIN = {'current_memory': 'memory', 'current_vcpus': 'vcpus'}


class DomainRunner:
    def __init__(self, module, settings):
        self.module = module
        self.params = module.params
        self.settings = settings          # normalized domain-level settings the user gave
        self.connection = _common.connect(module)
        self.commands = []
        self.was_active = False
        self.before = None                # settings before (option format)
        self.after = None                 # settings after (read back, or predicted in check mode)
        self.summary = None               # the 'domain' return value
        self.waiting = []
        self.restarted = False
        self.written = False
        self._aliases = None

    def do(self, command, func, *args):
        """Record a command and run it unless in check mode."""
        self.commands.append(command)
        if not self.module.check_mode:
            result = func(*args)
            self.written = True
            return result
        return None

    @property
    def aliases(self):
        if self._aliases is None:
            self._aliases = _domain_spec.machine_aliases(self.connection.capabilities())
        return self._aliases

    def host(self):
        """The local host's huge pages, or None when libvirt runs elsewhere (its pages are not ours to see)."""
        if not _common.is_local_uri(self.params['uri']):
            return None
        return _domain_settings.read_host_hugepages(LOCAL_HOST_ROOT)

    def run(self):
        dom = self.connection.find(self.params['name'])  # by name only: a name is never taken for a UUID
        state = self.params['state']
        uuid = self.params['uuid']
        if dom is not None and uuid and self.connection.uuid_of(dom) != uuid.lower():
            self.module.fail_json(msg='uuid: domain %s has UUID %s, not %s; nothing was changed'
                                  % (self.params['name'], self.connection.uuid_of(dom), uuid))
        if state == 'absent':
            return self.absent(dom)
        if dom is None:
            dom = self.create()
            active = False
        else:
            active = self.connection.is_active(dom)
            self.was_active = active
            self.update(dom, active)
        self.ensure_autostart(dom)
        if active and self.waiting and self.params['restart'] == 'if_required' and state != 'shutoff':
            self.stop(dom)
            self.do('start', self.connection.start, dom)
            self.restarted = True
        elif state == 'running' and not active:
            self.do('start', self.connection.start, dom)
            active = True
        elif state == 'shutoff' and active:
            self.stop(dom)
            active = False
        if self.summary is not None:
            self.summary['active'] = active
        return dom

    def refuse(self, problems):
        if problems:
            self.module.fail_json(msg='refused, nothing was changed: %s' % '; '.join(problems), refusals=problems)

    def will_run(self, active):
        """Whether this run may start the guest (what keeps it from starting is refused up front)."""
        if active:
            return self.params['restart'] == 'if_required' and self.params['state'] != 'shutoff'
        return self.params['state'] == 'running'

    def create(self):
        xml = _domain_spec.new_definition(self.params)
        try:
            plan = _domain_settings.plan(xml, self.settings, creating=True)
        except SpecError as exc:
            self.module.fail_json(msg=str(exc))
        self.refuse(_domain_settings.check(plan.tree, set(_domain_settings.TABLE), self.host(),
                                           will_run=self.params['state'] == 'running',
                                           domain_type=self.params['type']))
        self.before = {}
        dom = self.do('define', self.connection.define, plan.new_xml)
        if dom is None:  # check mode: predict what libvirt will keep
            tree = _domain_settings.predicted_after(plan, True, self.params['type'], self.aliases)
            self.ensure_root_ports(None, _xml.to_string(tree))
            self.report(_xml.to_string(tree))
            return None
        self.ensure_root_ports(dom, self.connection.xml(dom))
        readback = self.connection.xml(dom)
        problems = _domain_settings.verify(self.settings, readback, self.aliases)
        if problems:
            self.connection.undefine(dom)
            self.module.fail_json(msg='libvirt did not keep the requested settings, the new domain was removed '
                                      'again: %s' % '; '.join(problems), changed=False)
        self.report(readback)
        return dom

    def update(self, dom, active):
        current_xml = self.connection.xml(dom)
        try:
            plan = _domain_settings.plan(current_xml, self.settings, self.aliases if self.settings.get('machine') else {},
                                         change_firmware=self.params['change_firmware'])
        except SpecError as exc:
            self.module.fail_json(msg=str(exc))
        domain_type = _xml.parse(current_xml).get('type')
        self.refuse(_domain_settings.check(plan.tree, set(self.settings), self.host(), self.will_run(active),
                                           domain_type))
        self.before = plan.before
        if not plan.changed:
            self.report(current_xml)
            return
        live, handled = self.live_calls(dom, plan) if active else ([], set())
        if active:
            self.waiting = _domain_settings.waiting_for_restart(plan, handled)
        if self.module.check_mode:
            self.commands.append('define')
            self.commands.extend(command for command, _call in live)
            self.report(_xml.to_string(_domain_settings.predicted_after(plan, False, domain_type, self.aliases)))
            return
        self.do('define', self.connection.define, plan.new_xml)
        readback = self.connection.xml(dom)
        problems = _domain_settings.verify(self.settings, readback, self.aliases)
        if problems:
            self.connection.define(current_xml)  # leave the domain as we found it rather than half-applied
            self.module.fail_json(msg='libvirt did not keep the requested settings of %s, the definition was '
                                      'restored: %s' % (self.params['name'], '; '.join(problems)),
                                  changed=False, commands=self.commands)
        for command, call in live:
            try:
                self.do(command, call)
            except LibvirtFailure as exc:
                self.module.fail_json(msg='%s: the definition is updated, but the running guest did not take it: %s'
                                      % (command, exc), changed=True, commands=self.commands,
                                      waiting_for_restart=self.waiting)
        self.report(readback)

    def live_calls(self, dom, plan):
        """(command, call) for every changed setting a running guest takes live (the table's live column),
        and the options so handled. The current memory and vCPU count change live only within a maximum
        the running guest already has."""
        calls, handled = [], set()
        before, after = plan.before, plan.after
        for option, _old, new in _domain_settings.live_changes(plan):
            if LIVE_WITHIN.get(option) in plan.changed_options:
                continue
            # libvirt changes a running guest's current memory through its balloon driver only; without a
            # balloon device the call fails, so the new value waits for the next boot (check mode alike)
            if option == 'current_memory' and not _domain_spec.has_balloon(self.connection.xml(dom, inactive=False)):
                self.module.warn('current_memory: the running guest has no memory balloon device, so the new value '
                                 'is written to its definition and takes effect at its next boot')
                continue
            handled.add(option)
            if option == 'current_memory':
                calls.append(('live current_memory', lambda v=new: self.connection.set_memory_live(dom, v * 1024)))
            elif option == 'current_vcpus':
                calls.append(('live current_vcpus', lambda v=new: self.connection.set_vcpus_live(dom, v)))
            elif option in ('title', 'description'):
                calls.append(('live ' + option,
                              lambda o=option, v=new: self.connection.set_metadata_live(dom, o, v)))
            elif option == 'cputune':
                calls.extend(self.pinning_calls(dom, before.get('cputune') or {}, after.get('cputune') or {}))
        return calls, handled

    def pinning_calls(self, dom, old, new):
        host_cpus = self.connection.host_cpus()

        def mapped(cpuset, where):
            try:
                return _domain_settings.cpumap(cpuset, host_cpus)
            except SpecError as exc:
                self.module.fail_json(msg='%s: %s' % (where, str(exc).split(': ', 1)[1]))

        calls = []
        for listed, key, pin in (('vcpupin', 'vcpu', self.connection.pin_vcpu_live),
                                 ('iothreadpin', 'iothread', self.connection.pin_iothread_live)):
            was = {item[key]: item.get('cpuset') for item in old.get(listed) or []}
            for item in new.get(listed) or []:
                if was.get(item[key]) != item.get('cpuset') and item.get('cpuset'):
                    cpus = mapped(item['cpuset'], 'cputune.%s[%s=%s]' % (listed, key, item[key]))
                    calls.append(('live cputune.%s[%s=%s]' % (listed, key, item[key]),
                                  lambda k=item[key], m=cpus, p=pin: p(dom, k, m)))
        if new.get('emulatorpin') and new.get('emulatorpin') != old.get('emulatorpin'):
            cpus = mapped(new['emulatorpin'], 'cputune.emulatorpin')
            calls.append(('live cputune.emulatorpin', lambda m=cpus: self.connection.pin_emulator_live(dom, m)))
        return calls

    def report(self, xml):
        settings, _unmanaged = _domain_settings.gather(xml)
        self.after = settings
        self.summary = _domain_spec.settings_of(xml)

    def ensure_autostart(self, dom):
        wanted = self.params['autostart']
        if wanted is None:
            return
        current = self.connection.autostart(dom) if dom is not None else False
        if current != wanted:
            if dom is None:  # check mode of a new domain
                self.commands.append('autostart')
            else:
                self.do('autostart', self.connection.set_autostart, dom, wanted)
        if self.after is not None:
            self.after['autostart'] = wanted
        if self.before:  # an existing domain (a new one had nothing before)
            self.before['autostart'] = current

    def ensure_root_ports(self, dom, xml):
        """Add pcie-root-ports until pcie_root_ports of them are empty (two rounds at most: libvirt may
        move a device onto a new port when it re-addresses)."""
        wanted = self.params['pcie_root_ports']
        for _round in range(2):
            missing = wanted - _domain_spec.free_root_ports(xml)
            if missing <= 0:
                return
            xml = _domain_spec.with_root_ports(xml, missing)
            if self.do('define', self.connection.define, xml) is None:
                return  # check mode: one define predicted
            xml = self.connection.xml(dom)
        if _domain_spec.free_root_ports(xml) < wanted:
            self.module.fail_json(msg='pcie_root_ports: libvirt kept only %d free ports of %d asked'
                                  % (_domain_spec.free_root_ports(xml), wanted))

    def stop(self, dom):
        self.commands.append('shutdown')
        if self.module.check_mode:
            return
        self.written = True
        if not self.connection.shutdown(dom, self.params['shutdown_timeout']):
            self.commands.append('destroy')
            self.connection.destroy(dom)

    def absent(self, dom):
        if dom is None:
            return None
        self.before = _domain_settings.gather(self.connection.xml(dom))[0]
        if self.connection.is_active(dom):
            self.do('destroy', self.connection.destroy, dom)
        self.do('undefine', self.connection.undefine, dom)
        return None

    def gathered(self):
        dom = self.connection.lookup(self.params['name'])
        settings, unmanaged = _domain_settings.gather(self.connection.xml(dom))
        settings['autostart'] = self.connection.autostart(dom)
        return settings, unmanaged


def run(module):
    """The whole task: the module's main() after AnsibleModule is made."""
    _common.check_strings(module)  # NUL, control characters, lone surrogates: refused naming the option
    params = module.params
    for option, low, high in (('pcie_root_ports', 0, 30), ('shutdown_timeout', 0, 86400)):
        if params[option] is not None and not low <= params[option] <= high:
            module.fail_json(msg='%s: %r is out of range (%d..%d)' % (option, params[option], low, high))
    if params['uuid']:
        try:
            params['uuid'] = _ids.parse_uuid(params['uuid'], 'uuid')
        except _ids.IdError as exc:
            module.fail_json(msg=str(exc))
    if not params['name'] or '/' in params['name']:
        module.fail_json(msg='name: %r is not a valid domain name (empty or contains "/")' % params['name'])
    try:
        settings = _domain_settings.normalize(params)
    except SpecError as exc:
        module.fail_json(msg=str(exc))
    _common.require_libraries(module, need_libvirt=params['state'] != 'parsed')
    if params['state'] == 'parsed':
        try:
            gathered, unmanaged = _domain_settings.gather(params['running_config'])
        except _xml.XMLInputError as exc:
            module.fail_json(msg='running_config: %s' % exc)
        module.exit_json(changed=False, parsed=gathered, unmanaged=unmanaged)

    runner = DomainRunner(module, settings)
    if params['state'] == 'gathered':
        try:
            gathered, unmanaged = runner.gathered()
        except LibvirtFailure as exc:
            module.fail_json(msg=str(exc))
        module.exit_json(changed=False, gathered=gathered, unmanaged=unmanaged)
    try:
        runner.run()
    except LibvirtFailure as exc:
        module.fail_json(msg=str(exc), changed=runner.written, commands=runner.commands)
    result = {'changed': bool(runner.commands), 'commands': runner.commands,
              'restart_required': bool(runner.waiting) and not runner.restarted,
              'waiting_for_restart': [] if runner.restarted else runner.waiting, 'restarted': runner.restarted}
    if runner.summary is not None:
        result['domain'] = runner.summary
    if runner.after is not None and params['state'] != 'absent':
        result['settings'] = runner.after
    if module._diff:
        result['diff'] = {'before': _domain_settings.flatten(runner.before or {}),
                          'after': _domain_settings.flatten(runner.after or {}) if params['state'] != 'absent' else {}}
    module.exit_json(**result)
