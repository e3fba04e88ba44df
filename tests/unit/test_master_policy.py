"""The master's policy (dpd.cluster.master), pure: scripted facts and a fake
clock in, actions out (SPEC 2.4, 2.5, 4, 5)."""
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpd import jsonfile
from dpd.cluster import actions as act
from dpd.cluster import events as ev
from dpd.cluster import protocol
from dpd.cluster.config import parse_master
from dpd.cluster.master import PENDING_GRACE, STALE_AFTER, MasterPolicy
from dpd.cluster.protocol import MAX_GEN, REPORT_IVL
from protocol_cases import FUZZ, LIST_A, LIST_B, LIST_C, proc, raw, stamp

# ============================================================ the master's policy

def master_config(nodes):
    return parse_master({'master_stats': 'ipc:///tmp/dpdt-stats',
                         'master_updates': 'ipc:///tmp/dpdt-updates', 'nodes': nodes},
                        '/srv/m.json')


class MasterWorld:
    def __init__(self, nodes, secure=False, previous=None, wall=1000.0):
        self.policy = MasterPolicy('epoch-1', secure, previous)
        self.logs, self.replies, self.notifies = [], [], []
        self.load(nodes, 0.0, wall)

    def handle(self, event, now):
        actions = self.policy.handle(event, now)
        for action in actions:
            if isinstance(action, act.Log):
                self.logs.append((now, action))
            elif isinstance(action, act.Send) and action.socket == 'stats':
                rid, frames = action.frames[0], action.frames[1:]
                self.replies.append((rid, protocol.decode_reply(frames)))
            elif isinstance(action, act.Send):
                message = protocol.decode_update(action.frames)
                if message.kind == 'NOTIFY':
                    self.notifies.append((now, message))
        return actions

    def load(self, nodes, now, wall=1000.0):
        return self.handle(ev.ConfigLoaded(master_config(nodes), wall), now)

    def ask(self, node, now, kind='HELLO', applied=None, rid=b'rid-1', boot='boot-1',
            user_id=None, **more):
        if kind == 'HELLO':
            frames = protocol.hello(node, boot, '1.0', applied)
        else:
            frames = protocol.report(node, boot, '1.0', applied, **more)
        before = len(self.replies)
        self.handle(ev.LinkMessage('stats', (rid,) + tuple(frames), user_id), now)
        answers = self.replies[before:]
        assert all(r == rid for r, _ in answers), 'replies go to whoever asked'
        return [m for _, m in answers]

    def listen(self, *nodes, now=0.5, subscribe=True):
        """First-round clients' SUBs (un)subscribing to their nodes' NOTIFYs."""
        for node in nodes:
            self.handle(ev.LinkMessage('updates', ((b'\x01' if subscribe else b'\x00') +
                                                   protocol.node_topic(node),)), now)

    def desired(self, node):
        return self.policy.nodes[node].desired

    def node_state(self, node, now):
        return self.policy.nodes[node].state(now)

    def log_text(self):
        return '\n'.join(a.message for _, a in self.logs)

    def tick(self, now):
        return self.handle(ev.Tick(), now)


def test_master_versions_a_list_and_a_list_change():
    world = MasterWorld({'n1': LIST_A})
    first = world.desired('n1')
    assert first.gen == 1000 * 1000 and first.sha256 == stamp(LIST_A, 0)['sha256']
    world.listen('n1')
    assert [m.fields['gen'] for _, m in world.notifies] == [first.gen]
    world.load({'n1': LIST_B}, 5.0, wall=1000.0)      # the wall clock did not move
    second = world.desired('n1')
    assert second.gen > first.gen and second.sha256 == stamp(LIST_B, 0)['sha256']
    world.load({'n1': LIST_A}, 6.0, wall=999.0)       # nor backwards
    assert world.desired('n1').gen > second.gen
    assert [m.fields['gen'] for _, m in world.notifies][-1] == world.desired('n1').gen
    assert [m.fields['node'] for _, m in world.notifies] == ['n1'] * 3


def test_the_config_record_keeps_the_wall_time_of_the_last_successful_load():
    """diprocd_config_load_timestamp_seconds (SPEC 6.4): a rejected file keeps it."""
    world = MasterWorld({'n1': LIST_A}, wall=1500.0)
    world.handle(ev.ConfigRejected(('/srv/m.json: invalid JSON',)), 1.0)
    record = world.policy.snapshot(1.0)['config']
    assert (record['ok'], record['loaded_at']) == (False, 1500.0)
    world.load({'n1': LIST_B}, 2.0, wall=1600.0)
    record = world.policy.snapshot(2.0)['config']
    assert (record['ok'], record['loaded_at']) == (True, 1600.0)


def test_master_keeps_the_version_of_an_identical_list():
    world = MasterWorld({'n1': LIST_A, 'n2': LIST_C})
    before = {n: world.desired(n) for n in ('n1', 'n2')}
    world.listen('n1', 'n2')
    notified = len(world.notifies)
    reordered = [{'args': ['100'], 'run': '/bin/sleep', 'name': 'a'}]   # same list, other order
    world.load({'n1': reordered, 'n2': LIST_B}, 5.0, wall=2000.0)
    assert world.desired('n1') == before['n1']
    assert world.desired('n2').gen > before['n2'].gen
    assert [m.fields['node'] for _, m in world.notifies[notified:]] == ['n2']


def test_a_restarted_master_keeps_previous_versions_of_identical_lists():
    old = MasterWorld({'n1': LIST_A, 'n2': LIST_B}, wall=5000.0)
    previous = {n: {'gen': old.desired(n).gen, 'sha256': old.desired(n).sha256}
                for n in ('n1', 'n2')}
    new = MasterWorld({'n1': LIST_A, 'n2': LIST_C, 'n3': LIST_A},
                      previous={n: dict(p) for n, p in previous.items()},
                      wall=1.0)                       # and a clock far behind
    assert new.desired('n1').gen == previous['n1']['gen']
    assert new.desired('n2').gen > max(p['gen'] for p in previous.values())
    assert new.desired('n3').gen > new.desired('n2').gen
    answer = new.ask('n1', 1.0, applied=previous['n1'])
    assert [m.kind for m in answer] == ['ACK']


