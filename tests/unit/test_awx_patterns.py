# Copyright (c) virtdev.libvirt contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Automation Platform patterns and play argument specs, checked without running anything.

* every ``extensions/patterns/<name>/meta/pattern.json`` is valid under the pattern schema 1.0.0 of
  ansible/pattern-service (fixtures/pattern_schema), names its directory, its playbooks and its
  execution environment;
* every survey asks exactly its playbook's inputs: each variable is an option of the argspec, each
  required option without default is asked, choices and answer types fit the option;
* every ``.meta.yml`` is valid under ansible-lint's play-argspec schema, and the playbook's first task
  validates it;
* playbook headers and the patterns' copies of the specs are not stale (scripts/gen_playbook_headers.py).
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import jsonschema
import pytest
import yaml

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PATTERNS = os.path.join(CHECKOUT, 'extensions', 'patterns')
PLAYBOOKS = os.path.join(CHECKOUT, 'playbooks')
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures', 'pattern_schema')
PATTERN_NAMES = sorted(os.listdir(PATTERNS))
META_FILES = sorted(glob.glob(os.path.join(PLAYBOOKS, '*.meta.yml'))
                    + glob.glob(os.path.join(PATTERNS, '*', 'playbooks', '*.meta.yml')))
JOB_TEMPLATE_PLAYBOOKS = ['host_report', 'host_prepare', 'guests', 'gpu_passthrough', 'sriov_guest']

# the answer an AWX survey question type gives, and the argspec types that accept it
SURVEY_TYPES = {
    'text': {'str', 'path', 'raw', 'list'},      # a list option takes comma-separated text
    'textarea': {'str', 'raw'},
    'password': {'str'},
    'integer': {'int'},
    'float': {'float'},
    'multiplechoice': {'str', 'bool'},
    'multiselect': {'list'},
}


def _json(path):
    with open(path, encoding='utf-8') as handle:
        return json.load(handle)


def _yaml(path):
    with open(path, encoding='utf-8') as handle:
        return yaml.safe_load(handle)


def _spec(playbook):
    return _yaml(os.path.join(PLAYBOOKS, playbook + '.meta.yml'))['argument_specs'][playbook]['options']


def _play_argspec_schema():
    import ansiblelint.schemas  # pylint: disable=import-outside-toplevel
    return _json(os.path.join(os.path.dirname(ansiblelint.schemas.__file__), 'play-argspec.json'))


def test_every_job_template_playbook_has_a_pattern():
    assert PATTERN_NAMES == sorted(JOB_TEMPLATE_PLAYBOOKS)


@pytest.mark.parametrize('name', PATTERN_NAMES)
def test_pattern_json_is_valid_under_the_pattern_schema(name):
    schema = _json(os.path.join(FIXTURES, 'pattern-schema-1.0.0.json'))
    pattern = _json(os.path.join(PATTERNS, name, 'meta', 'pattern.json'))
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(pattern), key=str)
    assert not errors, [error.message for error in errors]
    # rules the schema states in words
    assert pattern['name'] == name and pattern['schema_version'] == '1.0.0'
    assert not pattern['short_description'].endswith('.')
    resources = pattern['aap_resources']
    environment = resources['controller_execution_environment']['name']
    assert os.path.exists(os.path.join(CHECKOUT, 'meta', 'execution-environment.yml'))
    assert os.path.exists(os.path.join(PATTERNS, name, 'README.md'))
    for template in resources['controller_job_templates']:
        assert template['execution_environment'] == environment
        assert template['ask_inventory_on_launch'] and template['ask_credential_on_launch']
        assert set(template.get('labels', [])) <= set(resources.get('controller_labels', []))
        playbook = os.path.join(PATTERNS, name, 'playbooks', template['playbook'])
        thin = _yaml(playbook)
        # thin: one import of the collection's own playbook, no second copy of any logic
        assert thin == [{'name': pattern['title'],
                         'ansible.builtin.import_playbook': 'virtdev.libvirt.' + template['playbook'][:-4]}]


