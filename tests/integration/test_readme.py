"""The README's walkthroughs, followed to the letter by a test.

Each shell block is taken from the README as it is; only the directory it
works in (`D=...`, `ETC=...`) and the location of the installed commands are
replaced, so the test runs in its own directory with this checkout's venv.
"""
import json
import os
import re
import signal
import subprocess

import pytest

from support import IS_ROOT, REPO, command, pid_alive, read_pid, run, wait_until

README = os.path.join(REPO, 'README')
BIN = os.path.dirname(command('dpd-workerd')[0]) + '/'
needs_installed_commands = pytest.mark.skipif(
    not os.path.exists(BIN + 'dpd-workerd'), reason='needs the installed commands (tests/run)')


def blocks(after, language, count, before=None):
    """The first `count` fenced `language` blocks after the line `after`."""
    with open(README) as f:
        text = f.read()
    text = text[text.index(after):]
    if before:
        text = text[:text.index(before)]
    found = re.findall(r'```%s\n(.*?)```' % language, text, re.S)
    assert len(found) >= count, 'the README lost a block after %r' % after
    return found[:count]


def sh(script, cwd=REPO, strict=True):
    """Run a README block with bash (-e when `strict`: every command must succeed)."""
    script = script.replace('sudo .venv/bin/', BIN).replace('.venv/bin/', BIN)
    script = script.replace('dpd-ctl keygen', BIN + 'dpd-ctl keygen')
    done = subprocess.run(['bash'] + (['-e'] if strict else []) + ['-c', script], cwd=cwd,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 or not strict, done.stderr + done.stdout
    return done.stdout


def stop(pids):
    for pid in pids:
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGTERM)
    for pid in pids:
        if pid:
            wait_until(lambda pid=pid: not pid_alive(pid), message='pid %d stops' % pid)


@needs_installed_commands
@pytest.mark.skipif(not IS_ROOT, reason='the demo runs processes as nobody')
def test_the_one_machine_demo(workdir):
    demo = workdir.join('demo')
    script, = blocks('**All three on one machine**', 'sh', 1)
    assert 'D=/tmp/diprocd-demo' in script
    def daemons():
        return [read_pid(os.path.join(demo, name)) for name in
                ('dpd-masterd.pid', 'dpd-clientd.pid', 'worker.json.lock')]
    try:
        # its last line, dpd-ctl cluster, exits 150: node2 is never seen, as the comment says
        out = sh(script.replace('D=/tmp/diprocd-demo', 'D=' + demo), strict=False)
        assert all(daemons()), out
        assert 'node2.domain.tld  NEVER-SEEN' in out
        wait_until(lambda: 'sleep.node1  RUNNING' in run('dpd-ctl', 'status',
                                                         demo + '/worker.json')[1])
        master = os.path.join(demo, 'master.json')
        with open(master) as f:
            doc = json.load(f)
        second = dict(doc['nodes']['node1.domain.tld'][0], name='sleep.node1.b')
        del second['pid_file']
        doc['nodes']['node1.domain.tld'].append(second)
        with open(master + '.tmp', 'w') as f:
            json.dump(doc, f)
        os.rename(master + '.tmp', master)
        wait_until(lambda: 'sleep.node1.b  RUNNING' in run('dpd-ctl', 'status',
                                                           demo + '/worker.json')[1])
        status, out, _ = run('dpd-ctl', 'cluster', master)
        assert status == 150 and 'node1.domain.tld  IN-SYNC' in out
        # "Everyday operations", on the demo: every command must succeed
        operations, = blocks('On the one-machine demo above', 'sh', 1)
        out = sh(operations.replace('D=/tmp/diprocd-demo', 'D=' + demo))
        assert 'sleep.node1: restarted, ready (pid' in out
        assert 'sleep.node1 on node1.domain.tld: restarted, ready (pid' in out
        assert 'sent SIGCONT to every process of sleep.node1' in out
    finally:
        stop(daemons())


