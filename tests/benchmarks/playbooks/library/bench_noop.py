# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A module that does nothing with the manifest it is given: what Ansible itself spends shipping a manifest to
a module and its result back (tests/benchmarks, the baseline of "our own work")."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec={'uri': {'type': 'str'}, 'host_checks': {'type': 'raw'},
                                          'domains': {'type': 'list', 'elements': 'dict'}},
                           supports_check_mode=True)
    module.exit_json(changed=False)


if __name__ == '__main__':
    main()
