"""What a restarted master takes back from its files (dpd/cluster/resume.py): the
versions it served, and a rollout with the lists its held nodes keep, only from
files that are the master's own and whose lists match their hashes."""
import hashlib
import os

import pytest

from dpd import state
from dpd.cluster import resume

BODY = '[{"name":"a","run":"/bin/sleep"}]'
SHA = hashlib.sha256(BODY.encode()).hexdigest()
RECORD = {'id': '1795923229648', 'wave': 0, 'waves': [['n1'], ['n2']],
          'status': {'n1': 'serving', 'n2': 'waiting'}, 'reasons': {},
          'since': {'n1': 1795923229.6}, 'halted': None, 'targets': {'n1': 'ab' * 32,
                                                                    'n2': 'ab' * 32}}


@pytest.fixture
def files(tmp_path):
    state_file = str(tmp_path / 'master.state.json')
    state.write(state_file, 'dpd-masterd', {'nodes': [
        {'node': 'n1', 'desired': {'gen': 7, 'sha256': SHA}}], 'rollout': RECORD})
    resume.write_lists(state_file, {'id': RECORD['id'], 'lists': {
        'n2': {'gen': 5, 'sha256': SHA, 'body': BODY, 'count': 1}}})
    return state_file


def test_versions_and_a_rollout_with_its_kept_lists_come_back(files):
    versions, (record, lists) = resume.previous_state(files)
    assert versions == {'n1': {'gen': 7, 'sha256': SHA}} and record == RECORD
    assert lists == {'n2': {'gen': 5, 'sha256': SHA, 'body': BODY.encode(), 'count': 1}}
    assert resume.lists_path(files).endswith('master.state.rollout.json')
    assert os.stat(resume.lists_path(files)).st_mode & 0o777 == 0o600


def test_a_list_that_does_not_match_its_hash_is_not_resumed(files, caplog):
    resume.write_lists(files, {'id': RECORD['id'], 'lists': {
        'n2': {'gen': 5, 'sha256': SHA, 'body': BODY + ' ', 'count': 1}}})
    assert resume.previous_state(files)[1] is None
    assert 'the list of node n2 does not match its hash): not resumed' in caplog.text


def test_lists_others_could_write_or_reached_by_a_link_are_not_trusted(files, tmp_path):
    path = resume.lists_path(files)
    os.chmod(path, 0o666)
    assert resume.previous_state(files)[1] is None
    os.chmod(path, 0o600)
    os.rename(path, str(tmp_path / 'elsewhere.json'))
    os.symlink(str(tmp_path / 'elsewhere.json'), path)
    assert resume.previous_state(files)[1] is None


@pytest.mark.parametrize('change', [
    {'status': {'n1': 'dancing'}}, {'wave': '0'}, {'since': {'n1': 'soon'}},
    {'targets': None}, {'halted': 3}, {'waves': 'n1'}])
def test_a_record_not_as_this_version_writes_it_is_not_resumed(files, change, caplog):
    state.write(files, 'dpd-masterd', {'nodes': [], 'rollout': dict(RECORD, **change)})
    assert resume.previous_state(files) == ({}, None)
    assert 'not resumed' in caplog.text


def test_a_rollout_that_holds_no_node_needs_no_lists(files):
    done = dict(RECORD, status={'n1': 'succeeded', 'n2': 'failed'})
    state.write(files, 'dpd-masterd', {'nodes': [], 'rollout': done})
    resume.drop_lists(files)
    resume.drop_lists(files)                    # gone already: nothing to do
    assert not os.path.exists(resume.lists_path(files))
    assert resume.previous_state(files) == ({}, (done, {}))


def test_lists_of_another_rollout_or_none_at_all(files):
    resume.write_lists(files, {'id': 'other', 'lists': {}})
    assert resume.previous_state(files)[1] is None
    os.unlink(resume.lists_path(files))
    assert resume.previous_state(files)[1] is None
    state.write(files, 'dpd-masterd', {'nodes': [], 'rollout': None})
    assert resume.previous_state(files) == ({}, None)
    assert resume.previous_state(files + '.absent') == ({}, None)
