"""The client's policy (dpd.cluster.client), pure: scripted facts and a fake
clock in, actions out (SPEC 2.3, 4)."""
import math
import random
import signal
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dpd import jsonfile
from dpd.cluster import actions as act
from dpd.cluster import events as ev
from dpd.cluster import protocol
from dpd.cluster.client import HELLO_RETRY, SILENCE_REBUILD, UNANSWERED, ClientPolicy
from dpd.cluster.config import parse_client
from dpd.cluster.protocol import MAX_GEN, REPORT_IVL
from dpd.cluster.relay import ANSWER_TEXT, text_pieces
from protocol_cases import FUZZ, LIST_A, LIST_B, LIST_C, mutate, proc, stamp, state_frames, \
    valid_messages

# ============================================================ the client's policy

def client_config(allowed_users=('nobody',)):
    return parse_client({'master_stats': 'ipc:///tmp/dpdt-stats', 'master_updates':
                         'ipc:///tmp/dpdt-updates', 'node_name': 'web1',
                         'conf_file': '/srv/w.json', 'allowed_users': list(allowed_users)},
                        '/srv/c.json')


HANDSHAKE = ev.LinkEvent('stats', 'handshake-ok', 'tcp://m')


def on_wire(applied):
    """What a REPORT says of an applied list: its gen and sha256 (the epoch stays home)."""
    return {'gen': applied['gen'], 'sha256': applied['sha256']}


class ClientWorld:
    """A ClientPolicy, and an executor that writes nothing but answers like the real one:
    a WriteWorkerFile succeeds (unless told otherwise), a RebuildLink is done at once
    and its new connection shakes hands. The connection is made at 0 s; while
    `answering` (a time window) says so, the master ACKs each HELLO and REPORT."""

    def __init__(self, applied=None, seed=1, allowed_users=('nobody',), confirm_writes=True):
        self.policy = ClientPolicy(client_config(allowed_users), 'web1', 'boot-1',
                                   rng=random.Random(seed))
        self.confirm_writes = confirm_writes
        self.now = 0.0
        self.writes, self.sent, self.logs, self.rebuilds, self.statuses = [], [], [], [], []
        self.answering = (math.inf, math.inf)
        self.handle(ev.WorkerObserved(applied=applied, worker={'running': True}), 0.0)
        self.handle(HANDSHAKE, 0.0)

    def handle(self, event, now=None):
        self.now = self.now if now is None else now
        pending, actions = deque([event]), []
        while pending:
            for action in self.policy.handle(pending.popleft(), self.now):
                actions.append(action)
                if isinstance(action, act.WriteWorkerFile):
                    self.writes.append(action)
                    if self.confirm_writes:
                        pending.append(ev.WorkerFileWritten(dict(action.record)))
                elif isinstance(action, act.Send):
                    assert action.socket == 'stats'
                    message = protocol.decode_request(action.frames)
                    self.sent.append((self.now, message))
                    if message.kind in ('HELLO', 'REPORT') and \
                            self.answering[0] <= self.now <= self.answering[1]:
                        pending.append(ev.LinkMessage('stats', tuple(self._ack())))
                elif isinstance(action, act.Log):
                    self.logs.append((self.now, action))
                elif isinstance(action, act.RebuildLink):
                    self.rebuilds.append(self.now)
                    pending.extend((ev.LinkEvent('*', 'rebuilt', ''), HANDSHAKE))
            if not self.statuses or self.statuses[-1][1] != self.policy.status:
                self.statuses.append((self.now, self.policy.status))
        return actions

    def _ack(self):
        held = self.policy.applied or {'gen': 1, 'sha256': '0' * 64}
        return protocol.ack('web1', held['gen'], held['sha256'], 'e1', self.policy.report_ivl)

    def reply(self, frames, now=None):
        return self.handle(ev.LinkMessage('stats', tuple(frames)), now)

    def state(self, gen, entries, node='web1', now=None):
        return self.reply(state_frames(node, gen, entries), now)

    def run_until(self, end, answering_from=math.inf, answering_until=math.inf):
        """What the controller does: a Tick at each of the policy's deadlines, while
        the master answers from `answering_from` to `answering_until`."""
        self.answering = (answering_from, answering_until)
        for _ in range(100000):
            deadline = self.policy.next_deadline()
            when = math.inf if deadline is None else max(deadline, self.now)
            if when > end:
                self.now = end
                return
            self.handle(ev.Tick(), when)
        raise AssertionError('the policy never lets time pass')

    def requests(self, kind, since=-1.0):
        return [t for t, m in self.sent if m.kind == kind and t >= since]

    def last(self, kind):
        return [m for _, m in self.sent if m.kind == kind][-1]

    def log_text(self, since=-1.0):
        return '\n'.join(a.message for t, a in self.logs if t >= since)


