"""The Prometheus text format (SPEC 6.4), read back with prometheus_client's parser."""
import re

import pytest
from hypothesis import given, settings, strategies as st

from dpd import metrics
from dpd.cluster.states import NODE_STATES
from dpd.worker.lifecycle import STATES

parser = pytest.importorskip('prometheus_client.parser')


def parse(text):
    """{(sample name, frozenset of labels): value}, every family's type checked."""
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        expected = 'counter' if family.name + '_total' in metrics.FAMILIES else 'gauge'
        assert family.type == expected, family.name
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, 'duplicate series %r' % (key,)
            samples[key] = sample.value
    return samples


def value(samples, sample_name, **labels):
    return samples.get((sample_name, frozenset(labels.items())))


def proc(name, state='running', **more):
    return dict({'name': name, 'state': state, 'pid': 100, 'restarts': 0, 'since': 1700000000.25,
                 'health': None, 'memory_bytes': None, 'cpu_seconds': None}, **more)


def worker_body(*procs, ok=True, loaded_at=1700000000.5):
    return {'config': {'ok': ok, 'loaded_at': loaded_at, 'errors': []}, 'procs': list(procs)}


def test_every_family_has_help_and_type_before_its_samples_and_counters_end_in_total():
    text = metrics.worker_text(worker_body(proc('a', health='healthy', memory_bytes=1024,
                                                cpu_seconds=1.5)))
    seen_type = {}
    for line in text.splitlines():
        if line.startswith('# TYPE '):
            _, _, name, kind = line.split(' ')
            assert kind == ('counter' if name.endswith('_total') else 'gauge')
            assert name not in seen_type, 'one TYPE per family'
            seen_type[name] = True
        elif not line.startswith('#'):
            name = re.match(r'[a-z_]+', line).group(0)
            assert name in seen_type, 'a sample after its TYPE line'
    assert set(seen_type) == set(metrics.FAMILIES) - {
        'diprocd_node_state', 'diprocd_node_last_seen_timestamp_seconds', 'diprocd_node_in_sync',
        'diprocd_rollout_nodes', 'diprocd_rollout_halted'}
    assert all('# HELP %s ' % name in text for name in seen_type)
    assert text.endswith('\n')


def test_a_running_process_is_up_in_one_state_and_says_when_it_started():
    samples = parse(metrics.worker_text(worker_body(proc('web', restarts=3))))
    assert value(samples, 'diprocd_process_up', name='web') == 1
    states = {s: value(samples, 'diprocd_process_state', name='web', state=s) for s in STATES}
    assert states == dict({s: 0 for s in STATES}, running=1), 'a line for every known state'
    assert value(samples, 'diprocd_process_restarts_total', name='web') == 3
    assert value(samples, 'diprocd_process_start_time_seconds', name='web') == 1700000000.25
    assert value(samples, 'diprocd_config_load_success') == 1
    assert value(samples, 'diprocd_config_load_timestamp_seconds') == 1700000000.5


def test_series_appear_only_when_they_mean_something():
    samples = parse(metrics.worker_text(worker_body(
        proc('down', 'backoff'), proc('checked', health='unhealthy', memory_bytes=2048,
                                      cpu_seconds=0.25), proc('plain'))))
    assert value(samples, 'diprocd_process_up', name='down') == 0
    assert value(samples, 'diprocd_process_start_time_seconds', name='down') is None
    assert value(samples, 'diprocd_process_healthy', name='checked') == 0
    assert value(samples, 'diprocd_process_healthy', name='plain') is None, 'no check: no series'
    assert value(samples, 'diprocd_process_memory_bytes', name='checked') == 2048
    assert value(samples, 'diprocd_process_cpu_seconds_total', name='checked') == 0.25
    assert value(samples, 'diprocd_process_memory_bytes', name='plain') is None, 'unknown'


def test_a_rejected_edit_says_0_and_keeps_the_time_of_the_last_good_load():
    samples = parse(metrics.worker_text(worker_body(ok=False, loaded_at=1700000123.0)))
    assert value(samples, 'diprocd_config_load_success') == 0
    assert value(samples, 'diprocd_config_load_timestamp_seconds') == 1700000123.0


def test_label_values_are_escaped_as_the_format_requires():
    assert metrics.label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    assert metrics.label('caf\u00e9') == 'caf\u00e9'
    assert metrics.label('bad\udc80') == 'bad?', 'a lone surrogate is not UTF-8'


def node(name, state='in-sync', processes=(), managed=True, **more):
    return dict({'node': name, 'state': state, 'managed': managed, 'last_seen': 1700000010.5,
                 'worker': {'running': True, 'config_ok': True, 'config_loaded_at': 1700000001.0},
                 'processes': list(processes)}, **more)


def cluster_body(*nodes):
    return {'config': {'ok': True, 'loaded_at': 1700000000.0}, 'nodes': list(nodes)}