def test_an_invalid_node_list_keeps_the_last_valid_one():
    world = MasterWorld({'n1': LIST_A, 'n2': LIST_C})
    good = world.desired('n1')
    world.load({'n1': [proc('a', resatrt=True)], 'n2': LIST_B}, 5.0, wall=2000.0)
    assert world.desired('n1') == good
    assert world.policy.nodes['n1'].errors
    assert 'unknown key "resatrt"' in world.log_text()
    assert 'node n1: list rejected; it keeps its last valid list' in world.log_text()
    assert world.desired('n2').sha256 == stamp(LIST_B, 0)['sha256'], 'others proceed'
    [answer] = world.ask('n1', 6.0)
    assert answer.kind == 'STATE' and protocol.decode_body(answer.body) == LIST_A
    record = [n for n in world.policy.snapshot(6.0)['nodes'] if n['node'] == 'n1'][0]
    assert record['errors'] and record['desired']['gen'] == good.gen
    world.load({'n1': [proc('a', resatrt=True)], 'n2': LIST_B}, 7.0, wall=2000.0)
    assert world.log_text().count('list rejected') == 1, 'the same errors are said once'


def test_a_node_invalid_from_the_start_gets_an_error_not_a_list():
    world = MasterWorld({'n1': [proc('a', resatrt=True)]})
    [answer] = world.ask('n1', 1.0)
    assert answer.kind == 'ERROR' and answer.fields['code'] == 'no-valid-list'
    assert world.notifies == []


def test_an_absent_node_is_unmanaged():
    world = MasterWorld({'n1': LIST_A, 'n2': LIST_B})
    [answer] = world.ask('stranger', 1.0)
    assert answer.kind == 'UNMANAGED' and answer.fields['node'] == 'stranger'
    world.ask('n2', 1.0, rid=b'rid-2', applied=stamp(LIST_B, world.desired('n2').gen))
    world.load({'n1': LIST_A}, 2.0)
    assert 'node n2: no longer in the master file' in world.log_text()
    [answer] = world.ask('n2', 3.0, rid=b'rid-2', applied=stamp(LIST_B, 1))
    assert answer.kind == 'UNMANAGED'
    assert world.node_state('n2', 3.0) == 'unmanaged'
    assert world.node_state('stranger', 3.0) == 'unmanaged'


def test_what_a_node_reports_never_moves_the_masters_versions():
    """SPEC 5.2: a node claiming a huge gen (or the largest) changes no version of
    its own or of any other node; the client takes a new master's list by its
    epoch, not by outbidding gens."""
    world = MasterWorld({'n1': LIST_A, 'n2': LIST_B})
    before = {n: world.desired(n).gen for n in ('n1', 'n2')}
    for gen in (before['n1'] + 10 ** 6, MAX_GEN - 1, MAX_GEN):
        [answer] = world.ask('n1', 1.0, applied={'gen': gen,
                                                 'sha256': stamp(LIST_C, 0)['sha256']})
        assert answer.kind == 'STATE' and answer.fields['gen'] == before['n1']
    assert {n: world.desired(n).gen for n in ('n1', 'n2')} == before
    world.load({'n1': LIST_C, 'n2': LIST_C}, 3.0, wall=1001.0)
    assert {world.desired(n).gen for n in ('n1', 'n2')} == {1001000, 1001001}, 'from the clock'



def test_gens_that_would_pass_the_limit_start_again_under_a_new_epoch():
    world = MasterWorld({'n1': LIST_A}, previous={'n1': {'gen': MAX_GEN, 'sha256': 'x' * 64}})
    assert world.desired('n1').gen == 1000 * 1000 and world.policy.epoch == 'epoch-1.1'
    [answer] = world.ask('n1', 1.0)
    assert answer.fields['epoch'] == 'epoch-1.1' and answer.fields['gen'] <= MAX_GEN


# Regression test; before 92e604f, MasterPolicy._answer outbids with
# applied.gen + 1 without a bound: a report of gen 2**63-1 makes the master emit gens above
# protocol.MAX_GEN, which every client refuses, for that node and (through global_gen) every
# later version of every node
def test_a_node_reporting_the_largest_gen_does_not_wedge_the_master():
    world = MasterWorld({'n1': LIST_A, 'n2': LIST_B})
    answers = world.ask('n1', 1.0, applied={'gen': MAX_GEN,
                                            'sha256': stamp(LIST_C, 0)['sha256']})
    world.load({'n1': LIST_A, 'n2': LIST_C}, 2.0)
    body, sha = world.desired('n2').body, world.desired('n2').sha256
    frames = protocol.state('n2', world.desired('n2').gen, sha, body, 'epoch-1')
    assert world.desired('n2').gen <= MAX_GEN
    protocol.decode_reply(frames)
    for answer in answers:
        assert answer.fields['gen'] <= MAX_GEN


def test_master_answers_hello_and_report():
    world = MasterWorld({'n1': LIST_A})
    desired = world.desired('n1')
    [answer] = world.ask('n1', 1.0)
    assert answer.kind == 'STATE' and answer.fields['node'] == 'n1'
    assert answer.fields['gen'] == desired.gen and answer.body == desired.body
    [answer] = world.ask('n1', 2.0, kind='REPORT', applied=stamp(LIST_A, desired.gen))
    assert answer.kind == 'ACK' and answer.fields['sha256'] == desired.sha256
    assert answer.fields['report_ivl'] == REPORT_IVL
    [answer] = world.ask('n1', 3.0, kind='REPORT', applied=stamp(LIST_C, 1))
    assert answer.kind == 'STATE', 'a node behind or different gets the list'