def test_client_says_hello_every_2_s_until_the_master_answers():
    world = ClientWorld()
    world.run_until(7.0)
    assert world.requests('HELLO') == [0.0, 2.0, 4.0, 6.0]
    assert world.last('HELLO').fields['node'] == 'web1'
    assert world.last('HELLO').fields['applied'] is None
    world.state(5, LIST_A, now=7.5)
    assert len(world.writes) == 1
    world.run_until(29.0, answering_from=8.0)
    assert world.requests('HELLO', since=7.0) == [], 'answered: no more HELLO'
    assert HELLO_RETRY == 2.0


def test_any_answer_on_the_stats_socket_stops_the_hellos():
    for answer in (protocol.ack('web1', 5, stamp(LIST_A, 5)['sha256'], 'e1', 10.0),
                   protocol.unmanaged('web1', 'e1'), protocol.error('x', 'y')):
        world = ClientWorld(applied=stamp(LIST_A, 5))
        world.run_until(3.0)
        world.reply(answer, 3.0)
        world.run_until(20.0, answering_from=3.0)
        assert world.requests('HELLO') == [0.0, 2.0]


def test_client_reports_every_10_s_plus_or_minus_20_percent():
    gaps = []
    for seed in range(40):
        world = ClientWorld(applied=stamp(LIST_A, 5), seed=seed)
        world.run_until(0.1)
        world.reply(protocol.ack('web1', 5, stamp(LIST_A, 5)['sha256'], 'e1', 10.0), 0.1)
        world.run_until(60.0, answering_from=1.0)
        times = world.requests('REPORT')
        assert times[0] <= 1.0, 'what the worker file holds was new: reported within 1 s'
        assert 5 <= len(times) <= 9
        # the first report said a change: the next comes in 0.2-1.2 intervals (a
        # fleet-wide edit must not leave every node's reports in step)
        assert 2.0 <= times[1] - times[0] <= 12.0
        gaps += [b - a for a, b in zip(times[1:], times[2:])]
    assert all(8.0 <= t <= 12.0 for t in gaps), gaps
    assert min(gaps) < 8.5 and max(gaps) > 11.5, 'jittered, over the whole range'
    assert len(set(round(g, 3) for g in gaps)) > len(gaps) // 2


def test_a_report_carries_what_is_applied_and_what_was_refused():
    world = ClientWorld(applied=stamp(LIST_A, 5))
    world.run_until(12.5)
    report = world.last('REPORT').fields
    assert report['applied'] == on_wire(stamp(LIST_A, 5)) and report['node'] == 'web1'
    assert report['boot'] == 'boot-1' and report['last_rejected'] is None
    assert report['worker'] == {'running': True}


def test_an_older_gen_is_ignored_and_reported_soon():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.reply(protocol.ack('web1', 100, stamp(LIST_A, 100)['sha256'], 'e1', 10.0), 0.5)
    world.state(50, LIST_B, now=1.0)
    assert world.writes == []
    assert 'ignored list version 50: version 100 is applied' in world.log_text()
    world.run_until(2.05, answering_from=1.0)
    assert world.requests('REPORT', since=1.0), 'a report within 1 s'
    assert world.last('REPORT').fields['applied'] == on_wire(stamp(LIST_A, 100))


