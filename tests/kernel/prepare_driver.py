# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs inside the test bed guest: a list of steps (module runs, held vfio groups, injected failures,
shell commands), recording after each step what the guest kernel itself says about the devices.

Usage (in the guest, with ``ansible_collections.virtdev.libvirt`` importable)::

    python prepare_driver.py STEPS.json RESULT.json

A step is a dict with ``name`` and one of:

- ``module`` + ``args``: run ``plugins/modules/<module>.py`` in this process (Python starts once for all
  steps: under TCG a Python start costs seconds); ``swallow_probe``: addresses whose ``drivers_probe``
  write is dropped, as if the kernel had bound nothing (the injected failure);
- ``hold``: an address whose ``/dev/vfio/<group>`` this process opens and keeps open (a running guest);
  ``release``: close it again;
- ``sh``: a shell command, its exit code and output are recorded.

After every step ``view`` maps each address in ``watch`` to its ``driver``, ``driver_override``,
``group``, whether ``/dev/vfio/<group>`` exists and, when it does and nobody holds it, the kernel's
``VFIO_GROUP_GET_STATUS`` answer: whether the group is viable.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import struct
import subprocess
import sys
import time

# include/uapi/linux/vfio.h: VFIO_TYPE ';', VFIO_BASE 100, VFIO_GROUP_GET_STATUS = _IO(VFIO_TYPE, VFIO_BASE + 3)
VFIO_GROUP_GET_STATUS = (ord(';') << 8) | (100 + 3)
VFIO_GROUP_FLAGS_VIABLE = 1 << 0


def _read(path):
    try:
        with open(path, encoding='utf-8') as handle:
            return handle.read().strip()
    except OSError:
        return None


def group_viable(group):
    """The kernel's own verdict on a vfio group, or None when its node cannot be opened."""
    try:
        fd = os.open('/dev/vfio/%s' % group, os.O_RDWR)
    except OSError as exc:
        return 'open failed: %s' % exc.strerror
    try:
        buf = bytearray(struct.pack('II', 8, 0))
        fcntl.ioctl(fd, VFIO_GROUP_GET_STATUS, buf, True)
        _argsz, flags = struct.unpack('II', bytes(buf))
        return bool(flags & VFIO_GROUP_FLAGS_VIABLE)
    finally:
        os.close(fd)


def view(addresses, held):
    result = {}
    for address in addresses:
        dev = '/sys/bus/pci/devices/' + address
        link = dev + '/driver'
        group = os.path.basename(os.readlink(dev + '/iommu_group')) if os.path.islink(dev + '/iommu_group') else None
        node = group is not None and os.path.exists('/dev/vfio/' + group)
        override = _read(dev + '/driver_override')
        result[address] = {
            'driver': os.path.basename(os.readlink(link)) if os.path.islink(link) else None,
            'driver_override': None if override in (None, '', '(null)') else override,
            'group': group,
            'vfio_node': node,
            'viable': group_viable(group) if node and group not in held else None,
        }
    return result


def run_module(name, args, swallow):
    from ansible.module_utils.common import warnings as ansible_warnings
    from ansible.module_utils.testing import patch_module_args
    from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import sysfs_writer
    module = __import__('ansible_collections.virtdev.libvirt.plugins.modules.' + name, fromlist=['main'])
    for collected in ('_global_warnings', '_global_deprecations'):
        getattr(ansible_warnings, collected, {}).clear()
    original = sysfs_writer.write_attribute

    def write(path, value):
        if path == '/sys/bus/pci/drivers_probe' and value.strip() in swallow:
            return  # the injected failure: the probe "succeeds" and binds nothing
        original(path, value)

    sysfs_writer.write_attribute = write
    out = io.StringIO()
    try:
        with patch_module_args(args), contextlib.redirect_stdout(out):
            try:
                module.main()
            except SystemExit:
                pass
    finally:
        sysfs_writer.write_attribute = original
    return json.loads(out.getvalue())


def main(argv):
    with open(argv[1], encoding='utf-8') as handle:
        plan = json.load(handle)
    watch = plan['watch']
    held = {}
    records = []
    initial = view(watch, held)
    for step in plan['steps']:
        started = time.monotonic()
        record = {'name': step['name']}
        if 'module' in step:
            record['result'] = run_module(step['module'], step.get('args', {}), set(step.get('swallow_probe', [])))
        elif 'hold' in step:
            group = os.path.basename(os.readlink('/sys/bus/pci/devices/%s/iommu_group' % step['hold']))
            held[group] = os.open('/dev/vfio/' + group, os.O_RDWR)
            record['group'] = group
        elif 'release' in step:
            group = os.path.basename(os.readlink('/sys/bus/pci/devices/%s/iommu_group' % step['release']))
            os.close(held.pop(group))
        elif 'sh' in step:
            proc = subprocess.run(['/bin/sh', '-c', step['sh']], capture_output=True, text=True, check=False)
            record['rc'], record['output'] = proc.returncode, proc.stdout + proc.stderr
        record['seconds'] = round(time.monotonic() - started, 2)
        record['view'] = view(watch, held)
        records.append(record)
    with open(argv[2], 'w', encoding='utf-8') as handle:
        json.dump({'pid': os.getpid(), 'initial': initial, 'steps': records}, handle, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
