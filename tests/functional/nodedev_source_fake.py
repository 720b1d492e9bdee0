# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run a module with libvirt's node device documents served from a JSON file: the mocked DATA SOURCE only.

    python nodedev_source_fake.py DOCUMENTS.json MODULE ARGSFILE

Everything else is real: the module, its libvirt connection (domain usage, defines) over the given URI, the
node-device reader and the guards. Only ``NodeDeviceSource.documents`` returns the file's list of XML strings
instead of asking libvirt, for hosts this machine is not (SR-IOV, IOMMU groups of several devices); a file
holding ``null`` answers as a libvirt without node devices does.
"""

from __future__ import annotations

import json
import runpy
import sys


def main():
    documents_file, module, argsfile = sys.argv[1:4]
    with open(documents_file, encoding='utf-8') as handle:
        documents = json.load(handle)
    from ansible_collections.virtdev.libvirt.plugins.module_utils.host import nodedev_source  # pylint: disable=import-outside-toplevel

    def serve(self):
        if documents is None:  # as a libvirt without node devices answers
            raise nodedev_source.NodeDevicesUnavailable('%s gives no node devices: (faked)' % self.connection.uri)
        return list(documents)

    nodedev_source.NodeDeviceSource.documents = serve
    sys.argv = [module, argsfile]
    runpy.run_module(module, run_name='__main__', alter_sys=True)


if __name__ == '__main__':
    main()
