"""A document's problems are listed up to Problems.LIMIT, and the checks stop
looking past it: a file or a list of a million bad entries is refused with a
hundred reasons and one line saying there are more, in a moment, not with a
million log lines (the client logs each reason, the worker keeps them in its
state file)."""
import difflib
import time

import pytest

from dpd import depends
from dpd.cluster.client import accepted_users_problems
from dpd.config import ConfigError
from dpd.nodepolicy import NodePolicy, check_entries
from dpd.procspec import parse_process_list
from dpd.schema import Problems
from dpd.worker.config import parse_worker

MORE = 'more problems than these 100; the rest are not listed'


def refusal(doc):
    with pytest.raises(ConfigError) as caught:
        parse_worker(doc, '/etc/diprocd/w.json', 'nobody')
    return caught.value.messages


def test_up_to_the_limit_every_problem_is_listed_and_nothing_more_is_said():
    problems = Problems()
    for index in range(100):
        problems.add('procs[%d]' % index, 'bad')
    assert problems.messages == ['procs[%d]: bad' % i for i in range(100)]
    assert not problems.over
    problems.add('procs[100]', 'bad')
    assert problems.over and problems.found == 101
    assert problems.messages[-1] == MORE and len(problems.messages) == 101


def test_a_million_entries_that_are_not_objects_are_refused_with_a_hundred_reasons():
    messages = refusal({'procs': [1] * 1000000})
    assert messages[:2] == ['procs[0]: must be an object, not a number',
                            'procs[1]: must be an object, not a number']
    assert len(messages) == 101 and messages[-1] == MORE


@pytest.mark.parametrize('entry', [1, {'name': 'p', 'run': '/bin/sleep', 'bogus': 1}])
def test_the_walk_stops_one_problem_past_the_limit(entry):
    """(An unknown key's suggestion is a difflib search: 100,000 of them took 8.7 s.)"""
    problems = Problems()
    parse_process_list([entry] * 100000, 'procs', problems, 'nobody')
    assert problems.found == 101


def test_one_entry_of_many_unknown_keys_is_refused_with_the_limit_of_them():
    entry = dict({'k%d' % i: 1 for i in range(100000)}, name='p', run='/bin/sleep')
    messages = refusal({'procs': [entry]})
    assert len(messages) == 101 and messages[-1] == MORE


def test_the_client_lists_a_hundred_users_it_does_not_accept():
    entries = [{'name': 'p%d' % i, 'run': '/bin/sleep', 'user': 'u%d' % i}
               for i in range(10000)]
    problems = accepted_users_problems(entries, ['www-data'])
    assert problems[0] == 'procs[0] ("p0").user: u0 is not in this node\'s allowed_users'
    assert len(problems) == 101 and problems[-1] == MORE


def test_the_node_policy_lists_a_hundred_paths_outside_it():
    entries = [{'name': 'p%d' % i, 'run': '/bin/sleep', 'logs': '/etc/p%d.log' % i}
               for i in range(10000)]
    policy = NodePolicy(path=None, allowed_users=None, allowed_groups=None,
                        allowed_paths=('/var/log',))
    problems = check_entries(entries, policy, 'nobody')
    assert len(problems) == 101 and problems[-1] == MORE


def unknown_dependencies(processes, each):
    return {'procs': [{'name': 'p%d' % i, 'run': '/bin/sleep',
                       'depends': ['q%d-%d' % (i, j) for j in range(each)]}
                      for i in range(processes)]}


@pytest.fixture
def hints(monkeypatch):
    """The names get_close_matches is asked about ("did you mean" hints)."""
    asked, real = [], difflib.get_close_matches

    def counted(word, possibilities, *args, **keys):
        asked.append(word)
        return real(word, possibilities, *args, **keys)
    monkeypatch.setattr(difflib, 'get_close_matches', counted)
    return asked


def test_unknown_dependencies_stop_at_the_limit_and_their_hints_within_a_budget(hints):
    """Every unknown name was compared with every name of the file, past the limit
    too: 1000 processes with 20 unknown names each took 22 s of CPU."""
    messages = refusal(unknown_dependencies(1000, 20))
    assert messages[0] == 'procs[0] ("p0").depends: unknown process "q0-0"'
    assert len(messages) == 101 and messages[-1] == MORE
    assert len(hints) == 20, 'each hint compares with all 1000 names: 20 in the budget'


def test_hints_are_given_while_the_budget_lasts(hints, monkeypatch):
    monkeypatch.setattr(depends, 'HINT_BUDGET', 5)
    doc = {'procs': [{'name': 'web', 'run': '/bin/sleep', 'depends': ['wbe', 'weeb', 'we']},
                     {'name': 'db', 'run': '/bin/sleep'}]}
    assert refusal(doc) == ['procs[0] ("web").depends: unknown process "%s"%s' % (name, hint)
                            for name, hint in (('wbe', ' (did you mean "web"?)'),
                                               ('weeb', ' (did you mean "web"?)'), ('we', ''))]
    assert hints == ['wbe', 'weeb'], 'two names compared with both names: the budget'
    monkeypatch.setattr(depends, 'HINT_BUDGET', 1)
    refusal(doc)
    assert hints == ['wbe', 'weeb'], 'more names than the budget: no hint at all'


def test_a_file_of_unknown_dependencies_is_refused_in_a_moment():
    """A real measurement, kept small: 300 processes with 20 unknown names each took
    1.4 s of CPU before the limit and the budget, 0.02 s after."""
    doc = unknown_dependencies(300, 20)
    started = time.process_time()
    assert len(refusal(doc)) == 101
    assert time.process_time() - started < 0.5
