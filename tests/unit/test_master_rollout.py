"""Staged rollouts in the master's policy (SPEC 6.5), pure: the Rollout object
wired to real edits and reports, with a fake clock. (The object alone:
test_rollout.py.)"""
import hashlib
import json

import pytest

from dpd.cluster import actions as act
from dpd.cluster import events as ev
from dpd.cluster import protocol
from dpd.cluster.config import parse_master
from dpd.config import ConfigError
from dpd.cluster.master import MasterPolicy
from dpd.cluster.resume import _kept
from dpd.cluster.staged import STABLE_FOR
from dpd.cluster.states import node_as_desired
from protocol_cases import LIST_A, LIST_B, LIST_C, stamp
from test_master_policy import MasterWorld

NODES = ('n1', 'n2', 'n3', 'n4')


def config(nodes, rollout):
    doc = {'master_stats': 'ipc:///tmp/dpdt-stats', 'master_updates': 'ipc:///tmp/dpdt-updates',
           'nodes': nodes}
    if rollout is not None:
        doc['rollout'] = rollout
    return parse_master(doc, '/srv/m.json', hashlib.sha256(json.dumps(doc).encode()).hexdigest())


class RolloutWorld(MasterWorld):
    """Four nodes on LIST_A, each with a worker that loaded it at t=100."""

    def __init__(self, rollout, nodes=NODES, previous=None, saved=None, wall=1000.0):
        self.rollout_spec = rollout
        self.policy = MasterPolicy('epoch-1', False, previous, saved)
        self.logs, self.replies, self.notifies = [], [], []
        self.kept_lists, self.drops = [], 0
        self.loaded_at = dict.fromkeys(nodes, 100.0)
        self.handle(ev.ConfigLoaded(config(dict.fromkeys(nodes, LIST_A), rollout), wall), 0.0)

    def handle(self, event, now):
        actions = super().handle(event, now)
        self.kept_lists += [a.record for a in actions if isinstance(a, act.KeepRolloutLists)]
        self.drops += sum(isinstance(a, act.DropRolloutLists) for a in actions)
        return actions

    def edit(self, entries, now, nodes=NODES):
        return self.handle(ev.ConfigLoaded(config(dict.fromkeys(nodes, entries),
                                                  self.rollout_spec), 1000.0 + now), now)

    def runs(self, node, entries, now, state='running', reload=True, **process):
        """The node reports `entries` applied and its worker's processes in `state`."""
        if reload:
            self.loaded_at[node] += 1
        worker = {'running': True, 'config_ok': True, 'config_loaded_at': self.loaded_at[node]}
        processes = [dict({'name': e['name'], 'state': state}, **process) for e in entries]
        return self.ask(node, now, kind='REPORT', applied=stamp(entries, 1), worker=worker,
                        processes=processes, rid=node.encode())

    def ask(self, node, now, rid=b'rid-1', **fields):
        """The answers to `rid` only: a report may also start a wave (pushes to others)."""
        before = len(self.replies)
        self.handle(ev.LinkMessage('stats', (rid,) + tuple(_request(node, **fields)), None),
                    now)
        return [m for r, m in self.replies[before:] if r == rid]

    def ready(self, node, entries, now, **keys):
        """It runs `entries` and stays so for STABLE_FOR: a success."""
        self.runs(node, entries, now, **keys)
        self.tick(now + STABLE_FOR)

    def served(self, node):
        desired = self.desired(node)
        return desired and desired.sha256

    def line(self):
        return self.policy.rollout.describe()


def _request(node, kind='HELLO', applied=None, **more):
    if kind == 'HELLO':
        return protocol.hello(node, 'boot-1', '1.0', applied)
    return protocol.report(node, 'boot-1', '1.0', applied, **more)


def sha(entries):
    return protocol.body_of(entries)[1]


def started(rollout=None):
    world = RolloutWorld(rollout or {'max_parallel': 2})
    for node in NODES:
        world.runs(node, LIST_A, 1.0)
    world.edit(LIST_B, 10.0)
    return world


def test_without_rollout_every_node_gets_its_new_list_at_once():
    world = RolloutWorld(None)
    world.edit(LIST_B, 10.0)
    assert all(world.served(n) == sha(LIST_B) for n in NODES)
    assert world.policy.rollout is None and world.policy.snapshot(10.0)['rollout'] is None