def test_master_does_not_resend_a_list_the_node_refused():
    world = MasterWorld({'n1': LIST_A})
    desired = world.desired('n1')
    refused = {'gen': desired.gen, 'sha256': desired.sha256, 'reason': 'root not accepted'}
    answers = world.ask('n1', 1.0, kind='REPORT', applied=stamp(LIST_C, 1),
                        last_rejected=refused)
    assert [m for m in answers if m.kind == 'STATE'] == []
    assert world.node_state('n1', 1.0) == 'rejected'
    [answer] = world.ask('n1', 2.0)              # a HELLO always gets the list
    assert answer.kind == 'STATE'


def test_node_states_at_the_right_times():
    world = MasterWorld({'n1': LIST_A})
    gen = world.desired('n1').gen
    assert world.node_state('n1', 0.0) == 'never-seen'
    world.ask('n1', 10.0)
    assert world.node_state('n1', 10.0) == 'pending'
    world.ask('n1', 29.0, kind='REPORT', applied=None)
    assert world.node_state('n1', PENDING_GRACE - 0.1) == 'pending'
    assert world.node_state('n1', PENDING_GRACE + 0.1) == 'lagging'
    world.ask('n1', 31.0, kind='REPORT', applied=stamp(LIST_A, gen))
    assert world.node_state('n1', 31.0) == 'in-sync'
    assert world.node_state('n1', 31.0 + STALE_AFTER - 0.1) == 'in-sync'
    assert world.node_state('n1', 31.0 + STALE_AFTER + 0.1) == 'stale'
    world.ask('n1', 100.0, kind='REPORT', applied=stamp(LIST_A, gen))
    world.load({'n1': LIST_B}, 101.0)
    assert world.node_state('n1', 101.0) == 'pending'
    assert world.node_state('n1', 101.0 + PENDING_GRACE + 0.1) == 'lagging'
    refused = dict(stamp(LIST_B, world.desired('n1').gen), reason='no')
    world.ask('n1', 102.0, kind='REPORT', applied=stamp(LIST_A, gen), last_rejected=refused)
    assert world.node_state('n1', 102.0) == 'rejected'
    world.load({}, 103.0)
    assert world.node_state('n1', 103.0) == 'unmanaged'
    assert STALE_AFTER == 3 * REPORT_IVL + 5


def test_node_state_changes_are_logged_and_written_by_the_aging_tick():
    world = MasterWorld({'n1': LIST_A})
    world.tick(0.0)
    world.ask('n1', 1.0, kind='REPORT', applied=stamp(LIST_A, world.desired('n1').gen))
    world.tick(1.0)
    world.policy.flush(1.0)
    world.tick(1.0 + STALE_AFTER + 1)
    assert 'node n1: stale' in world.log_text()
    assert world.policy.flush(1.0 + STALE_AFTER + 1), 'the state file is rewritten'


def test_master_sends_hugz_every_2_s():
    world = MasterWorld({'n1': LIST_A})
    sent = []
    for now in (0.0, 1.0, 1.99, 2.0, 3.0, 4.0):
        sent += [(now, a) for a in world.tick(now)
                 if isinstance(a, act.Send) and a.frames[1] == b'HUGZ']
    assert [t for t, _ in sent] == [0.0, 2.0, 4.0]
    assert [protocol.decode_update(a.frames).fields['hseq'] for _, a in sent] == [1, 2, 3]


def test_a_subscription_gets_a_notify_at_most_once_a_second():
    world = MasterWorld({'n1': LIST_A, 'n10': LIST_B})
    start = len(world.notifies)
    for now in (2.0, 2.5, 3.1):
        world.handle(ev.LinkMessage('updates', (b'\x01N:n1\0',)), now)
    world.handle(ev.LinkMessage('updates', (b'\x01N:stranger\0',)), 3.2)
    world.handle(ev.LinkMessage('updates', (b'\x00N:n1\0',)), 3.3)      # unsubscribe
    world.handle(ev.LinkMessage('updates', (b'\x01',)), 3.4)            # everything
    world.handle(ev.LinkMessage('updates', (b'\x01N:n1\0', b'x')), 3.5)
    assert [(t, m.fields['node']) for t, m in world.notifies[start:]] == [(2.0, 'n1'),
                                                                          (3.1, 'n1')]


def test_identity_mismatch_is_refused_when_secure():
    world = MasterWorld({'n1': LIST_A, 'n2': LIST_B}, secure=True)
    [answer] = world.ask('n1', 1.0, user_id='n2')
    assert answer.kind == 'ERROR' and answer.fields['code'] == 'identity-mismatch'
    assert 'the key of node n2 asked as node n1: refused' in world.log_text()
    assert world.policy.nodes['n1'].seen_at is None
    [answer] = world.ask('n1', 2.0, user_id=None)
    assert answer.kind == 'ERROR'
    [answer] = world.ask('n1', 3.0, user_id='n1')
    assert answer.kind == 'STATE' and answer.fields['node'] == 'n1'


def test_without_keys_a_client_may_ask_as_any_node():
    world = MasterWorld({'n1': LIST_A}, secure=False)
    [answer] = world.ask('n1', 1.0, user_id=None)
    assert answer.kind == 'STATE'


def test_two_boots_claiming_one_node_are_reported():
    world = MasterWorld({'n1': LIST_A})
    world.ask('n1', 1.0, boot='boot-1')
    world.ask('n1', 2.0, boot='boot-1', rid=b'rid-1')
    assert 'two clients claim' not in world.log_text()
    world.ask('n1', 3.0, boot='boot-2', rid=b'rid-2')
    assert 'node n1: two clients claim this node (client runs boot-1, boot-2)' in \
        world.log_text()
    record = world.policy.snapshot(3.0)['nodes'][0]
    assert record['clients'] == 2
    world.ask('n1', 3.0 + STALE_AFTER + 1, boot='boot-2', rid=b'rid-2')
    assert world.policy.snapshot(3.0 + STALE_AFTER + 1)['nodes'][0]['clients'] == 1