def test_the_same_gen_with_another_sha_is_a_conflict_and_not_applied():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.state(100, LIST_B, now=1.0)
    assert world.writes == []
    world.run_until(2.05, answering_from=1.0)
    assert world.requests('REPORT', since=1.0)
    assert world.policy.applied == stamp(LIST_A, 100)


def test_a_newer_gen_with_the_same_sha_changes_nothing():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.state(200, LIST_A, now=1.0)
    assert world.writes == []
    assert world.policy.status == 'in-sync'


def test_a_newer_list_is_written_once():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.state(200, LIST_B, now=1.0)
    assert len(world.writes) == 1
    write = world.writes[0]
    assert write.entries == LIST_B
    assert write.record == dict(stamp(LIST_B, 200), epoch='e1')
    assert 'applied list version 200' in world.log_text()
    world.run_until(1.0)
    assert world.requests('REPORT', since=1.0) == [1.0], 'reported at once'
    assert world.last('REPORT').fields['applied'] == on_wire(stamp(LIST_B, 200))
    for now in (2.0, 3.0):                    # duplicates, then the same from either path
        world.state(200, LIST_B, now=now)
    world.state(150, LIST_C, now=4.0)         # older than applied
    assert len(world.writes) == 1


def test_a_duplicate_while_the_write_is_in_flight_is_not_written_again():
    world = ClientWorld(applied=stamp(LIST_A, 100), confirm_writes=False)
    world.state(200, LIST_B, now=1.0)
    world.state(200, LIST_B, now=1.1)
    assert len(world.writes) == 1


def test_a_hand_edited_file_takes_the_masters_list():
    world = ClientWorld(applied={'gen': 0, 'sha256': stamp(LIST_C, 0)['sha256']})
    world.state(3, LIST_A, now=1.0)
    assert [w.entries for w in world.writes] == [LIST_A]


def test_an_observation_read_before_the_clients_own_write_does_not_undo_it():
    """The observer thread may read the file, then the client writes it, then the
    observation is dispatched: its older `applied` must not count as a hand edit."""
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.state(200, LIST_B, now=2.0)
    stale = ev.WorkerObserved(applied=stamp(LIST_A, 100), worker={'running': True},
                              read_at=1.9)
    world.handle(stale, 2.1)
    assert world.policy.applied == stamp(LIST_B, 200)
    world.state(200, LIST_C, now=2.2)
    assert [w.entries for w in world.writes] == [LIST_B], 'gen 200 is held'
    edited = {'gen': 0, 'sha256': stamp(LIST_C, 0)['sha256']}
    world.handle(ev.WorkerObserved(applied=edited, worker={'running': True}, read_at=2.3), 2.3)
    assert world.policy.applied == edited, 'a later read is believed'


def test_a_refused_list_is_refused_once_and_then_ignored():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    root_list = [proc('r', user='root')]
    world.state(200, root_list, now=1.0)
    assert world.writes == [] and world.policy.status == 'rejected'
    assert 'root is not in this node\'s allowed_users' in world.log_text()
    for now in (1.5, 2.0, 2.5, 3.0):
        assert world.state(200, root_list, now=now) == [], 'the same list: nothing to do'
    assert 'allowed_users' not in world.log_text(since=1.1), 'said once'
    world.run_until(3.0)
    rejected = world.last('REPORT').fields['last_rejected']
    assert rejected['gen'] == 200 and rejected['sha256'] == stamp(root_list, 0)['sha256']
    assert 'root' in rejected['reason']
    world.state(300, LIST_B, now=4.0)           # the next valid list is applied
    assert [w.entries for w in world.writes] == [LIST_B]