def test_waves_go_in_name_order_and_advance_on_ready_nodes():
    world = started()
    assert [world.served(n) for n in NODES] == [sha(LIST_B)] * 2 + [sha(LIST_A)] * 2
    assert [world.node_state(n, 10.0) for n in ('n3', 'n4')] == ['held', 'held']
    assert world.line() == 'rollout 1010000: wave 1/2, 0 of 4 nodes done'
    world.ready('n1', LIST_B, 11.0)
    assert world.served('n3') == sha(LIST_A), 'the wave waits for all its nodes'
    world.ready('n2', LIST_B, 12.0, state='starting')
    assert world.served('n3') == sha(LIST_A), 'starting is not ready'
    world.runs('n2', LIST_B, 15.0, reload=False)
    world.tick(15.0 + STABLE_FOR - 0.1)
    assert world.served('n3') == sha(LIST_A), 'ready, not yet for long'
    world.tick(15.0 + STABLE_FOR)
    assert [world.served(n) for n in NODES] == [sha(LIST_B)] * 4
    assert world.line() == 'rollout 1010000: wave 2/2, 2 of 4 nodes done'
    assert 'rollout 1010000: wave 2/2: n3, n4' in world.log_text()
    world.runs('n3', LIST_B, 20.0)
    world.ready('n4', LIST_B, 20.0)
    assert world.line() == 'rollout 1010000 done: 4 nodes'
    assert world.node_state('n4', 22.0) == 'in-sync'


def test_a_process_that_crashes_while_the_node_looks_ready_fails_it():
    world = started()
    world.runs('n1', LIST_B, 11.0, restarts=0)
    world.runs('n1', LIST_B, 12.0, reload=False, restarts=1)   # crashed, running again
    assert world.line() == 'rollout 1010000 halted: n1: a, b crashed'


def test_a_report_of_the_applied_file_before_the_worker_loaded_it_is_not_a_verdict():
    world = started()
    world.runs('n1', LIST_A, 11.0, reload=False)       # the old processes, all running
    world.ask('n1', 11.5, kind='REPORT', applied=stamp(LIST_B, 1), rid=b'n1',
              worker={'running': True, 'config_loaded_at': world.loaded_at['n1']},
              processes=[{'name': 'a', 'state': 'running'}])
    assert world.policy.rollout.status['n1'] == 'serving'


def test_a_failing_process_halts_and_the_nodes_not_reached_keep_their_list():
    world = started()
    world.runs('n1', LIST_B, 11.0, state='backoff')
    assert world.line() == 'rollout 1010000 halted: n1: a backoff'
    world.ready('n2', LIST_B, 12.0)
    assert [world.served(n) for n in NODES] == [sha(LIST_B)] * 2 + [sha(LIST_A)] * 2
    assert world.node_state('n3', 12.0) == 'held' and world.node_state('n1', 12.0) == 'in-sync'
    assert 'halted: n1: a backoff; the failed nodes keep the new list' in world.log_text()
    record = world.policy.snapshot(12.0)['rollout']
    assert record['halted'] == 'n1: a backoff' and record['status']['n3'] == 'waiting'


def test_auto_revert_gives_the_failed_node_its_old_list_under_a_newer_version():
    world = started({'max_parallel': 2, 'auto_revert': True})
    new_gen = world.desired('n1').gen
    world.runs('n1', LIST_B, 11.0, health='unhealthy')
    assert world.served('n1') == sha(LIST_A) and world.desired('n1').gen > new_gen
    assert world.line() == 'rollout 1010000 halted: n1: a unhealthy'
    assert world.node_state('n1', 11.0) == 'held'
    world.runs('n2', LIST_B, 12.0, state='failed')      # the wave's other node, later
    assert world.served('n2') == sha(LIST_A)


def test_failures_within_max_failed_go_on():
    world = started({'max_parallel': 2, 'max_failed': 1})
    world.ask('n1', 11.0, kind='REPORT', applied=stamp(LIST_A, 1), rid=b'n1',
              last_rejected=dict(stamp(LIST_B, 2), reason='no such user'))
    world.ready('n2', LIST_B, 11.0)
    assert world.served('n3') == sha(LIST_B)
    assert world.policy.rollout.reasons['n1'] == 'list refused: no such user'


def test_a_node_not_ready_in_wait_ready_fails_at_its_deadline():
    world = started({'max_parallel': 2, 'wait_ready': 30})
    world.ready('n1', LIST_B, 11.0)
    assert world.policy.next_deadline() <= 40.0
    world.tick(39.9)
    assert world.policy.rollout.halted is None
    world.tick(40.0)
    assert world.line() == 'rollout 1010000 halted: n2: not ready within 30 s'


