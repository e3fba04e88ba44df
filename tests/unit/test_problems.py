"""A document's problems are listed up to Problems.LIMIT, and the checks stop
looking past it: a file or a list of a million bad entries is refused with a
hundred reasons and one line saying there are more, in a moment, not with a
million log lines (the client logs each reason, the worker keeps them in its
state file)."""
import pytest

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
