# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The pure network core: what is kept, what is replaced."""

from __future__ import annotations

from ansible_collections.virtdev.libvirt.plugins.module_utils import _network_spec

POOL = '''<network><name>pool</name><uuid>11111111-2222-3333-4444-555555555555</uuid>
<forward mode='hostdev' managed='yes'><pf dev='enp1s0'/></forward>
<portgroup name='web'><vlan><tag id='10'/></vlan></portgroup><vlan><tag id='42'/></vlan></network>'''


def _wanted(**params):
    return _network_spec.desired(dict({'pf': None, 'interfaces': None, 'bridge': None, 'vlan': None}, **params))


def test_same_kind_keeps_uuid_and_portgroups_and_changes_only_the_managed_parts():
    xml = _network_spec.apply(POOL, _wanted(forward='hostdev', pf='enp2s0', vlan=43))
    assert '11111111-2222-3333-4444-555555555555' in xml and '<portgroup name="web">' in xml
    assert _network_spec.settings_of(xml) == {'forward': 'hostdev', 'pf': 'enp2s0', 'interfaces': [], 'bridge': None,
                                              'vlan': 43}
    assert '<tag id="10"/>' in xml  # the port group's own VLAN is not ours


def test_a_new_kind_keeps_only_name_and_uuid():
    xml = _network_spec.apply(POOL, _wanted(forward='bridge', bridge='br0'))
    assert 'portgroup' not in xml and 'pf' not in xml and '11111111-2222' in xml
    assert _network_spec.settings_of(xml)['bridge'] == 'br0'


def test_render_then_read_back_is_the_wanted_settings():
    for wanted in (_wanted(forward='hostdev', pf='enp1s0', vlan=0), _wanted(forward='passthrough', interfaces=['a', 'b']),
                   _wanted(forward='passthrough', pf='enp1s0'), _wanted(forward='bridge', bridge='br0')):
        rendered = _network_spec.render('n', wanted)
        assert _network_spec.differences(_network_spec.settings_of(rendered), wanted) == {}, rendered


def test_modes_outside_the_table_are_reported_as_they_are():
    assert _network_spec.settings_of('<network><name>d</name><forward mode="nat"/><bridge name="virbr0"/></network>')[
        'forward'] == 'nat'
    assert _network_spec.settings_of('<network><name>i</name></network>')['forward'] == 'isolated'
