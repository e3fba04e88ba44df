"""Operators' requests (SPEC 6.3): what `requests.parse` takes and refuses, and
that a Request survives its trip on the wire (`as_json` then `parse`)."""
import signal

import pytest
from hypothesis import given, settings, strategies as st

from dpd import requests
from dpd.requests import BadRequest, Request, parse


def doc(command='restart', names=('web',), **fields):
    return dict({'v': 1, 'command': command, 'names': list(names)}, **fields)


def refused(document, *words):
    with pytest.raises(BadRequest) as info:
        parse(document)
    for word in words:
        assert word in str(info.value)
    return str(info.value)


# ===================================================================== each command

def test_restart():
    assert parse(doc('restart', ['web', 'db'])) == Request('restart', ('web', 'db'))


def test_signal_with_its_defaults_and_with_all():
    assert parse(doc('signal', signal='HUP')) == Request('signal', ('web',), signum=signal.SIGHUP)
    request = parse(doc('signal', ['a', 'b'], signal='USR1', all=True))
    assert (request.signum, request.all, request.names) == (signal.SIGUSR1, True, ('a', 'b'))


def test_logs_with_its_defaults_and_with_lines_and_follow():
    request = parse(doc('logs'))
    assert (request.lines, request.follow) == (requests.DEFAULT_LINES, False) == (10, False)
    request = parse(doc('logs', lines=0, follow=True))
    assert (request.lines, request.follow) == (0, True)


def test_the_version_may_be_left_out_but_no_other_is_spoken():
    assert parse({'command': 'restart', 'names': ['web']}) == Request('restart', ('web',))
    for version in (2, 0, '1', None, True, 1.5, [1]):
        refused(doc(v=version), 'version')


@pytest.mark.parametrize('document', [None, [], 'restart', 1, ['restart', 'web']])
def test_a_request_is_a_json_object(document):
    refused(document, 'JSON object')


@pytest.mark.parametrize('command', [None, 'nope', 'RESTART', 'status', 1, ['restart']])
def test_unknown_commands(command):
    document = doc()
    document['command'] = command
    refused(document, 'unknown command', 'restart, signal, logs')
    del document['command']
    refused(document, 'unknown command')


# ===================================================================== names

@pytest.mark.parametrize('names', [[], None, 'web', {'web': 1}, ('web',)],
                         ids=['empty', 'null', 'string', 'object', 'tuple'])
def test_names_are_a_non_empty_list(names):
    document = doc()
    document['names'] = names
    refused(document, '"names"')


@pytest.mark.parametrize('name', [1, None, True, ['web'], {'n': 'web'}, '', 'x' * 257])
def test_each_name_is_a_short_non_empty_string(name):
    refused(doc(names=['ok', name]), '"names"', 'not a process name')


def test_a_name_of_the_longest_length_is_fine():
    assert parse(doc(names=['x' * 256])).names == ('x' * 256,)


def test_at_most_max_names():
    names = ['p%d' % i for i in range(requests.MAX_NAMES)]
    assert len(parse(doc(names=names)).names) == requests.MAX_NAMES
    refused(doc(names=names + ['one-more']), '"names"', '1 to 1000')


def test_duplicates_collapse_keeping_the_order_given():
    assert parse(doc(names=['b', 'a', 'b', 'c', 'a'])).names == ('b', 'a', 'c')


def test_logs_takes_exactly_one_name():
    refused(doc('logs', ['a', 'b']), 'one process name')
    refused(doc('logs', []), '"names"')
    # a repeated name is still two names for `logs`: one was asked for, two given
    refused(doc('logs', ['a', 'a']), 'one process name')


# ===================================================================== node

def test_node_is_kept_and_checked():
    assert parse(doc(node='web7')).node == 'web7'
    assert parse(doc()).node is None
    assert parse(doc(node=None)).node is None
    assert parse(doc(node='n' * 256)).node == 'n' * 256
    for node in ('', 7, True, ['web7'], 'n' * 257):
        refused(doc(node=node), '"node"')


# ===================================================================== signals

@pytest.mark.parametrize('text, number', [
    ('HUP', signal.SIGHUP), ('SIGHUP', signal.SIGHUP), ('hup', signal.SIGHUP),
    ('SigHup', signal.SIGHUP), ('sigterm', signal.SIGTERM), ('USR1', signal.SIGUSR1),
    ('KILL', signal.SIGKILL), ('1', signal.SIGHUP), (1, signal.SIGHUP), (15, signal.SIGTERM),
    ('15', signal.SIGTERM), ('IOT', signal.SIGABRT)])
