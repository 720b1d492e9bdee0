# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Bad input for every kind of the catalog, derived from the table itself, and table invariants."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _device_engine as engine
from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_fields import Integer, Source, SpecError
from ansible_collections.virtdev.libvirt.plugins.module_utils._device_kinds import all_kinds, device_argument_spec

KINDS = list(all_kinds())
ALL_OPTIONS = set(device_argument_spec())


def _cases():
    for kind in KINDS:
        base = dict(kind.example)
        for option, field in kind.fields.items():
            here = '%s.%s' % (kind.label, option)
            if field.choices and option != 'type':
                yield here + ' unknown choice', kind, dict(base, **{option: 'no-such-' + option}), \
                    "config[0].%s: 'no-such-%s' is not one of" % (option, option)
            if isinstance(field, Integer):
                too_big = (field.maximum or 0) + 1
                yield here + ' out of range', kind, dict(base, **{option: too_big}), \
                    'config[0].%s: %r is out of range' % (option, too_big)
                yield here + ' not a number', kind, dict(base, **{option: 'many'}), \
                    "config[0].%s: 'many' is not an integer" % option
            if isinstance(field, Source) and len(field.variants) > 1:
                first, second = list(field.variants)[:2]
                yield here + ' conflicting', kind, dict(base, **{option: {first: 'a', second: 'b'}}), \
                    'config[0].source: '
        foreign = sorted(ALL_OPTIONS - set(kind.fields) - {'kind', 'xml', 'class'})[0]
        yield kind.label + ' foreign option', kind, dict(base, **{foreign: 'x'}), \
            'config[0]: option(s) %s do not belong to %s' % (foreign, kind.label)


CASES = list(_cases())


@pytest.mark.parametrize('spec, message', [case[2:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_per_kind_names_field_and_value(spec, message):
    with pytest.raises(SpecError) as info:
        engine.declare([spec], 'guest')
    assert message in str(info.value)


def test_the_cases_cover_every_kind():
    assert {case[1].label for case in CASES} == {kind.label for kind in KINDS}


@pytest.mark.parametrize('kind', KINDS, ids=[kind.label for kind in KINDS])
def test_example_renders_and_reads_back_losslessly(kind):
    (item,) = engine.declare([kind.example], 'guest')
    assert kind.lossless(item.element)
    parsed = kind.parse(item.element)
    for option, value in item.spec.items():
        if not kind.fields.get(option) or not kind.fields[option].secret:
            assert parsed.get(option) == value, (option, parsed)
    assert engine.plan(_domain(item.element), engine.declare([kind.example], 'guest'), 'replaced').changed is False


def _domain(element):
    domain = _xml.parse("<domain type='qemu'><name>guest</name><devices/></domain>")
    domain.find('devices').append(element)
    return _xml.to_string(domain)


def test_hostdev_options_belong_to_their_type():
    with pytest.raises(SpecError, match='option\\(s\\) vendor do not belong to hostdev type=pci'):
        engine.declare([{'kind': 'hostdev', 'address': '0000:01:00.0', 'vendor': '0x8086'}], 'g')
    with pytest.raises(SpecError, match="config\\[0\\].type: 'pcie' is not one of: pci, usb, mdev, scsi"):
        engine.declare([{'kind': 'hostdev', 'type': 'pcie', 'address': '0000:01:00.0'}], 'g')
    with pytest.raises(SpecError, match="config\\[0\\].address: '1:2:3' is not valid"):
        engine.declare([{'kind': 'hostdev', 'type': 'usb', 'address': '1:2:3'}], 'g')


def test_vsock_cid_and_usb_ids():
    with pytest.raises(SpecError, match="config\\[0\\].cid: 2 is not 'auto'"):
        engine.declare([{'kind': 'vsock', 'cid': 2}], 'g')
    (usb,) = engine.declare([{'kind': 'hostdev', 'type': 'usb', 'vendor': '46D', 'product': '0xC52B'}], 'g')
    assert (usb.spec['vendor'], usb.spec['product']) == ('0x046d', '0xc52b')
