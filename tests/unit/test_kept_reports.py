"""What the master keeps of its nodes' reports (dpd.cluster.nodes.Reports), pure:
bounded together, so that its state file stays readable (its readers stop at
64 MiB) whatever nodes, or anyone without keys, report (SPEC 5.2)."""
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpd import jsonfile, state
from dpd.cluster import events as ev
from dpd.cluster import nodes, protocol
from dpd.cluster.config import parse_master
from dpd.cluster.master import STRANGER_TTL, MasterPolicy
from dpd.cluster.states import node_as_desired
from protocol_cases import FUZZ, LIST_A

MiB = 1024 * 1024


def master(names):
    policy = MasterPolicy('epoch-1', False)
    load(policy, names, 0.0)
    return policy


def load(policy, names, now):
    policy.handle(ev.ConfigLoaded(parse_master({
        'master_stats': 'ipc:///tmp/dpdt-stats', 'master_updates': 'ipc:///tmp/dpdt-updates',
        'nodes': {name: LIST_A for name in names}}, '/srv/m.json'), 1000.0), now)


def report(policy, node, now=1.0, frame=None, **fields):
    frames = (b'REPORT', frame) if frame is not None else \
        tuple(protocol.report(node, 'boot-1', '1.0', None, **fields))
    policy.handle(ev.LinkMessage('stats', (node.encode(),) + tuple(frames)), now)


def big_processes(count=850, text='e' * 1000):
    """About 1 MB of processes: what one REPORT may carry."""
    return [{'name': 'p%d' % i, 'state': 'failed', 'restarts': 0, 'error': text}
            for i in range(count)]


def normal_processes(count):
    return [{'name': 'web-worker-%04d' % i, 'state': 'running', 'pid': 100000 + i,
             'restarts': 0, 'since': 1712345678.125, 'restart': True,
             'memory_bytes': 123456789, 'cpu_seconds': 1234.5, 'health': 'healthy'}
            for i in range(count)]


def records(policy, now=1.0):
    return {r['node']: r for r in policy.snapshot(now)['nodes']}


def state_text(policy, now=1.0):
    return jsonfile.dumps({'schema': 1, **policy.snapshot(now)})


# ------------------------------------------------------------ the bound, whole

# Before this round nodes.py kept each node's report in full: 70 REPORTS of 1 MB
# (anyone can send them without keys) took the state file past the 64 MiB its
# readers (dpd-ctl, a restarted master) accept.
def test_big_reports_of_many_nodes_keep_the_state_file_far_under_its_readers_limit():
    names = ['n%02d' % i for i in range(40)]
    policy = master(names)
    frame = protocol.report('NODE', 'b', 'x', None, processes=big_processes())[1]
    assert len(frame) > 850000
    for name in names:
        report(policy, name, frame=frame.replace(b'"NODE"', json.dumps(name).encode()))
    text = state_text(policy)
    assert len(text) < state.MAX_STATE_BYTES / 2, len(text)
    assert len(text) < nodes.REPORTS_BYTES + MiB
    assert sum(n.report_bytes for n in policy.nodes.values()) <= nodes.REPORTS_BYTES
    kept = records(policy)
    assert all(r['processes'] for r in kept.values()), 'every node keeps its share'
    cut = [r for r in kept.values() if r['processes_more']]
    assert cut and all(len(r['processes']) + r['processes_more'] == 850 for r in cut)
    assert not any(node_as_desired(r) for r in cut)
    assert len(jsonfile.dumps(kept['n39'])) < 2 * policy.reports.share


def test_a_legitimate_report_of_a_thousand_processes_is_kept_whole():
    policy = master(['n%02d' % i for i in range(50)])
    processes = normal_processes(1000)
    for name in policy.nodes:
        report(policy, name, processes=processes, worker={'running': True, 'errors': ['x']},
               reason='in-sync', last_rejected={'gen': 1, 'reason': 'r' * 1000})
    for record in records(policy).values():
        assert record['processes'] == processes and record['processes_more'] == 0
        assert record['last_rejected']['reason'] == 'r' * 1000


