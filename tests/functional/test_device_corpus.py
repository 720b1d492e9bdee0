# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every guest of the corpus (tests/functional/device_corpus.py: virt-install's guests generated now, plus
hand-written ones covering libvirt's device elements) round-trips through domain_devices on a real QEMU
driver: it defines, ``gathered`` returns its devices typed (the share is reported, >= 95% overall),
``replaced`` and ``overridden`` with the gathered list change nothing, adding one device changes only that
device (the rest of the definition byte for byte), and check mode predicts each real run exactly.

All guests share one private libvirtd and each state runs once over all of them (``domains``)."""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from lxml import etree

import device_corpus  # pylint: disable=import-error

TYPED_SHARE_FLOOR = 0.95
WORKERS = 4


def _virsh(uri, *args, stdin=None):
    proc = subprocess.run(['virsh', '-q', '-c', uri] + list(args), input=stdin, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, 'virsh %s: %s' % (' '.join(args), proc.stderr.strip())
    return proc.stdout


@pytest.fixture(scope='module')
def corpus(libvirtd_uri, tmp_path_factory):
    """{name: inactive XML} of every corpus guest, defined on the session's libvirtd (undefined afterwards)."""
    directory = str(tmp_path_factory.mktemp('corpus'))
    image = directory + '/disk.qcow2'
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', image, '16M'], check=True)
    # the first virt-install makes the storage pool of the directory; the others may then run side by side
    # (each is mostly its own start-up)
    (first, first_args), *others = device_corpus.VIRT_INSTALL.items()
    definitions = {first: device_corpus.virt_install_xml(libvirtd_uri, first, first_args, image, directory)}
    with ThreadPoolExecutor(WORKERS) as pool:
        generated = {name: pool.submit(device_corpus.virt_install_xml, libvirtd_uri, name, args, image, directory)
                     for name, args in others}
        definitions.update((name, future.result()) for name, future in generated.items())
    for name, entry in device_corpus.HAND_WRITTEN.items():
        definitions[name] = device_corpus.hand_written_xml(name, entry, image, directory)
    try:
        for name, xml in definitions.items():
            path = '%s/%s.xml' % (directory, name)
            with open(path, 'w', encoding='utf-8') as handle:
                handle.write(xml)
            _virsh(libvirtd_uri, 'define', path)
            # defined again as libvirt wrote it: libvirt renumbers some things on a second define (a virtio
            # console after a serial one becomes port 1), which is libvirt's doing, not a change of a module run
            _virsh(libvirtd_uri, 'define', '/dev/stdin', stdin=_virsh(libvirtd_uri, 'dumpxml', '--inactive', name))
        yield {name: _virsh(libvirtd_uri, 'dumpxml', '--inactive', name) for name in definitions}
    finally:
        for name in definitions:
            subprocess.run(['virsh', '-q', '-c', libvirtd_uri, 'undefine', '--nvram', name], capture_output=True,
                           check=False)


def _run_all(run_module, uri, state, configs, check_mode):
    result = run_module('domain_devices', {
        'uri': uri, 'state': state, 'host_checks': False, 'result_detail': 'full',  # commands of unchanged guests too
        'domains': [{'domain': name, 'config': config} for name, config in configs.items()]},
        check_mode=check_mode)
    assert result['rc'] == 0, result.get('msg')
    return result


# Devices that need no new controller or PCI bus (libvirt would add those by itself, changing more than the
# device): the first one the guest lacks is added. Every option libvirt fills in is given, so that check
# mode's ``after`` is what libvirt keeps. A SATA target's letter picks the controller (six units each):
# sda..sdf are on the SATA controller q35 has.
EXTRA_DEVICES = tuple(
    ('q35', {'kind': 'disk', 'device': 'cdrom', 'target': 'sd' + letter, 'bus': 'sata', 'format': 'raw',
             'readonly': True}) for letter in 'fedcba') + (
    ('pc', {'kind': 'panic', 'model': 'isa'}),
    ('pc', {'kind': 'rng', 'model': 'virtio', 'backend': 'builtin'}),
)