def test_signal_names_and_numbers(text, number):
    assert requests.signal_number(text) == number
    assert parse(doc('signal', signal=text)).signum == number


@pytest.mark.parametrize('text', ['NOPE', 'SIGNOPE', '', 'SIG', 'SIG_DFL', 'sig_ign', 'SIG_IGN',
                                  'SIG_BLOCK', '0', 0, 999, '999', -1, '-1', 'HUP ', ' 1',
                                  '1.0', 'Signals', 'name', 'SIGSIGHUP',
                                  # digits that int() refuses or reads otherwise: once a
                                  # ValueError that ended the daemon
                                  '\u00b2', '\u0663', '9' * 5000, '0015'])
def test_unknown_signals_are_refused(text):
    refused(doc('signal', signal=text), 'signal')


def test_a_signal_number_of_five_thousand_digits_is_refused():
    refused(doc('signal', signal=10 ** 5000), 'signal')


@pytest.mark.parametrize('text', [True, False, None, 1.0, ['HUP'], {'HUP': 1}])
def test_a_signal_is_a_name_or_a_number_not_a_bool_or_else(text):
    refused(doc('signal', signal=text), '"signal"')


def test_a_signal_is_required():
    refused(doc('signal'), '"signal"')


@pytest.mark.parametrize('value', [1, 0, 'true', None, [True]])
def test_all_and_follow_are_booleans(value):
    refused(doc('signal', signal='HUP', all=value), '"all"')
    refused(doc('logs', follow=value), '"follow"')


# ===================================================================== lines

def test_lines_are_clamped_to_the_maximum():
    assert parse(doc('logs', lines=requests.MAX_LINES)).lines == 10000
    assert parse(doc('logs', lines=10 ** 12)).lines == requests.MAX_LINES == 10000


@pytest.mark.parametrize('lines', [-1, -10 ** 9, 1.0, '10', True, None, [10]])
def test_lines_are_a_whole_number_zero_or_more(lines):
    refused(doc('logs', lines=lines), '"lines"')


# ===================================================================== on the wire

def test_as_json_is_the_request_as_sent_on():
    request = parse(doc('signal', ['a', 'b'], signal='sighup', all=True, node='web7'))
    assert request.as_json() == {'v': 1, 'command': 'signal', 'names': ['a', 'b'],
                                 'signal': 'SIGHUP', 'all': True, 'node': 'web7'}
    assert 'node' not in request.as_json(node=False)        # past the master
    assert parse(doc('logs', lines=7, follow=True)).as_json() == {
        'v': 1, 'command': 'logs', 'names': ['web'], 'lines': 7, 'follow': True}
    assert parse(doc()).as_json() == {'v': 1, 'command': 'restart', 'names': ['web']}


SIGNALS = sorted({int(s) for s in signal.Signals})
NAMES = st.text(min_size=1, max_size=20)
NODES = st.none() | st.text(min_size=1, max_size=20)


@st.composite
def requests_(draw):
    command = draw(st.sampled_from(requests.COMMANDS))
    if command == 'logs':
        names = (draw(NAMES),)
    else:
        names = tuple(dict.fromkeys(draw(st.lists(NAMES, min_size=1, max_size=8))))
    fields = {'node': draw(NODES)}
    if command == 'signal':
        fields.update(signum=draw(st.sampled_from(SIGNALS)), all=draw(st.booleans()))
    elif command == 'logs':
        fields.update(lines=draw(st.integers(0, requests.MAX_LINES)), follow=draw(st.booleans()))
    return Request(command, names, **fields)


@settings(max_examples=300, deadline=None)
@given(requests_())
def test_a_request_survives_as_json_then_parse(request):
    assert parse(request.as_json()) == request
    assert parse(request.as_json(node=False)) == request._replace(node=None)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(['v', 'command', 'names', 'signal', 'all', 'lines',
                                        'follow', 'node', 'other']),
                       st.none() | st.booleans() | st.integers(-5, 20000) | st.text(max_size=5)
                       | st.lists(st.text(max_size=3), max_size=3), max_size=8))
def test_parse_answers_a_request_or_bad_request_never_anything_else(document):
    try:
        request = parse(document)
    except BadRequest:
        return
    assert parse(request.as_json()) == request


# ===================================================================== answers

def test_answers_carry_dpd_ctl_exit_statuses():
    assert requests.refused('no process x') == {'ok': False, 'code': 1, 'error': 'no process x'}
    assert requests.bad_usage('unknown signal') == {'ok': False, 'code': 2,
                                                    'error': 'unknown signal'}
    assert requests.done(results=[]) == {'ok': True, 'code': 0, 'results': []}