def test_bad_requests_get_an_error_and_a_rate_limited_log_line():
    world = MasterWorld({'n1': LIST_A})
    for i in range(200):
        world.handle(ev.LinkMessage('stats', (b'rid-x', b'HELLO', b'{"v":2}')), 1.0 + i / 100)
    errors = [m for r, m in world.replies if r == b'rid-x']
    # protocol.md 5.3: an unknown version gets its own code
    assert len(errors) == 200 and {m.fields['code'] for m in errors} == {'unsupported-version'}
    assert world.log_text().count('dropped a bad message') == 1
    world.handle(ev.LinkMessage('stats', (b'rid-x', b'HELLO', b'{"v":2}')), 70.0)
    assert '(199 more like it in the last 60 s)' in world.log_text()


def test_bad_node_names_never_become_nodes():
    world = MasterWorld({'n1': LIST_A})
    for node in ('web 1', '', '../x', 'n1\0'):
        fields = json.loads(protocol.hello('n1', 'b', 'v', None)[1])
        fields['node'] = node
        world.handle(ev.LinkMessage('stats', (b'rid', b'HELLO', raw(fields))), 1.0)
    assert set(world.policy.nodes) == {'n1'}
    assert [m.fields['code'] for _, m in world.replies] == ['bad-request'] * 4


def test_a_report_is_checked_and_only_its_known_fields_are_kept():
    world = MasterWorld({'n1': LIST_A})
    processes = [{'name': 'p%d' % i, 'state': 'running', 'pid': i, 'junk': 'x' * 5000,
                  'error': 'e' * 1000} for i in range(100)]
    world.ask('n1', 1.0, kind='REPORT', applied=None, processes=processes,
              worker=dict({'k%d' % i: i for i in range(100)}, running=True), reason='r')
    record = world.policy.snapshot(1.0)['nodes'][0]
    assert len(record['processes']) == 100 and 'junk' not in record['processes'][0]
    assert record['processes'][0] == {'name': 'p0', 'state': 'running', 'pid': 0,
                                      'error': 'e' * 1000}
    assert record['worker'] == {'running': True}


# Regression test (SPEC 5.2): before this round, `"last_rejected": "x"` for a managed
# node not in sync raised AttributeError in MasterPolicy._answer: one REPORT stopped
# dpd-masterd. Malformed fields now refuse the message, whatever they are.
@pytest.mark.parametrize('bad', [
    {'last_rejected': 'x'}, {'last_rejected': [1]}, {'last_rejected': {'reason': 5}},
    {'last_rejected': {'gen': -1, 'reason': 'r'}}, {'worker': 'w'}, {'worker': {'pid': 'x'}},
    {'worker': {'config_loaded_at': 'yesterday'}},
    {'processes': 'p'}, {'processes': [{'name': 'a'}]}, {'processes': [{'state': 'x'}]},
    {'processes': [{'name': 'a', 'state': 'running', 'error': 'e' * 1001}]},
    {'processes': [{'name': 'a', 'state': 'running', 'pid': 1.5}]},
    {'processes': [{'name': 'a', 'state': 'running', 'last_exit': {'at': 'now'}}]},
    {'processes': [{'name': 'a', 'state': 'running'}] * 1001}, {'reason': 'r' * 257},
], ids=repr)
def test_a_malformed_report_is_refused_and_changes_nothing(bad):
    world = MasterWorld({'n1': LIST_A})
    world.ask('n1', 1.0, kind='REPORT', applied=stamp(LIST_B, 1), reason='first')
    before = world.policy.snapshot(1.0)['nodes'][0]
    [answer] = world.ask('n1', 2.0, kind='REPORT', applied=stamp(LIST_B, 1), **bad)
    assert answer.kind == 'ERROR'
    world.tick(2.5)
    after = world.policy.snapshot(2.5)['nodes'][0]
    assert after['processes'] == before['processes'] and after['reason'] == 'first'
    assert world.node_state('n1', 2.5) == 'pending'


# Regression test; before 92e604f, master._small() recurses without a depth
# bound (two frames per level), so a REPORT nested a few hundred levels deep (valid JSON under 1
# MiB) raises RecursionError out of MasterPolicy.handle, which the controller does not catch:
# the master dies
def test_a_deeply_nested_report_does_not_break_the_master():
    world = MasterWorld({'n1': LIST_A})
    deep = '{"a":' * 600 + '1' + '}' * 600
    frame = ('{"v":1,"node":"n1","boot":"b","version":"x","applied":null,'
             '"last_rejected":%s,"worker":%s}' % (deep, deep)).encode()
    try:
        world.handle(ev.LinkMessage('stats', (b'rid', b'REPORT', frame)), 1.0)
        jsonfile.dumps(world.policy.snapshot(1.0))
    except RecursionError:      # (its thousand-frame traceback is of no use here)
        pytest.fail('RecursionError out of MasterPolicy.handle', pytrace=False)


# Regression test; before 92e604f, 1e400 in a REPORT becomes float inf
# (jsonfile.loads), master._small() keeps it, and the master's state file then holds "Infinity",
# which state.read() (strict) refuses: dpd-ctl cluster and the next master's previous_versions()
# cannot read it
def test_a_report_with_a_huge_number_keeps_the_cluster_view_strict_json():
    world = MasterWorld({'n1': LIST_A})
    frame = (b'{"v":1,"node":"n1","boot":"b","version":"x","applied":null,'
             b'"processes":[{"name":"a","pid":1e400,"since":-1e999}],"worker":{"pid":1e400}}')
    world.handle(ev.LinkMessage('stats', (b'rid', b'REPORT', frame)), 1.0)
    jsonfile.loads(jsonfile.dumps(world.policy.snapshot(1.0)))