def test_the_pool_is_first_come_and_every_node_keeps_its_share(monkeypatch):
    monkeypatch.setattr(nodes, 'REPORTS_BYTES', 64 * 1024, raising=False)
    monkeypatch.setattr(nodes, 'REPORTS_SHARES', 16 * 1024, raising=False)
    policy = master(['n%d' % i for i in range(8)])        # a share of 2 KiB each
    for name in ('n0', 'n1', 'n2'):                        # 21 KB each: two fit whole
        report(policy, name, processes=big_processes(20))
    report(policy, 'n3', processes=normal_processes(120))
    report(policy, 'n7', processes=normal_processes(8))   # an honest one, after them
    kept = records(policy)
    assert kept['n0']['processes'] == kept['n1']['processes'] == big_processes(20)
    short = kept['n2']['processes']                        # its texts clipped
    assert [p['name'] for p in short] == ['p%d' % i for i in range(20)]
    assert all(p['error'].endswith('...') and len(p['error']) <= nodes.SHORT_TEXT
               for p in short) and kept['n2']['processes_more'] == 0
    more = kept['n3']['processes_more']                    # the processes that fit
    assert 0 < more < 120 and kept['n3']['processes'] == normal_processes(120 - more)
    assert kept['n7']['processes'] == normal_processes(8) and kept['n7']['processes_more'] == 0
    assert sum(n.report_bytes for n in policy.nodes.values()) <= 64 * 1024
    report(policy, 'n0', now=2.0, processes=[])           # n0 is small again: room for n3
    report(policy, 'n3', now=2.0, processes=normal_processes(120))
    assert records(policy, 2.0)['n3']['processes_more'] == 0


def test_a_node_forgotten_gives_its_room_back(monkeypatch):
    monkeypatch.setattr(nodes, 'REPORTS_BYTES', 64 * 1024, raising=False)
    monkeypatch.setattr(nodes, 'REPORTS_SHARES', 16 * 1024, raising=False)
    policy = master(['n%d' % i for i in range(8)])
    for name in ('n0', 'n1', 'n2'):
        report(policy, name, processes=big_processes(20))
    load(policy, ['n%d' % i for i in range(1, 8)], 2.0)   # n0 leaves the file...
    policy.handle(ev.Tick(), 2.0 + STRANGER_TTL + 1)       # ...and is forgotten
    assert 'n0' not in policy.nodes
    report(policy, 'n3', now=3.0 + STRANGER_TTL, processes=big_processes(20))
    assert records(policy, 3.0 + STRANGER_TTL)['n3']['processes_more'] == 0


# ------------------------------------------------------------ a report kept short

def worst_short_parts():
    """The longest last_rejected, worker and reason a REPORT may carry: the
    numbers longest, the texts of characters the file writes in 12 bytes."""
    astral = '\U0001f600' * 1000
    rejected = {'gen': protocol.MAX_GEN, 'sha256': 'f' * 64, 'reason': astral}
    worker = {'running': False, 'pid': -2 ** 63, 'config_ok': False,
              'config_loaded_at': -1.2345678901234567e-300, 'errors': [astral] * 10}
    return rejected, worker, astral[:256]


def test_the_short_form_of_the_other_parts_fits_the_smallest_share():
    rejected, worker, reason = worst_short_parts()
    whole = {'worker': worker, 'processes': big_processes(5), 'reason': reason}
    report, kept_rejected, size = nodes.fitted(whole, rejected, nodes.MIN_SHARE)
    assert len(jsonfile.dumps(report)) + len(jsonfile.dumps(kept_rejected)) <= size \
        <= nodes.MIN_SHARE
    assert report['more'] == 5 - len(report['processes'])
    assert kept_rejected['gen'] == protocol.MAX_GEN and len(report['worker']['errors']) == 2