def test_a_new_edit_replaces_the_rollout_with_one_for_the_new_content():
    world = started()
    world.edit(LIST_C, 20.0)
    rollout = world.policy.rollout
    assert rollout.ident == '1020000' and sorted(rollout.status) == list(NODES)
    assert [world.served(n) for n in NODES] == [sha(LIST_C)] * 2 + [sha(LIST_A)] * 2
    assert 'replaces rollout 1010000' in world.log_text()
    world.edit(LIST_A, 30.0)          # back to what n3 and n4 run: only n1, n2 change
    assert sorted(world.policy.rollout.status) == ['n1', 'n2']
    assert world.node_state('n3', 30.0) == 'in-sync'


def test_a_reload_of_the_same_file_keeps_a_halted_rollout():
    world = started()
    world.runs('n1', LIST_B, 11.0, state='failed')
    world.handle(ev.ConfigLoaded(world.policy.config, 1015.0), 15.0)
    assert world.line().startswith('rollout 1010000 halted')
    assert world.served('n3') == sha(LIST_A)


def test_an_edit_without_rollout_ends_the_rollout():
    world = started()
    world.rollout_spec = None
    world.edit(LIST_B, 20.0)
    assert world.policy.rollout is None
    assert all(world.served(n) == sha(LIST_B) for n in NODES)


def test_the_kept_lists_are_dropped_once_every_node_has_its_new_list():
    world = started()
    world.ready('n1', LIST_B, 11.0)
    world.ready('n2', LIST_B, 11.0)
    assert world.drops == 0, 'n3 and n4 wait for their wave with their old list'
    world.ready('n3', LIST_B, 20.0)
    world.ready('n4', LIST_B, 20.0)
    assert world.line() == 'rollout 1010000 done: 4 nodes' and world.drops == 1


def test_a_halted_rollout_keeps_its_lists_until_an_edit_ends_it():
    world = started({'max_parallel': 2, 'auto_revert': True})
    world.runs('n1', LIST_B, 11.0, state='failed')
    world.tick(30.0)
    assert world.policy.rollout.halted and world.drops == 0
    world.rollout_spec = None
    world.edit(LIST_C, 40.0)
    assert world.policy.rollout is None and world.drops == 1


def test_a_node_new_to_the_file_is_held_unmanaged_until_its_wave():
    world = started({'max_parallel': 1})
    world.edit(LIST_B, 20.0, nodes=NODES + ('n5',))
    rollout = world.policy.rollout
    assert rollout.waves[-1] == ['n5']
    [answer] = world.ask('n5', 21.0, rid=b'n5')
    assert answer.kind == 'UNMANAGED' and world.node_state('n5', 21.0) == 'held'
    record = world.policy.snapshot(21.0)['nodes'][-1]
    assert not node_as_desired(record), 'dpd-ctl cluster says 150 for a held node'


def test_a_restarted_master_resumes_the_rollout_with_the_lists_it_kept():
    world = started()
    world.ready('n1', LIST_B, 11.0)
    record = world.policy.snapshot(13.0)['rollout']
    saved = world.kept_lists[-1]
    assert sorted(saved['lists']) == list(NODES) and saved['id'] == '1010000'
    lists = {n: _kept(n, entry) for n, entry in saved['lists'].items()}
    previous = {n: {'gen': world.desired(n).gen, 'sha256': world.served(n)} for n in NODES}
    # the new master starts 6 s later by the wall clock, on a new monotonic clock, and
    # loads the same file: LIST_B everywhere
    policy = MasterPolicy('epoch-2', False, previous, (record, lists))
    actions = policy.handle(ev.ConfigLoaded(config(dict.fromkeys(NODES, LIST_B),
                                                   {'max_parallel': 2}), 1016.0), 500.0)
    assert 'resumed rollout 1010000: wave 1/2, 1 of 4 nodes done' in [
        a.message for a in actions if isinstance(a, act.Log)]
    assert [policy.nodes[n].desired.sha256 for n in NODES] == \
        [sha(LIST_B)] * 2 + [sha(LIST_A)] * 2
    assert policy.nodes['n3'].held and policy.rollout.status['n1'] == 'succeeded'
    # wait_ready counts from when n2 was sent its list (wall 1010), not from the restart
    assert policy.rollout.deadline() == pytest.approx(500.0 - 6.0 + 60.0)


