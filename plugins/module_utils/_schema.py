# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""libvirt's schema rejections, translated back to the device and the option they came from (pure: lxml only).

``defineXMLFlags(VALIDATE)`` checks a whole definition against libvirt's RELAX NG schema
(``/usr/share/libvirt/schemas/domain.rng``) and, when it fails, says "XML document failed to validate ...
Extra element devices in interleave": neither the guest nor the device. What a simple rule can judge is
refused before anything is written (the field types); for the rest, each changed device element is validated
alone against the same grammar libvirt uses (``domain.rng`` starts at ``domain`` and includes
``domainoverrides.rng``; here the start is ``devices``), which tells which device was refused and, mostly, which
element or attribute of it.
"""

from __future__ import annotations

import functools
import os

from ansible_collections.virtdev.libvirt.plugins.module_utils import _xml

SCHEMA_DIR = '/usr/share/libvirt/schemas'
SCHEMA_FAILURE = 'failed to validate against schema'   # libvirt's VIR_ERR_XML_INVALID_SCHEMA message

_DEVICES_GRAMMAR = '''<grammar xmlns="http://relaxng.org/ns/structure/1.0"
    datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
  <start><ref name="devices"/></start>
  <include href="%s"/>
</grammar>'''
# messages of libxml2's RELAX NG validator that point at a part of the device, most specific first
_SPECIFIC = ('Invalid attribute', 'Error validating datatype', 'Error validating value', 'failed to validate attributes',
             'Expecting an element', 'Did not expect element', 'Extra element')


@functools.lru_cache(maxsize=4)
def _grammar(schema_dir):
    """libvirt's device grammar, or None when its schemas are not installed here (a remote-only controller)."""
    overrides = os.path.join(schema_dir, 'domainoverrides.rng')
    if not os.path.exists(overrides):
        return None
    text = _DEVICES_GRAMMAR % overrides
    return _xml.etree.RelaxNG(_xml.etree.fromstring(text.encode('utf-8'), base_url=overrides))


def devices_pass(elements, schema_dir=SCHEMA_DIR):
    """Whether the device elements a plan adds or changes pass libvirt's schema as installed here: True or False,
    None when the schema is not installed here. The check ``defineXMLFlags(VALIDATE)`` makes of them, without
    libvirt loading its whole grammar again for every define (about 20 of the 24 ms a define takes on the machines
    docs/performance.md describes). The devices a plan leaves alone are libvirt's own: they are not checked again
    (a guest of 18 devices with one changed: 0.01 instead of 0.3 ms)."""
    grammar = _grammar(schema_dir)
    if grammar is None:
        return None
    return bool(grammar.validate(_devices_of(elements)))


def device_problem(element, schema_dir=SCHEMA_DIR):
    """Why libvirt's schema refuses this device element alone: '<source> ... : message', or None when it does not
    (or the schema is not installed)."""
    grammar = _grammar(schema_dir)
    if grammar is None:
        return None
    if grammar.validate(_devices_of([element])):
        return None
    entries = [entry for entry in grammar.error_log if entry.path]
    for marker in _SPECIFIC:
        for entry in entries:
            if marker in entry.message:
                return '%s: %s' % (_relative(entry.path, element.tag), entry.message)
    return entries[0].message if entries else 'refused'


def _devices_of(elements):
    """A ``<devices>`` of copies of ``elements``, which the grammar's start (``devices``) validates."""
    devices = _xml.new_element('devices')
    for element in elements:
        devices.append(_xml.copy(element))
    return devices


def _relative(path, tag):
    """'/devices/graphics/listen' -> '<graphics><listen>'."""
    parts = [part.split('[')[0] for part in path.split('/') if part][1:] or [tag]
    return ''.join('<%s>' % part for part in parts)


def option_of(kind, problem):
    """The option of a typed ``kind`` that a problem text points at (its element and attribute), or None."""
    if kind is None or problem is None:
        return None
    head = problem.split(':', 1)[0]
    path = '/'.join(part for part in head.strip('<>').split('><')[1:])
    attr = problem.split('Invalid attribute ', 1)[1].split(' ', 1)[0] if 'Invalid attribute ' in problem else None
    candidates = []
    for option, field in kind.fields.items():
        candidates.append((option, field))
        for variant in getattr(field, 'variants', {}).values():
            candidates.extend(('%s.%s' % (option, name), sub) for name, sub in variant.fields.items())
    for option, field in candidates:
        if (field.path or '') == path and (attr is None or field.attr == attr):
            return option
    last = path.rsplit('/', 1)[-1]
    return next((option for option, _field in candidates if option.rsplit('.', 1)[-1] in (last, attr)), None)


def explain(domain_name, devices, libvirt_message, schema_dir=SCHEMA_DIR):
    """A message naming the guest, each device its schema refuses (``where``, label, option) and libvirt's own
    words; None when no changed device alone is refused (the problem is elsewhere in the definition).

    ``devices``: (where, label, kind or None, element) of every device the plan adds or changes.
    """
    refused = []
    for where, label, kind, element in devices:
        problem = device_problem(element, schema_dir)
        if problem is None:
            continue
        option = option_of(kind, problem)
        refused.append('%s%s (%s): %s' % (where, '.%s' % option if option else '', label, problem))
    if not refused:
        return None
    return ("domain %s: libvirt's schema refuses %s; the persistent definition was not changed (libvirt said: %s)"
            % (domain_name, '; '.join(refused), libvirt_message))


def explain_plan(domain_name, plan, libvirt_message, schema_dir=SCHEMA_DIR):
    """``explain`` for the devices a device plan (``_device_engine.Plan``) adds or changes, when libvirt's message
    is a schema rejection; None otherwise."""
    if SCHEMA_FAILURE not in libvirt_message:
        return None
    devices = []
    for change in plan.changes:
        if change.new is None:
            continue
        item = change.item
        where = change.label if item is None else item.where + ('' if item.kind is not None else '.xml')
        devices.append((where, change.label, item.kind if item is not None else None, change.new))
    return explain(domain_name, devices, libvirt_message, schema_dir)