def _one_more_device(xml, gathered):
    """(spec, XPath of the element) of a device to add to the guest."""
    machine = etree.fromstring(xml.encode()).find('os/type').get('machine')
    for family, spec in EXTRA_DEVICES:
        taken = spec['kind'] == 'disk' and any(item.get('target') == spec['target'] for item in gathered)
        if family in machine and not taken and \
                not any(all(item.get(k) == v for k, v in spec.items()) for item in gathered):
            path = {'disk': "devices/disk[target/@dev='%s']" % spec.get('target'), 'panic': "devices/panic[@model='isa']",
                    'rng': "devices/rng[backend/@model='builtin']"}[spec['kind']]
            return spec, path
    raise AssertionError('no device to add to a %s guest' % machine)


def _without(xml, path):
    """The definition as bytes without the element at ``path`` (what must be unchanged by adding it), without
    the indentation libvirt gives it."""
    tree = etree.fromstring(xml.encode(), etree.XMLParser(remove_blank_text=True))
    for element in tree.xpath(path):
        element.getparent().remove(element)
    return etree.tostring(tree)


def _as_set(items):
    """A device list without its order (libvirt sorts devices by type when it stores them)."""
    return sorted(json.dumps(item, sort_keys=True) for item in items or ())


def test_every_corpus_guest_round_trips_typed(corpus, libvirtd_uri, run_module, capsys):
    started = time.monotonic()
    gathered, shares = {}, {}
    with ThreadPoolExecutor(WORKERS) as pool:
        results = {name: pool.submit(run_module, 'domain_devices', {'uri': libvirtd_uri, 'domain': name,
                                                                    'state': 'gathered'})
                   for name in corpus}
    for name, future in results.items():
        result = future.result()
        assert result['rc'] == 0, result.get('msg')
        gathered[name] = result['gathered']
        typed = [item for item in result['gathered'] if item['kind'] != 'xml']
        shares[name] = (len(typed), len(result['gathered']))
    typed_total = sum(typed for typed, _all in shares.values())
    all_total = sum(every for _typed, every in shares.values())
    with capsys.disabled():
        print('\ntyped share per corpus guest (typed/all devices):')
        for name, (typed, every) in shares.items():
            print('  %-28s %3d/%3d' % (name, typed, every))
        print('  %-28s %3d/%3d = %.1f%%' % ('total', typed_total, all_total, 100.0 * typed_total / all_total))
    assert typed_total / all_total >= TYPED_SHARE_FLOOR, shares

    # the gathered list fed back: no change under replaced and overridden, predicted so in check mode
    for state in ('replaced', 'overridden'):
        for check_mode in (True, False):
            result = _run_all(run_module, libvirtd_uri, state, gathered, check_mode)
            changed = {entry['domain']: entry['commands'] for entry in result['results'] if entry['changed']}
            assert changed == {}, (state, check_mode, changed)
    for name, xml in corpus.items():
        assert _virsh(libvirtd_uri, 'dumpxml', '--inactive', name) == xml, name

    # one device more: only that device changes; check mode predicts the real run
    added = {name: _one_more_device(xml, gathered[name]) for name, xml in corpus.items()}
    configs = {name: gathered[name] + [spec] for name, (spec, _path) in added.items()}
    for state in ('merged', 'overridden'):
        before = {name: _virsh(libvirtd_uri, 'dumpxml', '--inactive', name) for name in corpus}
        predicted = _run_all(run_module, libvirtd_uri, state, configs, check_mode=True)
        for name, xml in before.items():
            assert _virsh(libvirtd_uri, 'dumpxml', '--inactive', name) == xml, name   # check mode wrote nothing
        done = _run_all(run_module, libvirtd_uri, state, configs, check_mode=False)
        for guessed, real in zip(predicted['results'], done['results']):
            assert (guessed['domain'], guessed['commands']) == (real['domain'], real['commands'])
            assert _as_set(guessed.get('after')) == _as_set(real.get('after')), (
                real['domain'], set(_as_set(guessed.get('after'))) ^ set(_as_set(real.get('after'))))
        for entry in done['results']:
            name = entry['domain']
            spec, path = added[name]
            if state == 'merged':
                assert [(c['op'], c['kind']) for c in entry['commands']] == [('attach', spec['kind'])], entry
            else:   # it is there since the merged run
                assert entry['commands'] == [], (name, entry['commands'])
            now = _virsh(libvirtd_uri, 'dumpxml', '--inactive', name)
            assert etree.fromstring(now.encode()).xpath(path), name
            assert _without(now, path) == _without(corpus[name], path), name
    # and out again: overridden with the gathered list removes exactly the added device
    done = _run_all(run_module, libvirtd_uri, 'overridden', gathered, check_mode=False)
    for entry in done['results']:
        assert [(c['op'], c['kind']) for c in entry['commands']] == [('detach', added[entry['domain']][0]['kind'])], \
            entry
    for name, xml in corpus.items():
        assert _virsh(libvirtd_uri, 'dumpxml', '--inactive', name) == xml, name
    with capsys.disabled():
        print('corpus of %d guests, %d devices: %.1f s' % (len(corpus), all_total, time.monotonic() - started))