@FUZZ
@given(st.lists(st.lists(st.binary(max_size=120), max_size=4), max_size=8))
def test_master_policy_survives_arbitrary_frames(messages):
    world = MasterWorld({'n1': LIST_A})
    for i, frames in enumerate(messages):
        world.handle(ev.LinkMessage('stats', tuple(frames)), 1.0 + i)
        world.handle(ev.LinkMessage('updates', tuple(frames)), 1.0 + i)
    assert set(world.policy.nodes) <= {'n1'} | {n for n in world.policy.nodes
                                                if protocol.NODE_PATTERN.match(n)}


# ------------------------------------------------------------ the master's own costs

def test_the_master_state_file_waits_2_ms_per_node_between_writes():
    world = MasterWorld({'n%d' % i: LIST_A for i in range(5)})
    policy = world.policy
    assert policy.state_interval() == pytest.approx(0.010)
    assert policy.flush(1.0) == [], 'the load waits for what follows it'
    assert policy.flush_deadline() == pytest.approx(1.010), 'but the loop wakes up for it'
    assert [type(a) for a in policy.flush(1.010)] == [act.WriteState]
    world.ask('n1', 1.011)
    assert policy.dirty and policy.flush(1.012) == [], 'held back'
    assert policy.flush_deadline() == pytest.approx(1.022)
    assert [type(a) for a in policy.flush(1.022)] == [act.WriteState]
    assert policy.flush(1.5) == [] and policy.flush_deadline() is None, 'nothing changed since'
    big = MasterWorld({'n%d' % i: LIST_A for i in range(3000)})
    assert big.policy.state_interval() == 2.0, 'never more than 2 s behind'
    assert big.policy.state_delay() == 1.0, 'a change alone is written within 1 s'


def test_a_slow_state_file_write_holds_the_next_one_back_nine_times_as_long():
    """Writing the state file takes at most a tenth of the master's time: a write
    of 0.4 s (10,000 nodes after an edit) is followed by none for 3.6 s, where
    the interval alone would allow one after 2 s; a quick write changes nothing."""
    world = MasterWorld({'n%d' % i: LIST_A for i in range(3000)})
    policy = world.policy
    assert policy.flush(0.0) == [], 'a load waits 1 s for what follows it'
    [write] = policy.flush(1.0)
    policy.handle(ev.StateWritten(0.4), 1.4)
    world.ask('n1', 1.5)
    assert policy.flush(1.5) == [] and policy.flush_deadline() == pytest.approx(5.0)
    assert policy.flush(4.9) == []
    [write] = policy.flush(5.0)
    policy.handle(ev.StateWritten(0.05), 5.05)
    world.ask('n1', 5.1)
    assert policy.flush(5.1) == [] and policy.flush_deadline() == pytest.approx(7.0), \
        'the interval (2 s) rules when writes are quick'
    assert [type(a) for a in policy.flush(7.0)] == [act.WriteState]


def test_an_edit_and_the_reports_of_it_are_one_write_of_the_state_file():
    """SPEC 2.5: every record changes with an edit, and again with each node's
    report of it; the first change waits for the rest (2 ms per node, at most 1 s)."""
    world = MasterWorld({'n%d' % i: LIST_A for i in range(100)})
    policy = world.policy
    assert policy.flush(0.0) == [] and [type(a) for a in policy.flush(0.2)] == [act.WriteState]
    world.load({'n%d' % i: LIST_B for i in range(100)}, 10.0, wall=2000.0)
    assert policy.flush(10.0) == [] and policy.flush_deadline() == pytest.approx(10.2)
    for i in range(100):
        desired = world.desired('n%d' % i)
        world.ask('n%d' % i, 10.0 + i / 1000, kind='REPORT', rid=b'r%d' % i,
                  applied={'gen': desired.gen, 'sha256': desired.sha256})
        assert policy.flush(10.0 + i / 1000) == []
    [write] = policy.flush(10.2)
    states = {n['node']: n['state'] for n in write.snapshot['nodes']}
    assert set(states.values()) == {'in-sync'}, 'one write, with every report in it'


def test_a_big_edit_is_one_log_line_and_a_small_one_a_line_per_node():
    world = MasterWorld({'n%02d' % i: LIST_A for i in range(3)})
    lines = [a.message for _, a in world.logs if a.level == logging.INFO]
    assert sorted(lines) == ['node n%02d: list version %d (1 processes)'
                             % (i, world.desired('n%02d' % i).gen) for i in range(3)]
    world.logs.clear()
    world.load({'n%02d' % i: LIST_B for i in range(40)}, 5.0, wall=2000.0)
    info = [a.message for _, a in world.logs if a.level == logging.INFO]
    debug = [a.message for _, a in world.logs if a.level == logging.DEBUG]
    assert info == ['new list versions for 40 nodes: n00, n01, n02, n03, n04, n05, n06, n07, '
                    'n08, n09 and 30 more (-v names each)']
    assert len(debug) == 40 and 'node n39: list version' in debug[-1]


def test_made_up_nodes_and_boots_are_remembered_only_so_far():
    """SPEC 5.2: without keys anyone can name a node or a boot; the view (and the
    state file) keeps at most MAX_STRANGERS nodes outside the file and
    MAX_PEERS boots per node, and the file's own nodes are always served."""
    from dpd.cluster.master import MAX_PEERS, MAX_STRANGERS
    world = MasterWorld({'n1': LIST_A})
    for i in range(MAX_STRANGERS + 50):
        [answer] = world.ask('s%d' % i, 1.0)
        assert answer.kind == 'UNMANAGED'
    assert len(world.policy.nodes) == MAX_STRANGERS + 1
    for i in range(3 * MAX_PEERS):
        world.ask('n1', 2.0 + i * 0.01, boot='boot-%d' % i)
    assert len(world.policy.nodes['n1'].peers) == MAX_PEERS
    [answer] = world.ask('n1', 3.0)
    assert answer.kind == 'STATE'


