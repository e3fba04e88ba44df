"""spawn.Identities: a user looked up once per burst of starts, again after an edit."""
import os
import pwd

import pytest

from dpd.procspec import parse_process
from dpd.schema import Problems
from dpd.worker import spawn

ME = pwd.getpwuid(os.geteuid()).pw_name


def spec_of(**entry):
    problems = Problems()
    spec = parse_process(dict({'name': 'p', 'run': '/bin/cat', 'user': ME}, **entry),
                         'procs[0]', problems, ME)
    assert spec is not None, problems.messages
    return spec


@pytest.fixture
def lookups(monkeypatch, tmp_path):
    """Counts the real lookups; the files watched are two of the test's own."""
    calls = []
    real = spawn.identity

    def counted(spec):
        calls.append(spec.user)
        return real(spec)
    monkeypatch.setattr(spawn, 'identity', counted)
    files = (tmp_path / 'passwd', tmp_path / 'group')
    for f in files:
        f.write_text('x\n')
    monkeypatch.setattr(spawn.Identities, 'FILES', tuple(map(str, files)))
    return calls, files


def test_a_user_is_looked_up_once_for_many_starts(lookups):
    calls, _ = lookups
    identities = spawn.Identities()
    first = identities.of(spec_of())
    assert all(identities.of(spec_of()) == first for _ in range(50))
    assert calls == [ME]
    assert (first.user, first.uid) == (ME, os.geteuid())


def test_an_edit_of_either_file_is_seen_at_the_next_start(lookups):
    calls, files = lookups
    identities = spawn.Identities()
    identities.of(spec_of())
    for f in files:
        f.write_text('x\nnew member\n')
        identities.of(spec_of())
    assert len(calls) == 3


def test_a_lookup_is_not_kept_past_its_age(lookups, monkeypatch):
    calls, _ = lookups
    monkeypatch.setattr(spawn.Identities, 'MAX_AGE', 0.0)
    identities = spawn.Identities()
    identities.of(spec_of())
    identities.of(spec_of())
    assert len(calls) == 2


def test_an_unknown_user_is_an_error_every_time(lookups):
    calls, _ = lookups
    identities = spawn.Identities()
    for _ in range(2):
        with pytest.raises(spawn.SpawnError, match='no such user'):
            identities.of(spec_of(user='no-such-user-here'))
    assert len(calls) == 2