def test_an_invalid_list_is_refused_with_the_workers_rules():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.state(200, [proc('a', resatrt=True)], now=1.0)
    world.state(201, [proc('a'), proc('a')], now=1.0)
    assert world.writes == []
    assert 'unknown key "resatrt"' in world.log_text()
    assert 'duplicate name' in world.log_text()


def test_a_state_for_another_node_is_dropped():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    for node in ('web10', 'web', 'web1.domain.tld'):
        world.state(200, LIST_B, node=node, now=1.0)
    assert world.writes == []
    assert 'dropped a STATE for node web10 (this is web1)' in world.log_text()
    assert world.policy.applied == stamp(LIST_A, 100)


def test_the_updates_endpoints_messages_are_not_replies():
    """The client listens only on its stats connection, where a NOTIFY, a HUGZ, or a
    STATE behind a topic frame is a bad message."""
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.run_until(0.5)
    frames = state_frames('web1', 200, LIST_B)
    world.reply([b'N:web1\0'] + list(frames), 1.0)
    world.reply(protocol.notify('web1', 200, stamp(LIST_B, 200)['sha256'], 'e1')[1:], 1.0)
    world.reply(protocol.hugz('e1', 1, 2.0, REPORT_IVL)[1:], 1.0)
    world.run_until(1.5)
    assert world.writes == [] and world.requests('HELLO', since=0.5) == []
    assert 'dropped a bad message from the master' in world.log_text()


def test_each_new_connection_says_hello_and_none_waits_behind_a_dropped_one():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.run_until(5.0, answering_from=0.0)
    assert world.requests('HELLO') == [0.0], 'said once the handshake was done'
    world.handle(ev.LinkEvent('stats', 'disconnected', 'tcp://m'), 5.0)
    world.handle(ev.LinkEvent('stats', 'retrying', '1000 tcp://m'), 5.0)
    world.run_until(9.0)
    assert world.requests('HELLO', since=5.0) == [], 'nothing queued for the next master'
    world.handle(HANDSHAKE, 9.0)
    world.run_until(9.0, answering_from=9.0)
    assert world.requests('HELLO', since=5.0) == [9.0]
    world.run_until(20.0, answering_from=9.0)
    assert world.requests('HELLO', since=9.1) == [], 'answered'


def test_unmanaged_and_errors_keep_the_worker_file():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.reply(protocol.unmanaged('web1', 'e1'), 1.0)
    assert world.policy.status == 'unmanaged'
    world.reply(protocol.error('no-valid-list', 'bad'), 2.0)
    assert world.policy.status == 'master-error'
    assert world.writes == []


def test_a_reload_while_disconnected_queues_no_hello_behind_the_connection():
    """A reload of the client's file asks for the list again (allowed_users may have
    changed), at once when connected; while the connection is down the next
    handshake asks, and no HELLO waits in the socket's queue meanwhile."""
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.run_until(3.0, answering_from=0.0)
    world.handle(ev.ConfigLoaded(client_config()), 3.0)
    world.run_until(3.0)
    assert world.requests('HELLO', since=3.0) == [3.0]
    world.handle(ev.LinkEvent('stats', 'disconnected', 'tcp://m'), 4.0)
    world.handle(ev.LinkEvent('stats', 'retrying', '1000 tcp://m'), 4.0)   # libzmq's
    world.handle(ev.ConfigLoaded(client_config()), 4.5)
    world.run_until(9.0)
    assert world.requests('HELLO', since=3.5) == []
    world.handle(HANDSHAKE, 9.0)
    world.run_until(9.0, answering_from=9.0)
    assert world.requests('HELLO', since=3.5) == [9.0]


def test_the_client_says_unreachable_10_s_after_an_unanswered_report():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.run_until(30.0, answering_from=0.0, answering_until=10.0)
    unanswered = world.requests('REPORT', since=10.01)[0]
    became = [t for t, status in world.statuses if status == 'unreachable']
    assert became == [unanswered + UNANSWERED] and UNANSWERED == 10.0, world.statuses
    assert world.policy.snapshot(world.now)['status'] == 'unreachable'
    assert 'no word from the master for' in world.log_text()
    world.reply(world._ack(), 31.0)
    assert world.policy.status == 'in-sync'
    assert 'the master answers again' in world.log_text(since=31.0)
    assert world.writes == [] and world.rebuilds == []