def test_the_schema_refuses_what_it_should():
    """The stored schema really checks: a pattern with a bad name or a survey without choices fails."""
    schema = _json(os.path.join(FIXTURES, 'pattern-schema-1.0.0.json'))
    pattern = _json(os.path.join(PATTERNS, 'host_report', 'meta', 'pattern.json'))
    validator = jsonschema.Draft202012Validator(schema)
    bad_name = dict(pattern, name='Host-Report')
    assert any(error.path and list(error.path) == ['name'] for error in validator.iter_errors(bad_name))
    survey = pattern['aap_resources']['controller_job_templates'][0]['survey']['spec']
    choice = next(question for question in survey if question['type'] == 'multiplechoice')
    del choice['choices']
    assert list(validator.iter_errors(pattern))


@pytest.mark.parametrize('name', PATTERN_NAMES)
def test_survey_asks_exactly_the_playbook_inputs(name):
    pattern = _json(os.path.join(PATTERNS, name, 'meta', 'pattern.json'))
    for template in pattern['aap_resources']['controller_job_templates']:
        options = _spec(template['playbook'][:-4])
        questions = {question['variable']: question for question in template['survey']['spec']}
        assert len(questions) == len(template['survey']['spec']), 'a variable is asked twice'
        assert set(questions) <= set(options), 'not inputs of the playbook: %s' % (set(questions) - set(options))
        must = {option for option, spec in options.items() if spec.get('required') and 'default' not in spec}
        assert must <= set(questions), 'required inputs not asked: %s' % (must - set(questions))
        for variable, question in questions.items():
            option = options[variable]
            assert option.get('type', 'str') in SURVEY_TYPES[question['type']], (variable, question['type'])
            if option.get('required') and 'default' not in option:
                assert question['required'], variable
            if question['type'] in ('multiplechoice', 'multiselect'):
                wanted = option.get('choices') or (['true', 'false'] if option.get('type') == 'bool' else None)
                assert question['choices'] == [str(choice) for choice in wanted], variable
            if 'default' in question and 'default' in option:
                default = option['default']
                if isinstance(default, list):
                    assert question['default'].split('\n') == default, variable
                else:
                    assert question['default'] == str(default).lower() if isinstance(default, bool) \
                        else question['default'] == str(default), variable


@pytest.mark.parametrize('path', META_FILES, ids=lambda path: os.path.relpath(path, CHECKOUT))
def test_meta_yml_is_valid_under_ansible_lint_play_argspec_schema(path):
    errors = list(jsonschema.Draft7Validator(_play_argspec_schema()).iter_errors(_yaml(path)))
    assert not errors, [error.message for error in errors]


@pytest.mark.parametrize('name', JOB_TEMPLATE_PLAYBOOKS)
def test_each_play_validates_its_inputs_first(name):
    plays = _yaml(os.path.join(PLAYBOOKS, name + '.yml'))
    tasks = plays[0]['tasks']
    if name == 'guests':
        # first the guest entries by index and name (ansible-core's message names no list index), reading only
        assert 'virtdev.libvirt.guest_input_errors' in json.dumps(tasks[0]) and 'ansible.builtin.assert' in tasks[0]
        tasks = tasks[1:]
    first = tasks[0]
    assert first['name'] == 'Check the inputs against playbooks/%s.meta.yml' % name
    assert 'ansible.builtin.validate_argument_spec' in first
    assert "'%s.meta.yml'" % name in json.dumps(plays[0]['vars'])


def test_headers_and_pattern_specs_are_generated_from_the_specs():
    script = os.path.join(CHECKOUT, 'scripts', 'gen_playbook_headers.py')
    result = subprocess.run([sys.executable, script, '--check'], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr + 'run: .venv/bin/python scripts/gen_playbook_headers.py'


def test_guests_playbook_takes_exactly_the_guest_roles_guest_options():
    """playbooks/guests.yml hands its guests to the guest role as they are: one shape of a guest entry, the
    role's (profiles, gpu, vfs, mdevs, exclude, domain...), so a survey or host_vars file checked by the
    playbook is never refused by the role, nor the other way round."""
    role = _yaml(os.path.join(CHECKOUT, 'roles', 'guest', 'meta', 'argument_specs.yml'))
    role_guest = role['argument_specs']['main']['options']['guests']
    play_guest = _spec('guests')['guests']
    assert play_guest['options'] == role_guest['options']
    assert (play_guest['type'], play_guest['elements']) == (role_guest['type'], role_guest['elements'])
