# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Secrets (console passwords): the placeholder that stands for them, and masking (pure, standard library).

A secret never leaves the module: everything it shows (results, diffs, warnings, errors) shows
``PLACEHOLDER`` instead. Ansible's ``no_log`` masks only the raw value of a no_log option; the module
also shows XML and messages, where a password appears escaped (``&amp;``, ``&lt;``, ``\\x01``, ``\\u0026``),
and secrets read from libvirt were never an option at all. So the module masks itself, by value, in
every escaped form it can take (docs/domain_devices.md, "Adopting a guest").
"""

from __future__ import annotations

import html
import json
import re

# Shown instead of a secret; given back as an option value it means "keep the current secret".
PLACEHOLDER = '********'
# Given as an option value (or an empty attribute in raw XML): remove the secret.
REMOVE = ''

# Secrets this process has seen (read from a definition, or given in raw XML): its outputs are masked
# against them. A module is one process per task, so this is per task.
SEEN = set()


def remember(value):
    """Note a secret so that every output of this process masks it."""
    if isinstance(value, str) and value not in (REMOVE, PLACEHOLDER):
        SEEN.add(value)


# A passwd attribute in raw XML text, also in text that is not well-formed XML (a closing quote missing)
RAW_PASSWD = re.compile(r"""passwd\s*=\s*(?:"([^"]*)"?|'([^']*)'?)""")


def remember_raw(value):
    """Note the passwords written in raw XML anywhere in ``value`` (module parameters), before anything
    parses it: text refused before it is parsed (not well-formed, a control character) is echoed in errors
    and in ``invocation``, and must be masked there too."""
    if isinstance(value, str):
        for double, single in RAW_PASSWD.findall(value):
            secret = double or single
            remember(secret)
            remember(html.unescape(secret))   # the value itself, as XML would read it
    elif isinstance(value, dict):
        for item in value.values():
            remember_raw(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            remember_raw(item)


def is_real(value):
    """A value that sets a secret (not 'keep' or 'remove')."""
    return isinstance(value, str) and value not in (REMOVE, PLACEHOLDER)


def forms(value):
    """Every way ``value`` can be written in the module's outputs: as is, XML-escaped (each quote style,
    named and numeric references), Python repr and JSON string escapes, and combinations."""
    xml_variants = set()
    escaped = value.replace('&', '&amp;').replace('<', '&lt;')
    for text in (escaped, escaped.replace('>', '&gt;')):
        for quote in ('&quot;', '&#34;', '&#x22;', '"'):
            for apos in ('&apos;', '&#39;', '&#x27;', "'"):
                xml_variants.add(text.replace('"', quote).replace("'", apos))
    found = set()
    for text in xml_variants | {value}:
        found.add(text)
        found.add(json.dumps(text)[1:-1])
        found.add(json.dumps(text, ensure_ascii=False)[1:-1])
        # repr in both of Python's quotings: 'it\\'s' and "it's"
        single = repr(text + '\'"')[1:-3]
        found.update((single, single.replace("\\'", "'"), repr(text)[1:-1]))
    return {form for form in found if form}


class Masker:
    """Replaces every form of the given secrets by PLACEHOLDER in text and in nested results."""

    def __init__(self, secrets):
        forms_found = set()
        for secret in secrets:
            if isinstance(secret, str) and secret and secret != PLACEHOLDER:
                forms_found |= forms(secret)
        # longest first: a form that contains another is replaced whole; one pass per string however
        # many secrets a manifest of guests carries
        self.forms = sorted(forms_found, key=len, reverse=True)
        self.pattern = re.compile('|'.join(re.escape(form) for form in self.forms)) if self.forms else None

    def text(self, text):
        return self.pattern.sub(PLACEHOLDER, text) if self.pattern is not None else text

    def data(self, value):
        if not self.forms:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.data(key): self.data(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.data(item) for item in value)
        return value


def mask(value, extra=()):
    """``value`` (text or nested data) with every secret seen by this process, and ``extra``, masked."""
    return Masker(SEEN | set(extra)).data(value)
