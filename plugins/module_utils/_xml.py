# -*- coding: utf-8 -*-
# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Safe XML helpers shared by the pure core (no libvirt, no Ansible).

Everything that reads XML from users or libvirt goes through ``parse``: entities are not resolved
and no network access happens, so a crafted device string cannot pull in files or explode.
"""

from __future__ import annotations

import copy as copy_module
import functools
import re
import traceback

try:
    from lxml import etree
    HAS_LXML = True
    LXML_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - reported by the modules through missing_required_lib
    etree = None
    HAS_LXML = False
    LXML_IMPORT_ERROR = traceback.format_exc()


class XMLInputError(ValueError):
    """Raised for XML text that is not well formed or not what the caller expects."""


# what XML 1.0 cannot carry (https://www.w3.org/TR/xml/#charsets): C0 controls but tab, newline and carriage
# return; lone UTF-16 surrogates; U+FFFE and U+FFFF. lxml refuses them with a message that names no field.
_NOT_XML_CHAR = re.compile('[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')


def text_problem(text):
    """Why ``text`` cannot be put into XML (naming the character), or None."""
    match = _NOT_XML_CHAR.search(text)
    if match is None:
        return None
    char = match.group()
    return 'contains U+%04X at position %d, which XML (and so libvirt) cannot carry' % (ord(char), match.start())


def excerpt(text, limit=80):
    """``repr(text)``, or for a long text the part around its first bad character (a message stays readable
    and does not repeat a whole document)."""
    if len(text) <= limit:
        return repr(text)
    match = _NOT_XML_CHAR.search(text)
    start = max(0, (match.start() if match else 0) - limit // 2)
    before, after = '...' if start else '', '...' if start + limit < len(text) else ''
    return '%s%r%s (%d characters)' % (before, text[start:start + limit], after, len(text))


def check_text_tree(value, where, secret=lambda where: False):
    """Raise XMLInputError naming the field and the value for the first string in ``value`` (nested dicts and
    lists) that XML cannot carry. ``secret(where)`` hides the value of no_log fields."""
    if isinstance(value, str):
        problem = text_problem(value)
        if problem:
            raise XMLInputError('%s: %s %s' % (where, '(value hidden)' if secret(where) else excerpt(value), problem))
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text_tree(key, where, secret)
            check_text_tree(item, '%s.%s' % (where, key) if where else str(key), secret)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            check_text_tree(item, '%s[%d]' % (where, index), secret)


def _parser():
    return etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True,
                           huge_tree=False, remove_comments=False)


def parse(text, what='XML'):
    """Parse text into an element; raise XMLInputError naming ``what`` on any problem."""
    if not isinstance(text, str) or not text.strip():
        raise XMLInputError('%s is empty' % what)
    problem = text_problem(text)
    if problem:
        raise XMLInputError('%s %s' % (what, problem))
    try:
        root = etree.fromstring(text.strip().encode('utf-8'), _parser())
    except etree.XMLSyntaxError as exc:
        raise XMLInputError('%s is not well-formed XML: %s' % (what, exc))
    if root.getroottree().docinfo.doctype:
        raise XMLInputError('%s must not carry a DOCTYPE' % what)
    return root


def to_string(element, pretty=True):
    """Serialize an element (without tail) to text."""
    element = copy_module.deepcopy(element)
    element.tail = None
    if pretty:
        etree.indent(element, space='  ')
    return etree.tostring(element, encoding='unicode')


def canonical(element, ignore=()):
    """A hashable, order-insensitive-for-attributes view of an element.

    Children are compared as a sorted multiset: inside a device libvirt's schema interleaves them and
    libvirt writes its own order on define, so order carries no meaning there. Whitespace-only text and
    comments are dropped. Children whose tag is in ``ignore`` are left out, which is how libvirt-owned
    parts (``address``, ``alias``) are kept out of comparisons when the caller asks.
    """
    text = (element.text or '').strip()
    children = tuple(sorted(canonical(child, ignore) for child in element
                            if isinstance(child.tag, str) and child.tag not in ignore))
    return (element.tag, tuple(sorted(element.attrib.items())), text, children)


def same(left, right, ignore=()):
    return canonical(left, ignore) == canonical(right, ignore)


@functools.lru_cache(maxsize=None)
def _parts(path):
    """'target/model' -> (('target', None), ('model', None)); 'clock/timer[name=rtc]' selects the child
    whose attribute has that value -> (('clock', None), ('timer', ('name', 'rtc'))). Paths come from
    the tables, so a cache is bounded."""
    parts = []
    for part in path.split('/'):
        if not part:
            continue
        tag, _bracket, selector = part.partition('[')
        key = tuple(selector.rstrip(']').split('=', 1)) if selector else None
        parts.append((tag, key))
    return tuple(parts)


def _find(node, tag, key):
    if key is None:
        return node.find(tag)
    return next((el for el in node.iterchildren(tag) if el.get(key[0]) == key[1]), None)


def child(element, path, create=False):
    """Return the child element at a slash-separated tag path ('' is the element itself).

    A part ``tag[attr=value]`` picks the child with that attribute value (created with it). With
    ``create`` the missing elements on the way are made. Tags come from our own tables, never from
    user input, so a plain path walk is enough (no XPath built from strings).
    """
    node = element
    for tag, key in _parts(path):
        found = _find(node, tag, key)
        if found is None:
            if not create:
                return None
            found = etree.SubElement(node, tag, dict([key]) if key else {})
        node = found
    return node


def prune_empty(element, path):
    """Remove now-empty elements along ``path`` (deepest first) after an attribute was cleared; an
    element that has only its selecting attribute (``<timer name='rtc'/>``) counts as empty."""
    parts = list(_parts(path))
    while parts:
        node = child(element, '/'.join(tag + ('[%s=%s]' % key if key else '') for tag, key in parts))
        selector = {parts[-1][1][0]} if parts[-1][1] else set()
        if node is None or len(node) or set(node.attrib) - selector or (node.text or '').strip():
            return
        node.getparent().remove(node)
        parts.pop()


def copy(element):
    return copy_module.deepcopy(element)


def new_element(tag, attrib=None):
    return etree.Element(tag, attrib or {})


def comment(text):
    """An XML comment node (notes in a diff view); '--' cannot appear inside one."""
    return etree.Comment(' %s ' % text.replace('--', '- -'))