def test_a_report_that_fits_is_measured_and_kept_as_it_came():
    whole = {'worker': {'running': True}, 'processes': normal_processes(3), 'reason': 'ok'}
    rejected = {'gen': 1, 'reason': 'no'}
    size = len(jsonfile.dumps(whole)) + len(jsonfile.dumps(rejected))
    assert nodes.fitted(whole, rejected, size) == (whole, rejected, size)
    report, _, smaller = nodes.fitted(whole, rejected, size - 1)
    assert report['more'] == 1 and report['processes'] == whole['processes'][:2]
    assert smaller <= size - 1


@pytest.mark.parametrize('text', ['plain', 'x' * 1000, '"\\' * 500, '\x01\x7f' * 500,
                                  '\u00e9' * 1000, '\U0001f600' * 1000, 'ab\U0001f600' * 300])
def test_a_short_text_is_clipped_to_its_bytes_in_the_file(text):
    short = nodes.short_text(text)
    assert len(jsonfile.dumps(short)) - 2 <= nodes.SHORT_TEXT
    if len(jsonfile.dumps(text)) - 2 <= nodes.SHORT_TEXT:
        assert short is text
    else:
        assert short.endswith('...') and text.startswith(short[:-3])
        assert len(jsonfile.dumps(short[:-3] + text[len(short) - 3])) - 2 > \
            nodes.SHORT_TEXT - 3, 'no shorter than it must be'


def test_what_a_stranger_or_a_version_says_is_kept_short():
    policy = master(['n1'])
    long = '\U0001f600' * 256
    report(policy, 'stranger', last_rejected={'gen': 1, 'reason': long * 3})
    hello = protocol.hello('n1', 'boot-1', long, None)
    policy.handle(ev.LinkMessage('stats', (b'n1',) + tuple(hello)), 1.0)
    kept = records(policy)
    assert len(jsonfile.dumps(kept['stranger']['last_rejected'])) < 300
    assert len(jsonfile.dumps(kept['n1']['client_version'])) - 2 <= nodes.SHORT_TEXT


# ------------------------------------------------------------ the bound a REPORT is counted by

text = st.text(st.characters(blacklist_categories=('Cs',)), max_size=40)
process = st.fixed_dictionaries(
    {'name': text.filter(bool), 'state': text},
    optional={'error': text, 'status_text': text, 'health': text,
              'waiting_for': st.lists(text, max_size=3), 'pid': st.integers(0, 2 ** 40),
              'since': st.floats(-1e11, 1e11), 'last_exit': st.fixed_dictionaries(
                  {}, optional={'code': st.integers(-255, 255), 'oom': text})})


@FUZZ
@given(st.lists(process, max_size=5), st.one_of(st.none(), text), st.booleans())
def test_a_report_never_takes_more_in_the_file_than_it_was_counted(processes, reason, ascii):
    """Floats as a client writes them (repr): a number written short (1e11) may
    take more (README, "The protocol")."""
    fields = protocol.report('n1', 'b', 'v', None, processes=processes, reason=reason,
                             worker={'running': True, 'errors': [reason or '']},
                             last_rejected={'reason': reason or ''})[1]
    frame = fields if ascii else json.dumps(json.loads(fields), ensure_ascii=False,
                                            separators=(',', ':')).encode()
    message = protocol.decode_request([b'REPORT', frame])
    kept = nodes.kept_report(message.fields)
    exact = len(jsonfile.dumps(kept)) + len(jsonfile.dumps(message.fields['last_rejected']))
    assert exact <= nodes._wire_bytes(frame)


def test_a_report_of_raw_bytes_the_file_escapes_is_counted_six_times():
    for raw in ('\u00e9', '\x7f'):
        frame = ('{"v":1,"node":"n1","boot":"b","version":"v","applied":null,"reason":"%s"}'
                 % (raw * 200)).encode()
        message = protocol.decode_request([b'REPORT', frame])
        assert len(jsonfile.dumps(nodes.kept_report(message.fields))) <= \
            nodes._wire_bytes(frame) == 6 * len(frame)