def test_a_dropped_connection_is_unreachable_after_10_s_unless_a_master_answers():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.run_until(5.0, answering_from=0.0)
    world.handle(ev.LinkEvent('stats', 'disconnected', 'tcp://m'), 5.0)
    world.handle(HANDSHAKE, 8.0)           # a master restart: answered within 10 s
    world.run_until(30.0, answering_from=8.0)
    assert 'unreachable' not in [status for _, status in world.statuses]
    world.handle(ev.LinkEvent('stats', 'disconnected', 'tcp://m'), 30.0)
    world.run_until(45.0)
    became = [t for t, status in world.statuses if status == 'unreachable']
    assert became == [40.0], 'a master gone for good'


def test_sockets_are_re_created_after_30_s_of_silence():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.run_until(29.9)
    assert world.rebuilds == []
    world.run_until(31.0)
    assert world.rebuilds == [30.0] and SILENCE_REBUILD == 30.0
    assert world.policy.status == 'unreachable'
    assert 30.0 in world.requests('HELLO'), 'hello again on the new sockets'
    assert world.writes == []


def test_a_master_that_answers_postpones_the_rebuild():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.run_until(25.0, answering_from=0.0, answering_until=25.0)
    last_answer = world.requests('REPORT')[-1]
    world.run_until(last_answer + 29.9)
    assert world.rebuilds == []
    world.run_until(last_answer + 61.0)
    assert world.rebuilds == [last_answer + 30.0, last_answer + 60.0]
    assert world.requests('HELLO', since=last_answer + 30.0)[:1] == [last_answer + 30.0], \
        'the new connection says hello'


def test_a_new_master_epoch_is_taken_and_logged():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    world.run_until(4.0, answering_from=0.0)
    world.handle(ev.LinkEvent('stats', 'disconnected', 'tcp://m'), 4.0)
    world.handle(HANDSHAKE, 4.5)
    world.run_until(4.5)
    sha = stamp(LIST_A, 100)['sha256']
    world.reply(protocol.ack('web1', 100, sha, 'e2', 10.0), 4.6)
    assert world.policy.epoch == 'e2' and world.policy.status == 'in-sync'
    assert 'the master restarted (epoch e2)' in world.log_text()
    world.run_until(9.0)
    assert world.requests('HELLO', since=4.0) == [4.5], 'its answer was the hello\'s'


def test_term_exits_and_the_worker_file_stays():
    world = ClientWorld(applied=stamp(LIST_A, 100))
    out = world.handle(ev.SignalReceived(signal.SIGTERM), 1.0)
    assert [a.code for a in out if isinstance(a, act.Exit)] == [0]
    assert world.writes == []


@FUZZ
@given(st.data())
def test_client_policy_survives_mutated_messages_and_applies_only_valid_lists(data):
    world = ClientWorld(applied=stamp(LIST_A, 100))
    for i in range(data.draw(st.integers(1, 6))):
        decoder, frames = data.draw(st.sampled_from(valid_messages()[:6] + [
            (protocol.decode_reply, state_frames('web10', 200, LIST_B)),
            (protocol.decode_reply, state_frames('web1', 200, LIST_A))]))
        frames = mutate(frames, data)
        writes = len(world.writes)
        world.reply(frames, 1.0 + i)
        if len(world.writes) > writes:
            # only a message that is itself a valid, newer STATE for web1 may be applied
            message = protocol.decode_reply(frames)
            assert decoder is protocol.decode_reply and message.kind == 'STATE'
            assert message.fields['node'] == 'web1'


# ============================================================ commands relayed (SPEC 6.3)