def test_the_master_labels_every_node_series_and_every_process_series_with_the_node():
    text = metrics.ClusterMetrics().text(cluster_body(
        node('n1', processes=[proc('web', health='healthy')]),
        node('n2', 'lagging', processes=[proc('web', 'backoff', restarts=5)]),
        node('stranger', 'unmanaged', managed=False, worker=None)))
    samples = parse(text)
    assert value(samples, 'diprocd_process_up', node='n1', name='web') == 1
    assert value(samples, 'diprocd_process_up', node='n2', name='web') == 0
    assert value(samples, 'diprocd_process_restarts_total', node='n2', name='web') == 5
    assert value(samples, 'diprocd_process_healthy', node='n1', name='web') == 1
    assert value(samples, 'diprocd_process_state', node='n2', name='web', state='backoff') == 1
    assert value(samples, 'diprocd_node_in_sync', node='n1') == 1
    assert value(samples, 'diprocd_node_in_sync', node='n2') == 0
    assert value(samples, 'diprocd_node_in_sync', node='stranger') is None, 'nothing to sync'
    assert {s: value(samples, 'diprocd_node_state', node='n2', state=s) for s in NODE_STATES} \
        == dict({s: 0 for s in NODE_STATES}, lagging=1)
    assert value(samples, 'diprocd_node_last_seen_timestamp_seconds', node='n1') == 1700000010.5
    assert value(samples, 'diprocd_config_load_success', node='n1') == 1, "the node's worker"
    assert value(samples, 'diprocd_config_load_timestamp_seconds', node='n1') == 1700000001.0
    assert value(samples, 'diprocd_config_load_success') == 1, "the master's own file"
    for (name, labels), _ in samples.items():
        if name.startswith(('diprocd_process_', 'diprocd_node_')):
            assert 'node' in dict(labels), name


def test_what_a_hostile_node_reports_still_parses_and_says_each_process_once():
    names = ['a"b', 'back\\slash', 'new\nline', 'caf\u00e9', '{}=,', 'a"b']
    reported = [proc(n) for n in names] + [proc('odd', state='no such state\n"x"'), 'junk']
    samples = parse(metrics.ClusterMetrics().text(cluster_body(node('n1', processes=reported))))
    for name in names:
        assert value(samples, 'diprocd_process_up', node='n1', name=name) == 1
    assert value(samples, 'diprocd_process_state', node='n1', name='odd',
                 state='no such state\n"x"') == 1


def test_a_nodes_lines_follow_its_reports_and_leave_with_it():
    cluster = metrics.ClusterMetrics()
    first = cluster.text(cluster_body(node('n1', processes=[proc('web')]), node('n2')))
    assert cluster.text(cluster_body(node('n1', processes=[proc('web')]), node('n2'))) == first
    samples = parse(cluster.text(cluster_body(node('n1', processes=[proc('web', 'stopped')]))))
    assert value(samples, 'diprocd_process_up', node='n1', name='web') == 0
    assert value(samples, 'diprocd_node_in_sync', node='n2') is None


def utf8(text):
    """As a label value must be (and JSON from a peer may not be: "\\ud800")."""
    return text.encode('utf-8', 'replace').decode('utf-8')


reported_text = st.text(st.characters() | st.sampled_from('\n\r\t\0"\\'),
                        min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(reported_text, reported_text | st.sampled_from(STATES),
                          st.none() | st.integers(0, 10**6), st.none() | st.floats(0, 1e9)),
                max_size=6))
def test_anything_a_node_reports_is_parsed_back_unchanged(reports):
    processes = [proc(name, state, restarts=restarts, cpu_seconds=cpu)
                 for name, state, restarts, cpu in reports]
    samples = parse(metrics.ClusterMetrics().text(cluster_body(node('n1', processes=processes))))
    first = {}           # by the name as a label shows it: a lone surrogate becomes '?'
    for record in processes:
        first.setdefault(utf8(record['name']), record)
    for name, record in first.items():
        assert value(samples, 'diprocd_process_up', node='n1', name=name) == \
            (record['state'] == 'running')
        assert value(samples, 'diprocd_process_state', node='n1', name=name,
                     state=utf8(record['state'])) == 1
        assert value(samples, 'diprocd_process_restarts_total', node='n1', name=name) == \
            record['restarts']


def test_the_rollout_is_counted_by_status_and_says_when_it_halted():
    rollout = {'id': '1795923229648', 'halted': 'web1: a failed', 'status': {
        'web1': 'reverted', 'web2': 'succeeded', 'web3': 'waiting', 'web4': 'waiting'}}
    body = dict(cluster_body(node('web1')), rollout=rollout)
    samples = parse(metrics.ClusterMetrics().text(body))
    counts = {s: value(samples, 'diprocd_rollout_nodes', rollout='1795923229648', status=s)
              for s in ('waiting', 'serving', 'succeeded', 'failed', 'reverted')}
    assert counts == {'waiting': 2, 'serving': 0, 'succeeded': 1, 'failed': 0, 'reverted': 1}
    assert value(samples, 'diprocd_rollout_halted', rollout='1795923229648') == 1
    assert value(parse(metrics.ClusterMetrics().text(cluster_body(node('web1')))),
                 'diprocd_rollout_halted', rollout='1795923229648') is None
