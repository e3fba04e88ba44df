"""SPEC 6.4, the worker's side: metrics_file follows reality, is replaced whole,
and node_exporter's textfile collector takes it as it is."""
import os
import signal
import stat
import subprocess
import threading
import time
import urllib.request

import pytest

from support import Daemon, free_port, read_json, run, wait_until, write_json

parser = pytest.importorskip('prometheus_client.parser')
NODE_EXPORTER = '/usr/bin/prometheus-node-exporter'


def parse(text):
    """{(sample name, (sorted labels)): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parser.text_string_to_metric_families(text) for s in family.samples}


def read_metrics(path):
    try:
        with open(path) as f:
            return parse(f.read())
    except FileNotFoundError:
        return {}


def value(samples, sample_name, **labels):
    return samples.get((sample_name, tuple(sorted(labels.items()))))


def worker_doc(workdir, *procs, **keys):
    return dict({'procs': list(procs), 'metrics_file': workdir.join('textfile', 'diprocd.prom')},
                **keys)


def state_of(workdir, name):
    try:
        procs = read_json(workdir.join('worker.state.json'))['procs']
    except (OSError, ValueError):
        return {}
    return next((p for p in procs if p['name'] == name), {})


class Reader(threading.Thread):
    """Reads the metrics file over and over: every read must be a whole file."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.path, self.stop, self.reads, self.bad = path, threading.Event(), 0, []

    def run(self):
        while not self.stop.is_set():
            try:
                with open(self.path) as f:
                    text = f.read()
            except FileNotFoundError:
                continue
            self.reads += 1
            if not text.endswith('\n') or 'diprocd_process_up' not in text:
                self.bad.append(text[-200:])


def test_the_metrics_file_follows_the_processes_and_the_config(workdir):
    os.mkdir(workdir.join('textfile'))
    config, metrics_file = workdir.join('worker.json'), workdir.join('textfile', 'diprocd.prom')
    write_json(config, worker_doc(workdir, workdir.actor('web', 'sleep')))
    worker = Daemon('dpd-workerd', config).start()
    reader = Reader(metrics_file)
    try:
        up = wait_until(lambda: value(read_metrics(metrics_file), 'diprocd_process_up',
                                      name='web') == 1 and read_metrics(metrics_file))
        assert value(up, 'diprocd_process_restarts_total', name='web') == 0
        assert value(up, 'diprocd_process_state', name='web', state='running') == 1
        started = value(up, 'diprocd_process_start_time_seconds', name='web')
        assert abs(started - time.time()) < 30
        loaded = value(up, 'diprocd_config_load_timestamp_seconds')
        assert value(up, 'diprocd_config_load_success') == 1 and abs(loaded - time.time()) < 30
        assert stat.S_IMODE(os.stat(metrics_file).st_mode) == 0o644
        reader.start()

        # a kill: the restart is in the file within 1 s of the state file saying it
        os.kill(state_of(workdir, 'web')['pid'], signal.SIGKILL)
        wait_until(lambda: state_of(workdir, 'web').get('restarts') == 1 and
                   state_of(workdir, 'web').get('state') == 'running')
        restarted = wait_until(lambda: value(read_metrics(metrics_file),
                                             'diprocd_process_restarts_total', name='web') == 1
                               and read_metrics(metrics_file), timeout=1.0)
        assert value(restarted, 'diprocd_process_up', name='web') == 1

        # a rejected edit: success 0, the time of the last good load kept
        write_json(config, dict(worker_doc(workdir), procs='not a list'))
        rejected = wait_until(lambda: value(read_metrics(metrics_file),
                                            'diprocd_config_load_success') == 0
                              and read_metrics(metrics_file))
        assert value(rejected, 'diprocd_config_load_timestamp_seconds') == loaded
        assert value(rejected, 'diprocd_process_up', name='web') == 1, 'left running'

        # a valid one: success 1, a later time, the new process there too
        write_json(config, worker_doc(workdir, workdir.actor('web', 'sleep'),
                                      workdir.actor('db', 'sleep')))
        valid = wait_until(lambda: value(read_metrics(metrics_file), 'diprocd_process_up',
                                         name='db') == 1 and read_metrics(metrics_file))
        assert value(valid, 'diprocd_config_load_success') == 1
        assert value(valid, 'diprocd_config_load_timestamp_seconds') > loaded
        reader.stop.set()
        reader.join()
        assert reader.reads > 10 and not reader.bad, 'every read saw a whole file'
        assert sorted(os.listdir(workdir.join('textfile'))) == ['diprocd.prom'], 'no temp left'

        # counters only grow: a new worker adopts the processes and their restarts
        worker.signal(signal.SIGQUIT)
        assert worker.wait() == 0
        worker = Daemon('dpd-workerd', config).start()
        worker.wait_log('web: adopted')
        wait_until(lambda: 'adopted' in worker.log() and
                   value(read_metrics(metrics_file), 'diprocd_process_up', name='db') == 1)
        assert value(read_metrics(metrics_file), 'diprocd_process_restarts_total',
                     name='web') == 1

        # the key removed: the file goes (left, it would say forever that web runs)
        write_json(config, {'procs': [workdir.actor('web', 'sleep'), workdir.actor('db', 'sleep')]})
        wait_until(lambda: not os.path.exists(metrics_file))
    finally:
        reader.stop.set()
        worker.stop()