def test_a_file_changed_while_the_master_was_down_is_not_resumed():
    world = started()
    record = world.policy.snapshot(11.0)['rollout']
    lists = {n: _kept(n, e) for n, e in world.kept_lists[-1]['lists'].items()}
    again = RolloutWorld({'max_parallel': 2}, saved=(record, lists), wall=1016.0)
    assert again.policy.rollout is None and 'is not resumed' in again.log_text()
    assert all(again.served(n) == sha(LIST_A) for n in NODES)


def test_a_node_gone_from_the_file_leaves_the_rollout_and_keeps_its_list():
    world = started({'max_parallel': 1})
    world.edit(LIST_C, 20.0, nodes=('n1', 'n2', 'n3'))
    assert sorted(world.policy.rollout.status) == ['n1', 'n2', 'n3']
    assert world.node_state('n4', 20.0) == 'unmanaged' and world.served('n4') == sha(LIST_A)


def test_a_node_cut_off_mid_wave_fails_at_wait_ready_and_the_rest_go_on():
    world = started({'max_parallel': 2, 'wait_ready': 30, 'max_failed': 1})
    world.ready('n1', LIST_B, 11.0)          # n2 says nothing more
    world.tick(40.0)
    assert world.policy.rollout.reasons == {'n2': 'not ready within 30 s'}
    assert world.served('n3') == sha(LIST_B) and world.served('n4') == sha(LIST_B)


@pytest.mark.parametrize('rollout, message', [
    (None, 'rollout: must be an object, not null'),
    ({}, 'rollout: missing required key "max_parallel"'),
    ({'max_parallel': 0}, 'rollout.max_parallel: must be a number of nodes (1 or more) or '
                          'a percentage such as "10%", not 0'),
    ({'max_parallel': '0%'}, 'rollout.max_parallel: must be a number'),
    ({'max_parallel': '101%'}, 'rollout.max_parallel: must be a number'),
    ({'max_parallel': '10 %'}, 'rollout.max_parallel: must be a number'),
    ({'max_parallel': True}, 'not true'),
    ({'max_parallel': 2.5}, 'not 2.5'),
    ({'max_parallel': 1, 'wait_ready': 0}, 'rollout.wait_ready: must be between 1 and 86400'),
    ({'max_parallel': 1, 'wait_ready': 'soon'}, 'rollout.wait_ready:'),
    ({'max_parallel': 1, 'max_failed': -1}, 'rollout.max_failed: must be an integer'),
    ({'max_parallel': 1, 'max_failed': 1.5}, 'rollout.max_failed: must be an integer'),
    ({'max_parallel': 1, 'auto_revert': 'yes'}, 'rollout.auto_revert: must be true or false'),
    ({'max_parallel': 1, 'maxfailed': 1}, 'unknown key "maxfailed" (did you mean '
                                          '"max_failed"?)'),
])
def test_a_bad_rollout_key_rejects_the_master_file_at_its_json_path(rollout, message):
    doc = {'master_stats': 'ipc:///tmp/s', 'master_updates': 'ipc:///tmp/u',
           'nodes': {'n1': LIST_A}, 'rollout': rollout}
    with pytest.raises(ConfigError) as err:
        parse_master(doc, '/srv/m.json')
    assert message in str(err.value)


def test_rollout_values_as_written_are_taken():
    spec = config({'n1': LIST_A}, {'max_parallel': '2.5%', 'wait_ready': 0.5 + 1,
                                   'max_failed': 3, 'auto_revert': True}).rollout
    assert (spec.max_parallel, spec.wait_ready, spec.max_failed, spec.auto_revert) == \
        ('2.5%', 1.5, 3, True)
    assert spec.wave_size(1000) == 25 and spec.wave_size(3) == 1


def test_dpd_ctl_cluster_says_where_each_node_stands_in_the_rollout():
    from dpd.ctl.cluster import describe_node
    world = started({'max_parallel': 1, 'auto_revert': True})
    world.runs('n1', LIST_B, 11.0, state='failed')
    snapshot = world.policy.snapshot(12.0)
    records = {r['node']: r for r in snapshot['nodes']}
    described = {n: describe_node(dict(records[n], last_seen=None), 12.0, snapshot['rollout'])
                 for n in NODES}
    assert described['n1'].startswith('rollout: reverted (a failed), version ')
    assert described['n2'].startswith('rollout: waiting for its wave, version ')
    assert not describe_node(dict(records['n2'], last_seen=None), 12.0).startswith('rollout')
