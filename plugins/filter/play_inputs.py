# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r'''
name: play_inputs
short_description: A playbook's inputs with the defaults of its argument spec
version_added: 0.1.0
description:
  - Picks the options of a play argument spec (the C(options) of a C(<playbook>.meta.yml) entry) from the
    host's variables and returns them converted to their types, with the spec's defaults filled in, also for
    the suboptions of lists of dictionaries. The spec is the one source of a playbook's defaults.
  - Check the inputs first with M(ansible.builtin.validate_argument_spec), which names the wrong variable;
    this filter fails on the same errors with a less friendly message.
author:
  - virtdev.libvirt maintainers (@virtdev)
options:
  _input:
    description: The argument spec's options.
    type: dict
    required: true
  variables:
    description: The host's variables, usually C(hostvars[inventory_hostname]).
    type: dict
    required: true
'''

EXAMPLES = r'''
- name: Use the inputs of playbooks/host_report.yml
  ansible.builtin.debug:
    msg: "{{ (spec | virtdev.libvirt.play_inputs(hostvars[inventory_hostname])).host_report_formats }}"
  vars:
    spec: "{{ (lookup('ansible.builtin.file', 'host_report.meta.yml') | from_yaml).argument_specs.host_report.options }}"
'''

RETURN = r'''
_value:
  description: Every option of the spec, set to the host's value or the spec's default (V(null) without either).
  type: dict
'''

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator


def play_inputs(options, variables):
    given = {name: variables[name] for name in options if name in variables}
    result = ArgumentSpecValidator(options).validate(given)
    if result.error_messages:
        raise AnsibleFilterError('play_inputs: %s' % '; '.join(result.error_messages))
    return result.validated_parameters


class FilterModule:
    def filters(self):
        return {'play_inputs': play_inputs}
