# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""require_libraries: one message for every missing library, with the names to install it by."""

from __future__ import annotations

import pytest

from ansible_collections.virtdev.libvirt.plugins.module_utils import _common, _libvirt, _xml


class Failed(Exception):
    pass


class FakeModule:
    """Only what require_libraries uses: fail_json, which ends the module."""

    def fail_json(self, **result):
        raise Failed(result)


def _fail_with(monkeypatch, has_lxml, has_libvirt, need_libvirt=True):
    monkeypatch.setattr(_xml, 'HAS_LXML', has_lxml)
    monkeypatch.setattr(_xml, 'LXML_IMPORT_ERROR', None if has_lxml else 'ModuleNotFoundError: lxml')
    monkeypatch.setattr(_libvirt, 'HAS_LIBVIRT', has_libvirt)
    monkeypatch.setattr(_libvirt, 'LIBVIRT_IMPORT_ERROR', None if has_libvirt else 'ModuleNotFoundError: libvirt')
    with pytest.raises(Failed) as caught:
        _common.require_libraries(FakeModule(), need_libvirt=need_libvirt)
    return caught.value.args[0]


def test_both_missing_are_listed_at_once_with_every_package_name(monkeypatch):
    result = _fail_with(monkeypatch, has_lxml=False, has_libvirt=False)
    msg = result['msg']
    assert result['missing_libraries'] == ['lxml', 'libvirt']
    assert 'apt-get install python3-lxml python3-libvirt' in msg
    assert 'dnf install python3-lxml python3-libvirt' in msg
    assert 'pip install lxml libvirt-python' in msg
    assert 'virtdev.libvirt.hypervisor' in msg and 'docs/deploying.md' in msg
    assert 'ModuleNotFoundError: lxml' in result['exception'] and 'ModuleNotFoundError: libvirt' in result['exception']


def test_only_the_missing_one_is_named(monkeypatch):
    msg = _fail_with(monkeypatch, has_lxml=True, has_libvirt=False)['msg']
    assert '"apt-get install python3-libvirt"' in msg and 'python3-lxml' not in msg and 'pip install libvirt-python' in msg


def test_libvirt_not_needed_is_not_asked_for(monkeypatch):
    result = _fail_with(monkeypatch, has_lxml=False, has_libvirt=False, need_libvirt=False)
    assert result['missing_libraries'] == ['lxml'] and 'libvirt' not in result['msg'].split('virtdev.libvirt')[0]


def test_nothing_missing_passes(monkeypatch):
    monkeypatch.setattr(_xml, 'HAS_LXML', True)
    monkeypatch.setattr(_libvirt, 'HAS_LIBVIRT', True)
    assert _common.require_libraries(FakeModule()) is None


def test_the_message_names_the_python_that_lacks_them():
    assert _common.missing_libraries_message(['lxml'], python='/usr/bin/python3').startswith(
        'missing Python libraries for /usr/bin/python3: lxml.')