def scrape(url, timeout=5.0):
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return answer.read().decode()


@pytest.mark.skipif(not os.access(NODE_EXPORTER, os.X_OK),
                    reason='needs %s (Debian package prometheus-node-exporter)' % NODE_EXPORTER)
def test_node_exporter_reads_the_metrics_file_without_an_error(workdir):
    textfile = workdir.join('textfile')
    os.mkdir(textfile)
    config = workdir.join('worker.json')
    write_json(config, worker_doc(workdir, workdir.actor('web', 'sleep'),
                                  workdir.actor('once', 'exit', 3, restart=False)))
    worker = Daemon('dpd-workerd', config).start()
    port = free_port()
    exporter = subprocess.Popen(
        [NODE_EXPORTER, '--collector.disable-defaults', '--collector.textfile',
         '--collector.textfile.directory', textfile, '--web.listen-address',
         '127.0.0.1:%d' % port], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_until(lambda: value(read_metrics(workdir.join('textfile', 'diprocd.prom')),
                                 'diprocd_process_state', name='once', state='exited') == 1)

        def scraped():
            try:
                return parse(scrape('http://127.0.0.1:%d/metrics' % port))
            except OSError:
                return None
        samples = wait_until(scraped)
        assert value(samples, 'node_textfile_scrape_error') == 0
        assert value(samples, 'diprocd_process_up', name='web') == 1
        assert value(samples, 'diprocd_process_state', name='once', state='exited') == 1
        assert value(samples, 'diprocd_config_load_success') == 1
    finally:
        exporter.terminate()
        _, errors = exporter.communicate(timeout=10)
        worker.stop()
    assert b'level=error' not in errors, errors.decode(errors='replace')[-2000:]


def test_a_metrics_file_on_the_workers_lock_is_refused_and_the_lock_holds(workdir):
    """metrics_file = CONFIG.lock was renamed over the held lock: a second worker
    (cron's start) then locked the new file and ran the same config beside the first."""
    config = workdir.join('worker.json')
    lock = config + '.lock'
    write_json(config, worker_doc(workdir, workdir.actor('web', 'sleep'), metrics_file=lock))
    status, _, err = run('dpd-workerd', '-t', config)
    assert status == 78 and "metrics_file: %s is the worker's lock" % lock in err, err
    os.mkdir(workdir.join('textfile'))
    write_json(config, worker_doc(workdir, workdir.actor('web', 'sleep')))
    worker = Daemon('dpd-workerd', config).start()
    second = Daemon('dpd-workerd', config)
    try:
        held = os.stat(lock).st_ino
        write_json(config, worker_doc(workdir, workdir.actor('web', 'sleep'), metrics_file=lock))
        wait_until(lambda: 'configuration rejected' in worker.log() or
                   os.stat(lock).st_ino != held, message=worker.log)
        assert os.stat(lock).st_ino == held, 'the metrics file replaced the lock'
        assert "metrics_file: %s is the worker's lock" % lock in worker.log()
        write_json(config, worker_doc(workdir, workdir.actor('web', 'sleep')))
        wait_until(lambda: config_ok(workdir), message=worker.log)
        second.start(wait_ready=False)          # cron's start: the lock says it runs
        assert second.wait() == 0 and 'already running' in second.log(), second.log()
    finally:
        second.stop()
        worker.stop()



def config_ok(workdir):
    try:
        return read_json(workdir.join('worker.state.json'))['config']['ok']
    except (OSError, ValueError, KeyError):
        return False