# ============================================================ commands to nodes (SPEC 6.3)

def command(number, node='n1', names=('a',), command='restart'):
    return ev.CommandReceived(number, {'command': command, 'names': list(names),
                                       'node': node}, 0)


def replies_to_operator(actions):
    return [(a.number, a.message, a.done) for a in actions if isinstance(a, act.Reply)]


def test_a_command_goes_to_the_connection_its_node_spoke_on_and_answers_come_back():
    world = MasterWorld({'n1': LIST_A})
    world.ask('n1', 1.0, rid=b'conn-n1')
    before = len(world.replies)
    world.handle(command(7), 2.0)
    [(rid, sent)] = world.replies[before:]
    assert rid == b'conn-n1' and sent.kind == 'COMMAND'
    assert sent.fields['request'] == {'v': 1, 'command': 'restart', 'names': ['a']}
    ref = sent.fields['ref']
    accepted = protocol.answer('n1', ref, {'ok': True, 'code': 0, 'accepted': True}, False)
    assert replies_to_operator(world.handle(
        ev.LinkMessage('stats', (b'conn-n1',) + tuple(accepted)), 2.1)) == []
    assert world.policy._relays_due() is None, "acknowledged: no deadline"
    done = protocol.answer('n1', ref, {'ok': True, 'code': 0, 'results': [
        {'name': 'a', 'pid': 42, 'extra': 'dropped'}], 'junk': 1}, True)
    out = world.handle(ev.LinkMessage('stats', (b'conn-n1',) + tuple(done)), 3.0)
    assert replies_to_operator(out) == [(7, {'ok': True, 'code': 0, 'results': [
        {'name': 'a', 'pid': 42}]}, True)]
    assert world.policy.relays == {}


def test_an_answer_from_another_connection_or_node_is_dropped():
    world = MasterWorld({'n1': LIST_A, 'n2': LIST_A})
    world.ask('n1', 1.0, rid=b'conn-n1')
    world.ask('n2', 1.0, rid=b'conn-n2')
    world.handle(command(7), 2.0)
    ref = world.replies[-1][1].fields['ref']
    forged = protocol.answer('n2', ref, {'ok': True, 'code': 0}, True)
    assert replies_to_operator(world.handle(
        ev.LinkMessage('stats', (b'conn-n2',) + tuple(forged)), 2.5)) == []
    assert 'dropped an ANSWER from node n2' in world.log_text()
    assert ref in world.policy.relays


def test_unknown_and_unconnected_nodes_are_said_at_once():
    world = MasterWorld({'n1': LIST_A})
    [(_, refused, _)] = replies_to_operator(world.handle(command(1, node='n9'), 1.0))
    assert refused['code'] == 1 and refused['error'] == 'no node n9 in /srv/m.json'
    [(_, refused, _)] = replies_to_operator(world.handle(command(2), 1.0))
    assert refused['error'] == 'node n1 is not connected, never seen'
    world.ask('n1', 2.0)
    [(_, refused, _)] = replies_to_operator(world.handle(command(3), 2.0 + STALE_AFTER + 1))
    assert refused['error'].startswith('node n1 is not connected, last seen')


def test_a_node_that_does_not_acknowledge_in_5_s_is_said_gone_and_cancelled():
    world = MasterWorld({'n1': LIST_A})
    world.ask('n1', 1.0, rid=b'conn-n1')
    world.handle(command(7), 2.0)
    assert world.policy.next_deadline() <= 7.0
    out = world.tick(7.0)
    [(number, refused, done)] = replies_to_operator(out)
    assert number == 7 and done and 'did not answer within 5 s' in refused['error']
    assert world.replies[-1][1].kind == 'CANCEL'


def test_an_operator_who_hangs_up_cancels_the_command_on_the_node():
    world = MasterWorld({'n1': LIST_A})
    world.ask('n1', 1.0, rid=b'conn-n1')
    world.handle(command(7, command='logs'), 2.0)
    ref = world.replies[-1][1].fields['ref']
    world.handle(ev.CommandGone(7), 3.0)
    assert world.replies[-1][1].kind == 'CANCEL' and world.replies[-1][1].fields['ref'] == ref
    assert world.policy.relays == {}


def accepted_command(world, number, rid=b'conn-n1'):
    """Command `number` (logs -f) on node n1, acknowledged: its ref."""
    world.ask('n1', 1.0, rid=rid)
    world.handle(command(number, command='logs'), 2.0)
    ref = world.replies[-1][1].fields['ref']
    accepted = protocol.answer('n1', ref, {'ok': True, 'code': 0, 'accepted': True}, False)
    world.handle(ev.LinkMessage('stats', (rid,) + tuple(accepted)), 2.1)
    world.tick(2.1)                 # the heartbeat and aging next due after 3 s
    return ref


def cancels(world, since):
    return [(rid, m.fields['ref']) for rid, m in world.replies[since:] if m.kind == 'CANCEL']


def test_an_answer_the_master_cannot_take_ends_the_command_at_once():
    """A node's ANSWER over MAX_JSON_BYTES is dropped: the operator is told so, at
    the next tick (due at once), rather than wait for ever."""
    world = MasterWorld({'n1': LIST_A})
    ref = accepted_command(world, 7)
    before = len(world.replies)
    huge = protocol.answer('n1', ref, {'ok': True, 'code': 0,
                                       'text': 'x' * protocol.MAX_JSON_BYTES}, True)
    assert replies_to_operator(world.handle(
        ev.LinkMessage('stats', (b'conn-n1',) + tuple(huge)), 3.0)) == []
    assert world.policy.next_deadline() <= 3.0
    [(number, refused, done)] = replies_to_operator(world.tick(3.0))
    assert number == 7 and done and refused['code'] == 1
    assert 'node n1 sent an answer the master cannot take (ANSWER header of' in refused['error']
    assert cancels(world, before) == [(b'conn-n1', ref)] and world.policy.relays == {}
    assert world.policy.next_deadline() > 3.0, 'nothing left to do at once'