# Display declarations whose values libvirt ties together or fills in when it stores them (a fixed port
# under autoport, port -1 without it, SPICE's listen type none): each is written once and then converges.
GRAPHICS_STARTS = {
    'none': '',
    'auto': "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>"
            "<listen type='address' address='127.0.0.1'/></graphics>",
    'fixed': "<graphics type='vnc' port='5900' autoport='no'/>",
}
GRAPHICS_SPECS = [
    {'kind': 'graphics', 'type': 'vnc'},
    {'kind': 'graphics', 'type': 'vnc', 'listen': '0.0.0.0'},
    {'kind': 'graphics', 'type': 'vnc', 'port': 5901, 'autoport': False},
    {'kind': 'graphics', 'type': 'vnc', 'port': 5902},
    {'kind': 'graphics', 'type': 'vnc', 'port': -1},
    {'kind': 'graphics', 'type': 'vnc', 'autoport': True},
    {'kind': 'graphics', 'type': 'vnc', 'password': 'abc'},
    {'kind': 'graphics', 'type': 'spice', 'image_compression': 'off'},
    {'kind': 'graphics', 'type': 'spice', 'listen_type': 'none'},
]


def test_graphics_declarations_converge_after_a_real_define(libvirtd_uri, run_module, tmp_path):
    guests = {}
    for start, devices in GRAPHICS_STARTS.items():
        for number, spec in enumerate(GRAPHICS_SPECS):
            name = 'gfx-%s-%d' % (start, number)
            guests[name] = [spec]
            path = tmp_path / (name + '.xml')
            path.write_text(device_corpus.hand_written_xml(name, ('pc', devices), '', ''), encoding='utf-8')
            _virsh(libvirtd_uri, 'define', str(path))
    try:
        for state in ('merged', 'replaced'):
            predicted = _run_all(run_module, libvirtd_uri, state, guests, check_mode=True)
            first = _run_all(run_module, libvirtd_uri, state, guests, check_mode=False)
            assert [entry['commands'] for entry in predicted['results']] == \
                [entry['commands'] for entry in first['results']]
            again = _run_all(run_module, libvirtd_uri, state, guests, check_mode=False)
            changed = {entry['domain']: entry['commands'] for entry in again['results'] if entry['changed']}
            assert changed == {}, (state, changed)
    finally:
        for name in guests:
            subprocess.run(['virsh', '-q', '-c', libvirtd_uri, 'undefine', name], capture_output=True, check=False)


