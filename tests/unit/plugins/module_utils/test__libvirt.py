# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The libvirt adapter against libvirt's own test driver (test:///default, in-process, no daemon): lookups,
explained failures, and the call counts behind ``libvirt_calls`` (which must not under-report)."""

from __future__ import annotations

import ast
import inspect
import uuid

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _libvirt

pytestmark = pytest.mark.skipif(not _libvirt.HAS_LIBVIRT, reason='libvirt-python is not installed')

URI = 'test:///default'


def guest_xml(name):
    return ("<domain type='test'><name>%s</name><uuid>%s</uuid><memory unit='KiB'>65536</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64'>hvm</type></os><devices/></domain>" % (name, str(uuid.uuid4()).upper()))


@pytest.fixture
def connection():
    conn = _libvirt.Connection(URI)
    yield conn
    conn.close()


def test_lookups_by_name_and_uuid_and_their_failures(connection):
    dom = connection.lookup('test')                     # the test driver's own running guest
    assert connection.name_of(dom) == 'test'
    found = connection.lookup_uuid(connection.uuid_of(dom).upper())
    assert connection.name_of(found) == 'test' and connection.uuid_of(found) == connection.uuid_of(dom).lower()
    assert connection.find('no-such-guest') is None
    assert connection.find_uuid('00000000-0000-0000-0000-000000000001') is None
    with pytest.raises(_libvirt.DomainNotFound, match="domain 'no-such-guest' is not defined on test:///default"):
        connection.lookup('no-such-guest')
    assert connection.calls == {'lookup': 5}
    assert not connection.lost


def test_reads_are_counted_and_state_is_named(connection):
    dom = connection.lookup('test')
    assert '<name>test</name>' in connection.xml(dom) and "id='1'" in connection.xml(dom, inactive=False)
    assert connection.is_active(dom) and connection.state(dom) == 'running'
    assert connection.calls == {'lookup': 1, 'xml': 2, 'is_active': 1, 'state': 1}


def test_domain_definitions_reads_every_domain_once_each_way(connection):
    name = 'adapter-%s' % uuid.uuid4().hex[:8]
    dom = connection.define(guest_xml(name))           # defined, not running: no live XML
    try:
        before = dict(connection.calls)
        found = {entry['name']: entry for entry in connection.domain_definitions()}
        assert found[name]['live_xml'] is None and '<name>%s</name>' % name in found[name]['config_xml']
        assert "id='1'" in found['test']['live_xml'] and found['test']['config_xml'] is not None
        spent = {key: count - before.get(key, 0) for key, count in connection.calls.items()}
        domains = len(found)
        assert spent == {'define': 0, 'list': 1, 'is_active': domains, 'is_persistent': domains,
                         'xml': domains + sum(entry['live_xml'] is not None for entry in found.values())}
    finally:
        dom.undefine()   # the test driver refuses the NVRAM flag of Connection.undefine


def test_domain_definitions_leaves_out_a_domain_undefined_meanwhile_only_when_asked(connection, monkeypatch):
    name = 'adapter-%s' % uuid.uuid4().hex[:8]
    dom = connection.define(guest_xml(name))
    listed = connection.domains()                       # the list is read, then the domain goes away
    dom.undefine()
    monkeypatch.setattr(connection, 'domains', lambda: listed)
    problems = []
    found = [entry['name'] for entry in connection.domain_definitions(problems)]
    assert name not in found and 'test' in found
    assert len(problems) == 1 and 'undefined meanwhile' in problems[0]
    with pytest.raises(_libvirt.LibvirtFailure):
        connection.domain_definitions()


def test_writes_are_counted_as_writes_and_failures_are_explained(connection):
    name = 'adapter-%s' % uuid.uuid4().hex[:8]
    dom = connection.define(guest_xml(name))
    connection.start(dom)
    assert connection.is_active(dom)
    connection.destroy(dom)
    with pytest.raises(_libvirt.LibvirtFailure, match='libvirt failed to stop domain %s on test:///default' % name):
        connection.destroy(dom)                         # not running any more: libvirt refuses, we explain
    with pytest.raises(_libvirt.LibvirtFailure, match='undefine domain %s on test:///default: unsupported flags'
                       % name):
        connection.undefine(dom)                        # the test driver has no NVRAM: its own words are kept
    dom.undefine()
    assert connection.find(name) is None
    writes = {key: count for key, count in connection.calls.items() if key in _libvirt.WRITE_CALLS}
    assert writes == {'define': 1, 'start': 1, 'destroy': 2, 'undefine': 1}


def test_a_bad_definition_is_refused_with_the_schema_message(connection):
    with pytest.raises(_libvirt.LibvirtFailure, match='libvirt failed to define the domain'):
        connection.define("<domain type='test'><name>x</name><devices><nonsense/></devices></domain>")
    assert connection.calls == {'define': 1}


def _libvirt_calls(function):
    """Calls in ``function`` that go to libvirt: methods of the connection or of a handle it was given
    (a domain, network or node device), other than reading the handle's own name or UUID (or appending to a list given to the method)."""
    local = {'name', 'UUIDString', 'append', 'get_error_code', 'get_error_message', 'get_error_domain'}
    params = {arg.arg for arg in function.args.args[1:]}
    for node in ast.walk(function):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        if node.func.attr in local:
            continue
        if isinstance(owner, ast.Attribute) and owner.attr == '_conn' or \
                isinstance(owner, ast.Name) and owner.id in params:
            yield node.func.attr


def test_every_libvirt_call_of_the_adapter_is_counted():
    """A call made directly (not handed to ``_call``) needs a ``_count`` or ``_lookup`` in the same method;
    ``close`` is the only exception (after the result is made)."""
    tree = ast.parse(inspect.getsource(_libvirt))
    adapter = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == 'Connection')
    uncounted = []
    for method in (node for node in adapter.body if isinstance(node, ast.FunctionDef)):
        direct = set(_libvirt_calls(method))
        counted = any(isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                      and node.func.attr in ('_count', '_call', '_lookup') for node in ast.walk(method))
        if direct and not counted and method.name != 'close':
            uncounted.append('%s: %s' % (method.name, ', '.join(sorted(direct))))
    assert uncounted == []


class _Refusal:
    """What libvirt raises (its error as data): code, domain and message."""

    def __init__(self, message, code):
        self.message, self.code = message, code

    def get_error_code(self):
        return self.code

    def get_error_domain(self):
        return 0

    def get_error_message(self):
        return self.message


def test_a_helper_daemon_missing_at_start_is_not_called_a_failed_connection():
    """Trial 7: starting a guest on qemu:///embed without virtlogd said 'cannot connect ... is libvirtd running?'."""
    socket = "Failed to connect socket to '/run/libvirt/virtlogd-sock': No such file or directory"
    started = _libvirt._explain(_Refusal(socket, 38), 'qemu:///embed?root=/r', 'start domain g')
    assert started.startswith('libvirt failed to start domain g on qemu:///embed?root=/r') and 'stdio_handler' in started
    assert 'libvirtd running' not in started
    connecting = _libvirt._explain(_Refusal("Failed to connect socket to '/run/libvirt/libvirt-sock'", 38),
                                   'qemu:///system', 'connect')
    assert connecting.startswith('cannot connect to libvirt at qemu:///system') and 'libvirtd running' in connecting
