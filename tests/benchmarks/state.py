# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Put the benchmark guests into a known state (not timed): define the given XML of each guest.

    python state.py URI DEFINITIONS.json     # {guest: domain XML}

A separate process, because one process holds an embedded driver root for its whole life.
"""

from __future__ import annotations

import json
import sys

import libvirt

from floor import start_event_loop  # pylint: disable=import-error


def main(argv):
    uri, path = argv
    with open(path, encoding='utf-8') as handle:
        definitions = json.load(handle)
    start_event_loop()
    conn = libvirt.open(uri)
    for xml in definitions.values():
        conn.defineXML(xml)
    print(len(definitions))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