# Limits checked up front (the kind table's limits column): each spec is refused naming the option, and the
# same device as XML is what libvirt's QEMU driver refuses at define time.
LIMITS = [
    ({'kind': 'graphics', 'type': 'vnc', 'password': 'abcdefghij'}, 'password',
     "<graphics type='vnc' passwd='abcdefghij'/>"),
    ({'kind': 'serial', 'type': 'pty', 'target_type': 'isa-serial', 'port': 4}, 'port',
     "<serial type='pty'><target type='isa-serial' port='4'/></serial>"),
    ({'kind': 'controller', 'type': 'usb', 'index': 0, 'model': 'qemu-xhci', 'ports': 16}, 'ports',
     "<controller type='usb' index='0' model='qemu-xhci' ports='16'/>"),
    ({'kind': 'interface', 'source': {'network': 'default'}, 'model': 'virtio', 'rx_queue_size': 384},
     'rx_queue_size', "<interface type='network'><source network='default'/><model type='virtio'/>"
                      "<driver rx_queue_size='384'/></interface>"),
    ({'kind': 'video', 'model': 'vga', 'heads': 2}, 'heads', "<video><model type='vga' heads='2'/></video>"),
    ({'kind': 'disk', 'target': 'hde', 'device': 'cdrom'}, 'target',
     "<disk type='file' device='cdrom'><target dev='hde' bus='ide'/></disk>"),
    ({'kind': 'disk', 'target': 'fdc', 'device': 'floppy'}, 'target',
     "<disk type='file' device='floppy'><target dev='fdc' bus='fdc'/></disk>"),
    ({'kind': 'interface', 'source': {'network': 'default'}, 'mac': '01:54:00:00:00:01'}, 'mac',
     "<interface type='network'><mac address='01:54:00:00:00:01'/><source network='default'/></interface>"),
    ({'kind': 'controller', 'type': 'pci', 'index': 300, 'model': 'pci-bridge'}, 'index',
     "<controller type='pci' index='300' model='pci-bridge'/>"),
    ({'kind': 'graphics', 'type': 'vnc', 'port': 5901, 'autoport': True}, 'port', None),   # libvirt drops the port
]


def test_limits_libvirt_enforces_are_refused_up_front(libvirtd_uri, run_module, tmp_path):
    name = 'limits'
    path = tmp_path / 'limits.xml'
    for _spec, _option, xml in LIMITS:
        if xml is None:
            continue
        path.write_text(device_corpus.hand_written_xml(name, ('pc', xml), '', ''), encoding='utf-8')
        proc = subprocess.run(['virsh', '-q', '-c', libvirtd_uri, 'define', str(path)], capture_output=True,
                              text=True, check=False)
        assert proc.returncode != 0, 'libvirt took %s' % xml   # the limit is libvirt's own
    path.write_text(device_corpus.hand_written_xml(name, ('pc', ''), '', ''), encoding='utf-8')
    _virsh(libvirtd_uri, 'define', str(path))
    try:
        before = _virsh(libvirtd_uri, 'dumpxml', '--inactive', name)
        for spec, option, _xml in LIMITS:
            config = [{'kind': 'rng', 'backend': 'builtin'}, spec]
            result = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'config': config})
            assert result.get('failed') and result['msg'].startswith('config[1].%s: ' % option), result.get('msg')
            assert '\n' not in result['msg'] and len(result['msg']) < 200, result['msg']
            assert 'abcdefghij' not in json.dumps(result)   # a secret is named, never shown
        assert _virsh(libvirtd_uri, 'dumpxml', '--inactive', name) == before
    finally:
        _virsh(libvirtd_uri, 'undefine', name)


@pytest.mark.parametrize('name', ['fedora-q35-uefi-vnc', 'channels-consoles'])
def test_gathered_without_implicit_devices_is_shorter_and_still_converges(name, corpus, libvirtd_uri, run_module):
    args = {'uri': libvirtd_uri, 'domain': name, 'state': 'gathered'}
    everything = run_module('domain_devices', args)['gathered']
    short = run_module('domain_devices', dict(args, gather_implicit=False))['gathered']
    assert [item for item in everything if item not in short] and all(item in everything for item in short)
    assert not [item for item in short if item['kind'] == 'controller' and item.get('type') == 'pci']
    for check_mode in (True, False):
        result = run_module('domain_devices', {'uri': libvirtd_uri, 'domain': name, 'state': 'overridden',
                                               'config': short, 'host_checks': False}, check_mode=check_mode)
        assert result['rc'] == 0 and result['changed'] is False, result.get('commands')
        assert len(result['implicit']) == len(everything) - len(short)
    assert _virsh(libvirtd_uri, 'dumpxml', '--inactive', name) == corpus[name]
    refused = run_module('domain_devices', dict(args, state='merged', config=short, gather_implicit=False))
    assert refused['failed'] and refused['msg'].startswith('gather_implicit: applies only to state=gathered')