def test_a_bad_answer_before_a_command_does_not_end_it():
    """Only an ANSWER refused while the command is under way ends it."""
    world = MasterWorld({'n1': LIST_A})
    bad = protocol.answer('n1', 'e-1', {'ok': 'yes'}, True)
    world.handle(ev.LinkMessage('stats', (b'conn-n1',) + tuple(bad)), 0.5)
    ref = accepted_command(world, 7)
    assert replies_to_operator(world.tick(2.5)) == [] and ref in world.policy.relays


def test_a_node_that_connects_again_ends_its_commands_cancelled_on_both_connections():
    """libzmq drops a connection that sends a message over MAXMSGSIZE: what it sent
    is lost, and the client says HELLO on a new one. The operator is told, and the
    client (which relays on across a reconnect) gets CANCEL on its new connection."""
    world = MasterWorld({'n1': LIST_A})
    ref = accepted_command(world, 7)
    world.ask('n1', 3.0, rid=b'conn-n1-again')
    before = len(world.replies)
    [(number, refused, done)] = replies_to_operator(world.tick(3.5))
    assert number == 7 and done
    assert refused['error'] == ('node n1 connected to the master again: what it answered on '
                                'its last connection is lost')
    assert cancels(world, before) == [(b'conn-n1', ref), (b'conn-n1-again', ref)]
    assert world.policy.relays == {}


def test_a_bad_request_is_a_usage_error_and_without_node_there_is_nothing_to_run():
    world = MasterWorld({'n1': LIST_A})
    [(_, bad, _)] = replies_to_operator(world.handle(
        ev.CommandReceived(1, {'command': 'reboot', 'names': ['a']}, 0), 1.0))
    assert bad['code'] == 2
    [(_, refused, _)] = replies_to_operator(world.handle(command(2, node=None), 1.0))
    assert 'the master runs no processes' in refused['error']


# ------------------------------------------------------------ an edit reaches a node

def test_a_new_list_is_pushed_to_the_connection_the_node_last_spoke_on():
    """No NOTIFY -> HELLO round trip for a node the master hears: its new list goes
    to its own connection, with the NOTIFY as the fallback the zmq thread sends
    should that connection be gone. A node never heard from, or silent for long,
    gets the NOTIFY alone."""
    world = MasterWorld({'n1': LIST_A, 'n2': LIST_A, 'n3': LIST_A})
    world.listen('n1', 'n2', 'n3')
    world.ask('n1', 1.0, kind='REPORT', rid=b'rid-n1',
              applied=stamp(LIST_A, world.desired('n1').gen))
    world.ask('n3', 1.0, kind='REPORT', rid=b'rid-n3',
              applied=stamp(LIST_A, world.desired('n3').gen))
    actions = world.load({'n1': LIST_B, 'n2': LIST_B, 'n3': LIST_B}, 2.0 + STALE_AFTER / 2,
                         wall=2000.0)
    world.ask('n1', 3.0 + STALE_AFTER / 2, kind='REPORT', rid=b'rid-n1',
              applied=stamp(LIST_B, world.desired('n1').gen))
    actions += world.load({'n1': LIST_C, 'n2': LIST_C, 'n3': LIST_C}, 2.0 + STALE_AFTER,
                          wall=2001.0)
    sends = [a for a in actions if isinstance(a, act.Send)]
    pushed = [a for a in sends if a.socket == 'stats']
    assert [a.frames[0] for a in pushed] == [b'rid-n1', b'rid-n3', b'rid-n1'], \
        'n3 was silent for longer than STALE_AFTER at the second edit'
    for action, entries in zip(pushed, (LIST_B, LIST_B, LIST_C)):
        state = protocol.decode_reply(action.frames[1:])
        assert state.kind == 'STATE' and protocol.decode_body(state.body) == entries
        assert state.fields['node'] == protocol.decode_update(action.fallback.frames).fields[
            'node'], 'the fallback is the NOTIFY of the same node'
        assert action.fallback.socket == 'updates'
    notified = [protocol.decode_update(a.frames).fields['node'] for a in sends
                if a.socket == 'updates']
    assert notified == ['n2', 'n2', 'n3']


def test_a_node_that_does_not_listen_gets_no_notify():
    """A client of this round holds one connection and no SUB: a NOTIFY for its
    node would reach nobody, so none is made, as a fallback or alone; it gets
    its list on that connection, or when it next says HELLO. A first-round
    client listens from its subscription to its end."""
    world = MasterWorld({'n1': LIST_A, 'n2': LIST_A})
    world.ask('n1', 1.0, kind='REPORT', rid=b'rid-n1',
              applied=stamp(LIST_A, world.desired('n1').gen))
    actions = world.load({'n1': LIST_B, 'n2': LIST_B}, 2.0)
    sends = [a for a in actions if isinstance(a, act.Send)]
    assert [(a.socket, a.frames[0], a.fallback) for a in sends] == [('stats', b'rid-n1', None)]
    assert world.notifies == []
    [state] = world.ask('n2', 3.0, kind='HELLO', rid=b'rid-n2')
    assert state.kind == 'STATE' and protocol.decode_body(state.body) == LIST_B
    world.listen('n1', 'n2', now=4.0)
    assert [m.fields['node'] for _, m in world.notifies] == ['n1', 'n2']
    world.listen('n2', now=5.0, subscribe=False)
    actions = world.load({'n1': LIST_C, 'n2': LIST_C}, 6.0)
    sends = [a for a in actions if isinstance(a, act.Send)]
    assert [(a.socket, a.fallback is not None) for a in sends] == [('stats', True),
                                                                    ('stats', False)]