def answers(world, since=0):
    return [(m.fields['ref'], m.fields['answer'], m.fields['done'])
            for _, m in world.sent[since:] if m.kind == 'ANSWER']


def test_a_command_is_acknowledged_at_once_relayed_and_its_answers_sent_back():
    world = ClientWorld()
    world.reply(protocol.ack('web1', 1, '0' * 64, 'e1', 10.0), 0.5)
    out = world.reply(protocol.command('web1', 'e1-1', {'command': 'signal', 'names': ['a'],
                                                        'signal': 'hup'}), 1.0)
    [ask] = [a for a in out if isinstance(a, act.AskWorker)]
    assert ask.ref == 'e1-1' and ask.request == {'v': 1, 'command': 'signal', 'names': ['a'],
                                                 'signal': 'SIGHUP', 'all': False}
    assert answers(world) == [('e1-1', {'ok': True, 'code': 0, 'accepted': True}, False)]
    world.handle(ev.WorkerAnswered('e1-1', {'ok': True, 'code': 0, 'results': []}, True), 1.1)
    assert answers(world)[-1] == ('e1-1', {'ok': True, 'code': 0, 'results': []}, True)
    assert world.policy.relays == {}


def test_remote_commands_false_refuses_and_asks_no_worker():
    world = ClientWorld()
    world.policy.config = world.policy.config._replace(remote_commands=False)
    out = world.reply(protocol.command('web1', 'e1-1', {'command': 'restart',
                                                        'names': ['a']}), 1.0)
    assert not [a for a in out if isinstance(a, act.AskWorker)]
    [(_, refused, done)] = answers(world)
    assert done and refused['code'] == 1 and 'remote_commands: false' in refused['error']


def test_a_bad_request_from_the_master_is_answered_as_a_usage_error():
    world = ClientWorld()
    out = world.reply(protocol.command('web1', 'e1-1', {'command': 'rm', 'names': ['a']}), 1.0)
    assert not [a for a in out if isinstance(a, act.AskWorker)]
    assert answers(world)[0][1]['code'] == 2


def test_cancel_and_a_new_master_end_relays():
    world = ClientWorld()
    world.reply(protocol.ack('web1', 1, '0' * 64, 'e1', 10.0), 0.5)
    for ref in ('e1-1', 'e1-2'):
        world.reply(protocol.command('web1', ref, {'command': 'logs', 'names': ['a'],
                                                   'follow': True}), 1.0)
    out = world.reply(protocol.cancel('web1', 'e1-1'), 2.0)
    assert [a.ref for a in out if isinstance(a, act.CancelAsk)] == ['e1-1']
    out = world.reply(protocol.ack('web1', 1, '0' * 64, 'e2', 10.0), 3.0)   # a new master
    assert [a.ref for a in out if isinstance(a, act.CancelAsk)] == ['e1-2']
    before = len(world.sent)
    world.handle(ev.WorkerAnswered('e1-2', {'ok': True, 'code': 0, 'text': 'late'}, False), 4)
    assert answers(world, before) == [], 'nothing sent for a relay that ended'


def sent_answers(actions):
    """The ANSWERs among `actions`: (bytes of their JSON frame, decoded message)."""
    return [(len(a.frames[1]), protocol.decode_request(a.frames)) for a in actions
            if isinstance(a, act.Send) and a.frames[0] == b'ANSWER']


# text that JSON writes 1, 6 and 12 bytes a character: a backlog of 2.6 M characters
LOG_TEXT = ('plain line\n' * 50000 + '\x01\x1b[0m caf\u00e9\n' * 100000 +
            '\U0001f600' * 300000 + 'x' * 1000000)