@needs_installed_commands
def test_securing_a_cluster_step_by_step(workdir):
    master_block, node_block = blocks('## Securing a cluster', 'sh', 2)
    master_json, client_json = blocks('## Securing a cluster', 'json', 2)
    etc_master, etc_node = workdir.join('etc-master'), workdir.join('etc-node')
    sh(master_block.replace('ETC=/etc/diprocd', 'ETC=' + etc_master))
    sh(node_block.replace('ETC=/etc/diprocd', 'ETC=' + etc_node)
       .replace('NODE=node1.domain.tld', 'NODE=n1'))
    # "copy the public keys across": the README says which file goes where
    os.link(os.path.join(etc_node, 'keys', 'n1.key'),
            os.path.join(etc_master, 'authorized_keys', 'n1.key'))
    os.link(os.path.join(etc_master, 'keys', 'master.key'),
            os.path.join(etc_node, 'keys', 'master.key'))
    assert os.stat(os.path.join(etc_node, 'keys', 'n1.key_secret')).st_mode & 0o777 == 0o600
    master_keys = json.loads('{%s}' % master_json.replace('/etc/diprocd', etc_master))
    client_keys = json.loads('{%s}' % client_json.replace('/etc/diprocd', etc_node)
                             .replace('node1.domain.tld', 'n1'))
    from cluster_support import Cluster
    cluster = Cluster(workdir, master_extra=master_keys)
    try:
        cluster.write_master({'n1': [workdir.actor('a', 'sleep')]})
        cluster.start_master()
        node = cluster.add_node('n1', client_extra=client_keys)
        node.start_client()
        node.client.wait_log('(CURVE)')
        wait_until(lambda: 'a' in node.running())
        cluster.wait_node_state('n1', 'in-sync')
    finally:
        cluster.stop()


PROMTOOL = '/usr/bin/promtool'


def test_the_monitoring_examples_are_files_the_daemons_take(tmp_path):
    from dpd.nodepolicy import parse_policy
    from dpd.worker.config import parse_worker
    worker, policy = [json.loads(b) for b in blocks('## Monitoring', 'json', 2)]
    assert parse_worker(worker, '/var/lib/diprocd/diprocd-worker.json', 'nobody') \
        .metrics_file == '/var/lib/prometheus/node-exporter/diprocd.prom'
    assert '/var/lib/prometheus/node-exporter' in parse_policy(policy).allowed_paths


@pytest.mark.skipif(not os.access(PROMTOOL, os.X_OK),
                    reason='needs %s (Debian package prometheus)' % PROMTOOL)
def test_the_scrape_job_and_the_alert_rules_are_what_prometheus_takes(tmp_path):
    scrape, rules = blocks('## Monitoring', 'yaml', 2, before='## Configuration reference')
    for name, text, verb in (('prometheus.yml', scrape, 'config'),
                             ('diprocd.rules.yml', rules, 'rules')):
        path = tmp_path / name
        path.write_text(text)
        done = subprocess.run([PROMTOOL, 'check', verb, str(path)], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    assert rules.count('- alert: ') == 3
    (tmp_path / 'alerts.test.yml').write_text(RULES_TEST)
    done = subprocess.run([PROMTOOL, 'test', 'rules', 'alerts.test.yml'], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# the README's alert rules against both views of a process: a node's textfile
# (`instance` only) and the master's (`node`); a restart:false process that
# ended is not down
RULES_TEST = """
rule_files: [diprocd.rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'diprocd_process_up{instance="n1:9100",name="web"}'
        values: '0x10'
      - series: 'diprocd_process_state{instance="n1:9100",name="web",state="backoff"}'
        values: '1x10'
      - series: 'diprocd_process_state{instance="n1:9100",name="web",state="exited"}'
        values: '0x10'
      - series: 'diprocd_process_up{instance="n1:9100",name="once"}'
        values: '0x10'
      - series: 'diprocd_process_state{instance="n1:9100",name="once",state="exited"}'
        values: '1x10'
      - series: 'diprocd_process_up{instance="m:9640",node="n2",name="db"}'
        values: '0x10'
      - series: 'diprocd_process_state{instance="m:9640",node="n2",name="db",state="exited"}'
        values: '0x10'
      - series: 'diprocd_process_restarts_total{instance="m:9640",node="n2",name="db"}'
        values: '0+1x10'
      - series: 'diprocd_node_in_sync{instance="m:9640",node="n2"}'
        values: '0x15'
    alert_rule_test:
      - eval_time: 6m
        alertname: DiprocdProcessDown
        exp_alerts:
          - exp_labels: {instance: "n1:9100", name: web}
            exp_annotations: {summary: 'web on n1:9100 is not running'}
          - exp_labels: {instance: "m:9640", node: n2, name: db}
            exp_annotations: {summary: 'db on n2 is not running'}
      - eval_time: 10m
        alertname: DiprocdRestarting
        exp_alerts:
          - exp_labels: {instance: "m:9640", node: n2, name: db}
            exp_annotations: {summary: 'db on n2 restarted 10 times in an hour'}
      - eval_time: 12m
        alertname: DiprocdNodeNotInSync
        exp_alerts:
          - exp_labels: {instance: "m:9640", node: n2}
            exp_annotations:
              summary: 'node n2 does not run the list the master file gives it'
"""
