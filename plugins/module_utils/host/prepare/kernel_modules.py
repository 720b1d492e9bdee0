# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Kernel modules below a root: installed kernels, whether a module is built in or loadable, what an
initramfs needs for vfio-pci, and which module drives a device (its driver's ``module`` link, else
``modules.alias``).
"""

from __future__ import annotations

import fnmatch
import os

from ansible_collections.virtdev.libvirt.plugins.module_utils.host import model
from ansible_collections.virtdev.libvirt.plugins.module_utils.host.prepare import bind


# kernel modules the initramfs needs for vfio-pci; vfio_virqfd only where the kernels still ship it
VFIO_INITRAMFS_MODULES = ('vfio', 'vfio_iommu_type1', 'vfio_pci')


VFIO_VIRQFD = 'vfio_virqfd'


def installed_kernels(sysroot):
    """Kernel releases with a modules.dep under ``lib/modules`` (``usr/lib/modules`` on merged-/usr)."""
    found = []
    for base in ('lib/modules', 'usr/lib/modules'):
        for release in sysroot.listdir(base):
            if release not in found and sysroot.read('%s/%s/modules.dep' % (base, release)) is not None:
                found.append(release)
    return sorted(found)


def _lines(sysroot, relative):
    """All lines of a file below root (``SysRoot.read`` stops at 64 KiB; modules.dep is larger)."""
    resolved = sysroot.resolve(relative)
    if resolved is None:
        return []
    try:
        with open(os.path.join(sysroot.root, resolved), 'rb') as handle:
            return handle.read().decode('utf-8', 'replace').splitlines()
    except OSError:
        return []


def _module_names(sysroot, release, filename):
    names = set()
    for base in ('lib/modules', 'usr/lib/modules'):
        for line in _lines(sysroot, '%s/%s/%s' % (base, release, filename)):
            path = line.split(':', 1)[0].strip()
            if not path:
                continue
            name = os.path.basename(path)
            for suffix in ('.xz', '.gz', '.zst'):
                if name.endswith(suffix):
                    name = name[:-len(suffix)]
            if name.endswith('.ko'):
                names.add(name[:-3].replace('-', '_'))
        if names:
            break
    return names


def kernel_module_state(sysroot, module):
    """{release: 'module' | 'builtin' | 'missing'} for every installed kernel."""
    module = module.replace('-', '_')
    result = {}
    for release in installed_kernels(sysroot):
        if module in _module_names(sysroot, release, 'modules.dep'):
            result[release] = 'module'
        elif module in _module_names(sysroot, release, 'modules.builtin'):
            result[release] = 'builtin'
        else:
            result[release] = 'missing'
    return result


def initramfs_modules(sysroot, driver=bind.VFIO_DRIVER):
    """Modules to put in the initramfs: the vfio set, the driver's own module, and vfio_virqfd only when
    every installed kernel ships it as a loadable module (kernels from 6.2 on merged it into vfio; listing
    it there breaks dracut). Modules built into every kernel are left out."""
    wanted = list(VFIO_INITRAMFS_MODULES)
    if bind.module_of_driver(driver) not in wanted:
        wanted.append(bind.module_of_driver(driver))
    kernels = installed_kernels(sysroot)
    result = []
    for module in wanted:
        states = kernel_module_state(sysroot, module)
        if kernels and all(state == 'builtin' for state in states.values()):
            continue
        result.append(module)
    virqfd = kernel_module_state(sysroot, VFIO_VIRQFD)
    if virqfd and all(state == 'module' for state in virqfd.values()):
        result.insert(result.index('vfio_pci') if 'vfio_pci' in result else len(result), VFIO_VIRQFD)
    return result


def module_for_modalias(sysroot, modalias):
    """The module whose ``modules.alias`` pattern matches ``modalias`` (running kernel), or None."""
    release = sysroot.read('proc/sys/kernel/osrelease')
    kernels = installed_kernels(sysroot)
    if release in kernels:
        kernels = [release]
    for kernel in kernels:
        for base in ('lib/modules', 'usr/lib/modules'):
            for line in _lines(sysroot, '%s/%s/modules.alias' % (base, kernel)):
                parts = line.split()
                if len(parts) == 3 and parts[0] == 'alias' and fnmatch.fnmatchcase(modalias, parts[1]):
                    if parts[2] not in ('vfio_pci', 'pci_stub'):
                        return parts[2]
    return None


def host_module_of(sysroot, address, current_driver):
    """The module of the host driver of a device: its driver's ``module`` link, else modules.alias."""
    if current_driver and not model.is_vfio_driver(current_driver) and current_driver != bind.STUB_DRIVER:
        resolved = sysroot.resolve('sys/bus/pci/drivers/%s/module' % current_driver)
        if resolved:
            return os.path.basename(resolved)
        return current_driver.replace('-', '_')
    modalias = sysroot.read('sys/bus/pci/devices/%s/modalias' % address)
    return module_for_modalias(sysroot, modalias) if modalias else None
