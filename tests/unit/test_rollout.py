"""The staged rollout object (SPEC 6.5), on a fake clock: waves, verdicts, halts."""
from dpd.cluster.rollout import FAILED, REVERTED, SERVING, SUCCEEDED, WAITING, Rollout, \
    RolloutSpec

NODES = ['n%02d' % i for i in range(10)]


def rollout(max_parallel=3, wait_ready=60, max_failed=0, auto_revert=False, nodes=NODES):
    return Rollout('r1', RolloutSpec(max_parallel, wait_ready, max_failed, auto_revert),
                   nodes, now=0.0)


def serving(r):
    return sorted(n for n, s in r.status.items() if s == SERVING)


def test_waves_take_the_changed_nodes_in_name_order():
    r = rollout(nodes=list(reversed(NODES)))
    assert r.waves == [NODES[0:3], NODES[3:6], NODES[6:9], NODES[9:]]
    assert serving(r) == NODES[0:3]
    assert all(r.serves_new(n) for n in NODES[0:3])
    assert all(r.holds(n) and not r.serves_new(n) for n in NODES[3:])
    assert r.describe() == 'rollout r1: wave 1/4, 0 of 10 nodes done'


def test_a_percentage_rounds_up_and_a_wave_is_never_empty():
    assert RolloutSpec('10%').wave_size(1000) == 100
    assert RolloutSpec('10%').wave_size(15) == 2
    assert RolloutSpec('1%').wave_size(3) == 1
    assert RolloutSpec(500).wave_size(10) == 500


def test_the_next_wave_starts_when_every_node_of_this_one_succeeded():
    r = rollout()
    assert r.observe('n00', 'ok', None, 1) == []
    assert r.observe('n01', None, None, 1) == []            # not yet
    assert r.observe('n01', 'ok', None, 2) == []
    assert r.observe('n02', 'ok', None, 3) == NODES[3:6]    # the next wave's nodes
    assert r.since['n03'] == 3 and serving(r) == NODES[3:6]
    for t, node in enumerate(NODES[3:], start=4):
        r.observe(node, 'ok', None, t)
    assert r.finished and r.halted is None
    assert all(r.status[n] == SUCCEEDED and r.serves_new(n) for n in NODES)
    assert r.describe() == 'rollout r1 done: 10 nodes'


def test_a_failure_within_max_failed_lets_the_rollout_go_on():
    r = rollout(max_failed=1)
    r.observe('n00', 'bad', 'web: failed', 1)
    r.observe('n01', 'ok', None, 1)
    assert r.observe('n02', 'ok', None, 1) == NODES[3:6]
    assert r.status['n00'] == FAILED and r.serves_new('n00'), 'kept: no auto_revert'
    assert r.halted is None


def test_past_max_failed_it_halts_and_the_rest_keep_their_lists():
    r = rollout(max_failed=0)
    assert r.observe('n01', 'bad', 'web: unhealthy', 1) == []
    assert r.halted == 'n01: web: unhealthy' and r.finished
    assert r.describe() == 'rollout r1 halted: n01: web: unhealthy'
    r.observe('n00', 'ok', None, 2)
    r.observe('n02', 'ok', None, 2)
    assert serving(r) == [] and all(r.status[n] == WAITING for n in NODES[3:])
    assert all(r.holds(n) for n in NODES[3:])


def test_auto_revert_gives_the_failed_nodes_their_old_list_back_even_after_the_halt():
    r = rollout(auto_revert=True)
    assert r.observe('n00', 'bad', 'refused', 1) == ['n00']
    assert r.status['n00'] == REVERTED and r.holds('n00') and not r.serves_new('n00')
    assert r.observe('n01', 'bad', 'web: backoff', 2) == ['n01']   # its wave was under way
    assert r.observe('n02', 'ok', None, 2) == []
    assert r.halted == 'n00: refused'


def test_a_node_not_ready_within_wait_ready_has_failed():
    r = rollout(wait_ready=30)
    r.observe('n00', 'ok', None, 1)
    r.observe('n01', 'ok', None, 1)
    assert r.deadline() == 30
    assert r.due(29.9) == [] and r.halted is None
    r.due(30)
    assert r.status['n02'] == FAILED and r.halted == 'n02: not ready within 30 s'
    assert r.deadline() is None


def test_a_slow_node_holds_its_wave_until_it_is_ready():
    r = rollout(wait_ready=30)
    r.observe('n00', 'ok', None, 1)
    r.observe('n01', 'ok', None, 1)
    assert r.due(20) == [] and serving(r) == ['n02']
    assert r.observe('n02', 'ok', None, 25) == NODES[3:6]
    assert r.deadline() == 55


def test_a_node_gone_from_the_file_is_not_waited_for():
    r = rollout()
    r.observe('n00', 'ok', None, 1)
    r.observe('n01', 'ok', None, 1)
    assert r.forget('n02', 2) == NODES[3:6]
    assert 'n02' not in r.status and r.counts() == (2, 9)


def test_a_verdict_for_a_node_not_serving_changes_nothing():
    r = rollout()
    assert r.observe('n05', 'bad', 'x', 1) == [] and r.status['n05'] == WAITING
    assert r.observe('stranger', 'ok', None, 1) == []
    assert r.serves_new('stranger'), 'a node outside the rollout is served as the file says'


def test_a_restarted_master_resumes_from_the_record():
    r = rollout(wait_ready=30)
    r.observe('n00', 'ok', None, 1)
    record = r.record(lambda t: 1000 + t)
    assert record['since']['n01'] == 1000 and record['line'] == r.describe()
    again = Rollout.resumed(r.spec, record, lambda w: w - 1000 + 500)
    assert again.status == r.status and again.waves == r.waves and again.wave == 0
    assert again.deadline() == 530
    again.observe('n01', 'ok', None, 501)
    assert again.observe('n02', 'ok', None, 502) == NODES[3:6]
