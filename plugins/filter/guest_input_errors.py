# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
name: guest_input_errors
short_description: Name each wrong entry of a guests list by index, guest name, option and value
version_added: 0.1.0
description:
  - Checks a C(guests) list (the P(virtdev.libvirt.guest#role) role's variable, the shape of a host_vars file)
    against the role's argument spec of one guest - types as ansible converts them, choices, required options,
    unknown options, nested lists such as C(vfs) and C(mdevs) - and returns one message per error, each naming
    the entry by its index and guest name, the option (with the index in a nested list) and the value.
  - Names unknown options (typos, C(memroy)) as C(unknown option), with the closest known one, also inside
    C(disks) and C(networks) entries, and a guest name given to several entries with the index of each
    (C(guests[0] and guests[3]) for a name listed twice).
  - ansible-core's own argument validation names the option and its list but not the entry
    (C(found in 'guests -> vfs')), and it runs as the role's first task; call this filter before the role
    (the C(guests) playbook does) to name the entry.
author:
  - virtdev.libvirt maintainers (@virtdev)
options:
  _input:
    description: The guests.
    type: raw
    required: true
  options:
    description:
      - The C(options) of a C(guests) variable's entry; by default those of the P(virtdev.libvirt.guest#role)
        role (its C(meta/argument_specs.yml)). A job template with its own spec of the guests passes that.
    type: dict
'''

EXAMPLES = r'''
- name: Name the wrong guest entries before the role's own check
  ansible.builtin.assert:
    that: errors | length == 0
    fail_msg: "{{ errors | join('; ') }}"
    quiet: true
  vars:
    errors: "{{ guests | virtdev.libvirt.guest_input_errors }}"
'''

RETURN = r'''
_value:
  description: >-
    One message per error (empty when the list is right), each starting with the entry's index and guest name,
    for example guests[1] (nfv01).vfs[0].vlan: 'ten' (str) is not a valid int.
  type: list
  elements: str
'''

from ansible_collections.virtdev.libvirt.plugins.filter.guest_plan import guest_input_errors


class FilterModule:
    def filters(self):
        return {'guest_input_errors': guest_input_errors}
