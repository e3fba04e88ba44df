"""Staged rollouts and plan with a real master, clients and workers (SPEC 6.5):
waves seen in order on the nodes' own files, a halt that leaves the rest alone,
auto-revert, a master killed with -9 mid-rollout that resumes it, and
`dpd-ctl plan` against what the nodes report."""
import json

import pytest

from cluster_support import Cluster, ctl
from support import IS_ROOT, read_json, wait_until, write_json

NODES = ('w1', 'w2', 'w3')


def sleeper(workdir, name, **keys):
    proc = dict({'name': name, 'run': '/bin/sh',
                 'args': ['-c', 'while :; do sleep 0.1; done', '%s-%s' % (workdir.marker, name)]},
                **keys)
    if IS_ROOT:
        proc['user'] = 'root'
    return proc


def crasher(workdir):
    return sleeper(workdir, 'a', args=['-c', 'exit 3', workdir.marker + '-crash'])


def gated(workdir, flag):
    """Ready only once `flag` exists (an exec health check)."""
    return sleeper(workdir, 'a', health={'exec': ['/bin/test', '-e', flag], 'interval': 1,
                                         'start_period': 300})


@pytest.fixture
def cluster(workdir):
    made = Cluster(workdir)
    yield made
    made.stop()


def start(cluster, workdir, rollout, entries=None):
    entries = entries or [sleeper(workdir, 'a')]
    cluster.write_master(dict.fromkeys(NODES, entries),
                         **({} if rollout is None else {'rollout': rollout}))
    cluster.start_master()
    for name in NODES:
        node = cluster.add_node(name)
        node.start_client()
    for name in NODES:
        wait_until(lambda n=cluster.nodes[name]: 'a' in n.running(), 15)
        cluster.wait_node_state(name, 'in-sync')


def args_of(node):
    """Process a as the node's worker file defines it (what the node was given)."""
    doc = node.worker_doc()
    return [p for p in doc['procs'] if p['name'] == 'a']


def rollout_record(cluster):
    try:
        return read_json(cluster.workdir.join('master.state.json')).get('rollout') or {}
    except (OSError, ValueError):
        return {}


def kept_lists(cluster):
    """The file of the lists a rollout's held nodes keep (None: there is none)."""
    try:
        return read_json(cluster.workdir.join('master.state.rollout.json'))
    except FileNotFoundError:
        return None


def test_waves_reach_the_nodes_in_name_order_one_ready_wave_after_the_other(cluster, workdir):
    start(cluster, workdir, {'max_parallel': 1, 'wait_ready': 30})
    old = args_of(cluster.nodes['w1'])
    new = [sleeper(workdir, 'a', args=['-c', 'while :; do sleep 0.2; done', workdir.marker])]
    cluster.write_master(dict.fromkeys(NODES, new), rollout={'max_parallel': 1, 'wait_ready': 30})
    seen = []            # the order in which the nodes' files change, and who ran then

    def progress():
        for name in NODES:
            if name not in seen and args_of(cluster.nodes[name]) != old:
                # when a node gets the new list, every node before it runs its new process
                assert all(cluster.nodes[n].running().get('a') and args_of(cluster.nodes[n])
                           != old for n in seen), 'a wave started before the last was ready'
                seen.append(name)
        return len(seen) == len(NODES)

    wait_until(progress, 30, interval=0.02)
    assert seen == list(NODES)
    wait_until(lambda: rollout_record(cluster).get('line', '').endswith('done: 3 nodes'), 20)
    assert kept_lists(cluster) is None, 'nobody is held: the old lists are not kept'
    for name in NODES:
        cluster.wait_node_state(name, 'in-sync')
    code, out, _ = ctl(cluster, 'cluster')
    assert code == 0 and out.splitlines()[0].endswith('done: 3 nodes'), out