def test_acks_are_made_once_per_version():
    world = MasterWorld({'n1': LIST_A})
    applied = stamp(LIST_A, world.desired('n1').gen)
    first = world.handle(ev.LinkMessage('stats', (b'r',) + tuple(
        protocol.report('n1', 'b', '1', applied))), 1.0)
    again = world.handle(ev.LinkMessage('stats', (b'r',) + tuple(
        protocol.report('n1', 'b', '1', applied))), 2.0)
    [first], [again] = [[a for a in actions if isinstance(a, act.Send)]
                        for actions in (first, again)]
    assert first.frames[2] is again.frames[2], 'the same frames, not made again'
    world.policy.epoch = 'epoch-2'
    [answer] = world.ask('n1', 3.0, kind='REPORT', applied=applied)
    assert answer.kind == 'ACK' and answer.fields['epoch'] == 'epoch-2'


def test_a_big_fleet_is_asked_for_fewer_reports_and_judged_stale_by_them():
    """Past 500 nodes the master's ACK asks each node for a report every N / 50 s (at
    most 60 s): the fleet sends about 50 a second; a node is stale after three of
    its intervals (and 5 s) without one."""
    assert protocol.report_interval(10) == REPORT_IVL == protocol.report_interval(500)
    assert protocol.report_interval(1000) == 20.0
    assert protocol.report_interval(10 ** 6) == protocol.MAX_REPORT_IVL == 60.0
    world = MasterWorld({'n%d' % i: LIST_A for i in range(1000)})
    applied = stamp(LIST_A, world.desired('n1').gen)
    [answer] = world.ask('n1', 1.0, kind='REPORT', applied=applied)
    assert answer.kind == 'ACK' and answer.fields['report_ivl'] == 20.0
    assert world.node_state('n1', 1.0 + 3 * 20.0 + 4) == 'in-sync'
    assert world.node_state('n1', 1.0 + 3 * 20.0 + 6) == 'stale'
    world.load({'n1': LIST_A}, 2.0)         # a small fleet again: 10 s from the next ACK
    assert world.node_state('n1', 1.0 + 3 * 20.0 + 4) == 'in-sync', 'told 20 s: still'
    world.ask('n1', 3.0, kind='REPORT', applied=applied)
    assert world.node_state('n1', 3.0 + STALE_AFTER + 1) == 'stale'


def test_a_big_fleet_gets_fewer_heartbeats():
    """HUGZ every 2 s up to 200 nodes, then about 100 a second to the whole fleet,
    at most every 10 s; each says its interval."""
    assert protocol.hugz_interval(200) == 2.0 and protocol.hugz_interval(400) == 4.0
    assert protocol.hugz_interval(10 ** 5) == protocol.MAX_HUGZ_IVL == 10.0
    world = MasterWorld({'n%d' % i: LIST_A for i in range(400)})
    sent = []
    for now in (0.0, 2.0, 3.9, 4.0, 8.0):
        sent += [(now, a) for a in world.tick(now)
                 if isinstance(a, act.Send) and a.frames[1] == b'HUGZ']
    assert [t for t, _ in sent] == [0.0, 4.0, 8.0]
    assert protocol.decode_update(sent[0][1].frames).fields['hugz_ivl'] == 4.0


def test_a_node_subscribing_right_after_a_start_or_an_edit_gets_its_notify():
    """After a master restart every node subscribes again within a second or two:
    each gets its NOTIFY (with the new epoch: it says HELLO) at once, whatever the
    master published for the edit or its start just before."""
    world = MasterWorld({'n1': LIST_A})
    start = len(world.notifies)
    world.handle(ev.LinkMessage('updates', (b'\x01N:n1\0',)), 0.2)
    world.load({'n1': LIST_B}, 3.0, wall=2000.0)
    world.handle(ev.LinkMessage('updates', (b'\x01N:n1\0',)), 3.2)
    assert [t for t, _ in world.notifies[start:]] == [0.2, 3.0, 3.2]


def test_a_repeated_report_is_answered_and_recorded_each_time():
    """The master skips parsing a REPORT that repeats the last one (RepeatedRequests),
    never the rest: each gets its own answer and counts as the node heard."""
    world = MasterWorld({'n1': LIST_A, 'n2': LIST_B})
    assert world.policy.requests.limit == 2 * 2 + 100          # follows the file's nodes
    desired = world.desired('n1')
    for now in (2.0, 3.0, 4.0):
        [answer] = world.ask('n1', now, kind='REPORT', applied=stamp(LIST_A, desired.gen))
        assert answer.kind == 'ACK'
        assert world.policy.nodes['n1'].seen_at == now
    [answer] = world.ask('n1', 5.0, kind='REPORT', applied=stamp(LIST_C, 1))
    assert answer.kind == 'STATE'       # the bytes changed: decoded, and it holds another list


def test_the_words_of_reported_processes_are_kept_once_for_all_nodes():
    """A master keeps every node's last report: the names and states its nodes
    repeat are one object each, not one per node (memory at 10,000 nodes)."""
    world = MasterWorld({'n1': LIST_A, 'n2': LIST_A})
    for node in ('n1', 'n2'):
        desired = world.desired(node)
        world.ask(node, 1.0, kind='REPORT', rid=node.encode(),
                  applied={'gen': desired.gen, 'sha256': desired.sha256},
                  processes=[{'name': 'web-1', 'state': 'running', 'health': None}])
    first, second = (world.policy.nodes[n].report['processes'][0] for n in ('n1', 'n2'))
    assert first == second and first['health'] is None
    assert first['name'] is second['name'] and first['state'] is second['state']