@pytest.mark.parametrize('done', [True, False])
def test_log_text_goes_in_answers_the_master_takes_the_last_one_done(done):
    """A worker's backlog (up to 16 MiB) in one ANSWER was more than the master
    takes (1 MiB): it was dropped, and the operator's dpd-ctl waited for ever."""
    world = ClientWorld()
    world.reply(protocol.ack('web1', 1, '0' * 64, 'e1', 10.0), 0.5)
    world.reply(protocol.command('web1', 'e1-1', {'command': 'logs', 'names': ['a'],
                                                  'lines': 10000}), 1.0)
    out = world.handle(ev.WorkerAnswered('e1-1', {'ok': True, 'code': 0, 'text': LOG_TEXT},
                                         done), 1.1)
    pieces = sent_answers(out)
    assert len(pieces) > 10
    assert all(size <= ANSWER_TEXT + 200 for size, _ in pieces), 'each well under 1 MiB'
    assert ''.join(m.fields['answer']['text'] for _, m in pieces) == LOG_TEXT
    assert [m.fields['done'] for _, m in pieces] == [False] * (len(pieces) - 1) + [done]
    assert all(m.fields['answer']['ok'] for _, m in pieces)
    assert ('e1-1' in world.policy.relays) is not done


@given(st.text(), st.integers(12, 200))
def test_text_pieces_fit_their_limit_written_and_join_to_the_text(text, limit):
    pieces = text_pieces(text, limit)
    assert ''.join(pieces) == text and all(pieces[:-1])
    assert all(len(jsonfile.dumps(piece)) - 2 <= limit for piece in pieces)


def test_a_command_for_another_node_is_dropped():
    world = ClientWorld()
    out = world.reply(protocol.command('web2', 'e1-1', {'command': 'restart',
                                                        'names': ['a']}), 1.0)
    assert not [a for a in out if isinstance(a, act.AskWorker)] and answers(world) == []


def test_the_report_interval_is_the_masters_and_the_stats_socket_waits_as_long():
    """A big fleet's master asks for fewer reports (its ACK's report_ivl, 10 to 60 s):
    the client reports that often, and gives its stats socket as much longer before
    it takes a silence for a wedged connection."""
    world = ClientWorld(applied=stamp(LIST_A, 5))
    world.run_until(0.1)
    sha = stamp(LIST_A, 5)['sha256']
    world.reply(protocol.ack('web1', 5, sha, 'e1', 40.0), 0.1)
    world.run_until(200.0)
    times = world.requests('REPORT')
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps and all(30.0 <= gap <= 50.0 for gap in gaps[1:]), gaps
    assert world.rebuilds[0] == pytest.approx(0.1 + SILENCE_REBUILD + 1.2 * (40 - 10)), \
        'no answer to reports 40 s apart: deaf after 66 s, not 30'
    world.reply(protocol.ack('web1', 5, sha, 'e1', 3600.0), 200.0)
    assert world.policy.report_ivl == protocol.MAX_REPORT_IVL
    world.reply(protocol.ack('web1', 5, sha, 'e1', 0.5), 201.0)
    assert world.policy.report_ivl == REPORT_IVL, 'never more often than every 10 s'
    rebuilt = len(world.rebuilds)
    world.run_until(260.0)
    assert world.rebuilds[rebuilt:] == [201.0 + SILENCE_REBUILD]


def test_usage_figures_alone_wait_for_the_periodic_report():
    world = ClientWorld(applied=stamp(LIST_A, 5))
    world.run_until(0.1)
    world.reply(protocol.ack('web1', 5, stamp(LIST_A, 5)['sha256'], 'e1', 10.0), 0.1)
    world.run_until(2.0, answering_from=1.0)
    before = len(world.requests('REPORT'))
    running = {'name': 'a', 'state': 'running', 'pid': 7, 'cpu_seconds': 1.0}
    world.handle(ev.WorkerObserved(applied=stamp(LIST_A, 5), worker={'running': True},
                                   processes=(running,)), 2.0)
    world.run_until(4.0, answering_from=2.0)
    assert len(world.requests('REPORT')) == before + 1, 'a new process: reported at once'
    world.handle(ev.WorkerObserved(applied=stamp(LIST_A, 5), worker={'running': True},
                                   processes=(dict(running, cpu_seconds=2.5),)), 4.0)
    world.run_until(5.5, answering_from=4.0)
    assert len(world.requests('REPORT')) == before + 1, 'only its CPU time changed'
    world.run_until(20.0, answering_from=5.5)
    assert world.last('REPORT').fields['processes'][0]['cpu_seconds'] == 2.5, \
        'the periodic report carries it'