def test_a_failing_wave_halts_and_auto_revert_gives_back_the_old_list(cluster, workdir):
    rollout = {'max_parallel': 1, 'wait_ready': 30, 'auto_revert': True}
    start(cluster, workdir, rollout)
    before = {name: args_of(cluster.nodes[name]) for name in NODES}
    cluster.write_master(dict.fromkeys(NODES, [crasher(workdir)]), rollout=rollout)
    wait_until(lambda: rollout_record(cluster).get('halted'), 30)
    halted = rollout_record(cluster)
    assert halted['halted'].startswith('w1: a '), halted
    # w1 gets its old list back; w2 and w3 never saw the new one
    wait_until(lambda: args_of(cluster.nodes['w1']) == before['w1'], 15)
    wait_until(lambda: 'a' in cluster.nodes['w1'].running(), 15)
    assert all(args_of(cluster.nodes[n]) == before[n] for n in ('w2', 'w3'))
    for name in NODES:
        cluster.wait_node_state(name, 'held')
    code, out, _ = ctl(cluster, 'cluster')
    assert code == 150, out
    lines = out.splitlines()
    assert lines[0].startswith('rollout %s halted: w1: a ' % halted['id'])
    assert 'HELD' in lines[1] and 'rollout: reverted (a ' in lines[1], out
    assert 'rollout: waiting for its wave' in lines[2], out
    code, out, _ = ctl(cluster, 'cluster', '--json')
    assert json.loads(out)['rollout']['halted'] == halted['halted']
    # the next edit replaces the halted rollout: here with the lists the nodes run
    cluster.write_master(dict.fromkeys(NODES, [sleeper(workdir, 'a')]), rollout=rollout)
    wait_until(lambda: rollout_record(cluster).get('id') != halted['id'] or
               not rollout_record(cluster), 15)
    for name in NODES:
        cluster.wait_node_state(name, 'in-sync')


def test_a_master_killed_mid_rollout_resumes_it(cluster, workdir):
    rollout = {'max_parallel': 1, 'wait_ready': 300}
    start(cluster, workdir, rollout)
    before = {name: args_of(cluster.nodes[name]) for name in NODES}
    flag = workdir.join('ready-flag')
    cluster.write_master(dict.fromkeys(NODES, [gated(workdir, flag)]), rollout=rollout)
    w1 = cluster.nodes['w1']
    wait_until(lambda: args_of(w1) != before['w1'], 15)
    cluster.wait_node_state('w2', 'held')
    record = rollout_record(cluster)
    assert sorted(kept_lists(cluster)['lists']) == list(NODES)
    cluster.master.kill9()
    cluster.start_master().wait_log('resumed rollout %s' % record['id'])
    cluster.wait_node_state('w2', 'held')
    assert args_of(cluster.nodes['w2']) == before['w2'], 'a held node keeps its list'
    with open(flag, 'w'):
        pass                            # w1's new process gets ready: the rollout goes on
    wait_until(lambda: rollout_record(cluster).get('line', '').endswith('done: 3 nodes'), 40)
    assert rollout_record(cluster)['id'] == record['id']
    assert kept_lists(cluster) is None
    for name in NODES:
        assert args_of(cluster.nodes[name]) != before[name]
        cluster.wait_node_state(name, 'in-sync')


def test_plan_says_what_an_edit_would_change_and_never_prints_env(cluster, workdir):
    secret = 'hunter2-%s' % workdir.marker
    start(cluster, workdir, None, [sleeper(workdir, 'a', env={'TOKEN': secret})])
    new_file = workdir.join('new.json')
    doc = read_json(cluster.master_config)
    doc['nodes']['w2'] = [sleeper(workdir, 'a', env={'TOKEN': secret + '-new'}),
                          sleeper(workdir, 'b')]
    write_json(new_file, doc)
    code, out, err = ctl(cluster, 'plan', new_file)
    assert code == 2, (out, err)
    assert secret not in out
    assert out.splitlines() == ['w2:', '  + b', '  ~ a: env.TOKEN *** -> ***',
                                '1 node changes, 2 unchanged'], out
    code, out, _ = ctl(cluster, 'plan')                     # the file as it is: nothing
    assert code == 0, out
    doc['nodes']['w3'] = [{'name': 'x'}]                    # no `run`
    write_json(new_file, doc)
    code, out, _ = ctl(cluster, 'plan', new_file)
    assert code == 78 and '! w3' in out, out
    code, out, _ = ctl(cluster, 'plan', '--json', new_file)
    assert code == 78 and json.loads(out)['status'] == 78