def test_a_connection_dropped_for_good_is_made_again_within_seconds():
    """libzmq reconnects a dropped connection by itself and says so ('retrying'), but
    not after a protocol error (a frame over MAXMSGSIZE): then the client re-creates
    its sockets after 2 s, not after 30 s of silence; at most every 10 s, and never
    after a failed handshake (each try would cost the master one)."""
    world = ClientWorld(applied=stamp(LIST_A, 5))
    world.run_until(1.0, answering_from=0.5)
    world.handle(ev.LinkEvent('stats', 'disconnected', 'tcp://m'), 1.0)
    world.handle(ev.LinkEvent('stats', 'retrying', '1000 tcp://m'), 1.0)
    world.handle(HANDSHAKE, 1.5)
    world.run_until(5.0, answering_from=1.0)
    assert world.rebuilds == [], 'libzmq is on it'
    world.handle(ev.LinkEvent('stats', 'disconnected', 'tcp://m'), 5.0)
    world.run_until(10.0)
    assert world.rebuilds == [7.0]
    assert 'was dropped and is not being made again' in world.log_text()
    assert world.requests('HELLO', since=7.0)[:1] == [7.0]
    world.handle(ev.LinkEvent('stats', 'disconnected', 'tcp://m'), 10.0)
    world.run_until(20.0)
    assert world.rebuilds == [7.0, 17.0], 'not more often than every 10 s'
    world.handle(ev.LinkEvent('stats', 'handshake-denied', 'tcp://m'), 20.0)
    world.handle(ev.LinkEvent('stats', 'disconnected', 'tcp://m'), 20.0)
    world.run_until(40.0, answering_from=20.0)
    assert world.rebuilds == [7.0, 17.0], 'a refused key waits for the silence rule'


def test_a_node_at_the_largest_gen_keeps_taking_new_lists():
    """A node holds a list at gen 2**63-1: the master's next version would pass the
    protocol's limit, so the master counts again from its clock under a new epoch,
    and the client, which orders gens only within one epoch, takes it; and the next
    ones, while an older gen of that new epoch is still refused."""
    from dpd.cluster.config import parse_master
    from dpd.cluster.master import MasterPolicy
    held = stamp(LIST_A, MAX_GEN)
    world = ClientWorld(applied=held)
    master = MasterPolicy('e1', False, previous={'web1': {'gen': MAX_GEN,
                                                          'sha256': held['sha256']}})

    def edit(entries, now):
        config = parse_master({'master_stats': 'ipc:///tmp/s', 'master_updates': 'ipc:///tmp/u',
                               'nodes': {'web1': entries}}, '/srv/m.json')
        master.handle(ev.ConfigLoaded(config, 1000.0 + now), now)
        desired = master.nodes['web1'].desired
        return protocol.state('web1', desired.gen, desired.sha256, desired.body, master.epoch)

    edit(LIST_A, 0.0)
    assert master.nodes['web1'].desired.gen == MAX_GEN and master.epoch == 'e1'
    first = edit(LIST_B, 1.0)
    assert master.epoch == 'e1.1' and protocol.decode_reply(first).fields['gen'] < MAX_GEN
    world.reply(first, 1.0)
    assert world.writes[-1].entries == LIST_B
    assert world.writes[-1].record['epoch'] == 'e1.1'
    second = edit(LIST_C, 2.0)
    world.reply(second, 2.0)
    assert world.writes[-1].entries == LIST_C and len(world.writes) == 2
    world.reply(first, 3.0)
    assert len(world.writes) == 2, 'an older gen of the same epoch is stale'

