"""dpd-masterd: serves each node its list from one JSON file.

Threads: signals, the master-file watcher, the zmq thread, and with
metrics_listen the HTTP thread. The main thread runs the controller with
MasterPolicy.
"""
import gc
import logging
import os
import time

from .. import freemem, state
from ..metrics import ClusterMetrics
from ..cli import main_for
from ..config import ConfigError
from ..control import open_control
from ..inbox import Inbox
from ..loop import Controller, serve
from ..procfs import raise_fd_limit
from ..signals import SignalThread
from ..watcher import ConfigWatcher
from . import actions as act, httpd, keys, resume, sockets
from .config import MasterLoader, load_master
from .events import ConfigLoaded
from .executor import NetworkExecutor
from .link import ZmqLink
from .master import MasterPolicy

log = logging.getLogger('dpd')

# The master's heap is large (the records and texts of every node: hundreds of
# thousands of containers at 1000 nodes, millions at 10,000) and holds no cycles
# of its own, yet at the collector's default thresholds it walked all of it again
# and again: in a master-only benchmark of 10,000 nodes, 34 full passes took 5.5 of
# the master's 42.8 CPU-s. Young collections now come every 100,000 allocations
# instead of 700: the temporaries (decoded messages, replaced records) are freed by
# their reference counts before that, little is promoted, and the same run had 2
# full passes (0.07 s) and 29.0 CPU-s. Cycles are still found; at 1000 nodes it
# makes no difference that the benchmark can see.
GC_THRESHOLDS = (100_000, 10, 10)
TRIM_EVERY = 5.0        # s between two hand-backs of freed memory (freemem)


class MasterExecutor(NetworkExecutor):
    program = 'dpd-masterd'

    def __init__(self, reload_config, daemon_log, state_file, link, authorized_keys,
                 metrics_server=None):
        super().__init__(reload_config, daemon_log, state_file, link)
        self.authorized_keys = authorized_keys
        self.metrics_server = metrics_server      # the HTTP thread, with metrics_listen
        self.cluster_metrics = ClusterMetrics()
        self._shown = state.WallTimes('node', self._shown_node)
        self._trimmed_at = float('-inf')
        self.handles({act.KeepRolloutLists: self._keep_rollout_lists,
                      act.DropRolloutLists: self._drop_rollout_lists})

    def _reload(self, action):
        if self.authorized_keys is not None:  # HUP is how new node keys are taken in
            try:
                self.link.set_keys(keys.load_authorized(self.authorized_keys))
            except keys.KeyProblem as err:
                log.error('%s; keeping the keys already loaded', err)
        return super()._reload(action)

    def _keep_rollout_lists(self, action):
        try:
            resume.write_lists(self.state_file, action.record)
        except OSError as err:
            log.error('cannot save the lists of rollout %s in %s (%s): a master restarted '
                      'during it serves every node its new list', action.record['id'],
                      resume.lists_path(self.state_file), err.strerror or err)

    def _drop_rollout_lists(self, action):
        try:
            resume.drop_lists(self.state_file)
        except OSError as err:
            log.error('cannot remove the lists of the last rollout, %s: %s',
                      resume.lists_path(self.state_file), err.strerror or err)

    def _write_state(self, action):
        """After a write, freed memory goes back to the system: the texts of every
        node's record, the master file's parse (an edit is written within a
        second), the metrics text; at 10,000 nodes RSS otherwise kept ~90 MB of them.
        At most every TRIM_EVERY: a small fleet's file is written every few ms, and
        trimming a heap that a flood of big messages filled takes longer."""
        outcome = super()._write_state(action)
        now = time.monotonic()
        if now - self._trimmed_at >= TRIM_EVERY:
            self._trimmed_at = now
            freemem.give_back()
        return outcome

    def state_body(self, snapshot):
        """The view with wall times; an unchanged record (the policy hands the same
        object again) keeps its shown copy (state.WallTimes)."""
        return dict(snapshot, nodes=self._shown.copies(snapshot['nodes']))

    @staticmethod
    def _shown_node(record, wall):
        copy = dict(record)
        copy['last_seen'] = wall(copy.pop('seen_at'))
        return copy

    def publish_metrics(self, body, action):
        """The text is made here, once per state write (at most every 2 s for a
        thousand nodes), however often it is scraped; the HTTP thread gets bytes."""
        if self.metrics_server is not None:
            self.metrics_server.publish(self.cluster_metrics.text(body).encode())


class MasterDaemon:
    program = 'dpd-masterd'
    description = 'Serve each node its process list from one JSON file.'

    def load(self, path):
        """At start and for -t: the file and its keys (a bad key file is a
        configuration error). An edit reloads the file alone: keys are read at
        start, and node keys again on HUP."""
        config = load_master(path)
        sockets.master_keys(config)
        return config

    @staticmethod
    def own_paths(config):
        """Files it must own before it trusts them (SPEC 5.2)."""
        return (config.state_file,)

    def check(self, path):
        """The whole file, then every node's list with the worker's rules."""
        config = self.load(path)
        problems = [message for listed in config.nodes.values() for message in listed.errors]
        if problems:
            raise ConfigError(problems)
        return []

    def serve(self, config, daemon_log, ready):
        gc.set_threshold(*GC_THRESHOLDS)
        events = Inbox()
        signals = SignalThread(events.put)
        raise_fd_limit()
        curve, zap_keys = sockets.master_keys(config)
        sockets.warn_if_open((config.master_stats, config.master_updates), curve,
                             'pose as a node and read its list')
        metrics_server = _metrics_server(config, events.put)
        link = ZmqLink(events, sockets.master_plans(config, curve), zap_keys)
        link.start()
        try:
            link.wait_ready()
        except OSError as err:
            raise OSError(err.errno, 'cannot bind %s or %s: %s' % (
                config.master_stats, config.master_updates, err.strerror or err)) from None
        watcher = ConfigWatcher(config.path, MasterLoader(), events.put,
                                known_sha256=config.sha256)
        executor = MasterExecutor(watcher.recheck, daemon_log, config.state_file, link,
                                  config.authorized_keys, metrics_server)
        executor.control = control = open_control(config, events.put)
        policy = MasterPolicy(os.urandom(8).hex(), curve is not None,
                              *resume.previous_state(config.state_file))
        controller = Controller(policy, executor, events)
        signals.start()
        controller.dispatch(ConfigLoaded(config, time.time()))
        controller.flush()
        if zap_keys is not None:
            log.info('keys: %d nodes authorized', len(zap_keys))
        threads = [signals, link, watcher] + [t for t in (metrics_server, control) if t]
        return serve(controller, threads, ready).code


def _metrics_server(config, post):
    """The HTTP thread of metrics_listen, its socket bound (not started yet)."""
    if config.metrics_listen is None:
        return None
    try:
        sock = httpd.listen(config.metrics_listen)
    except OSError as err:
        raise OSError(err.errno, 'cannot listen on %s (metrics_listen): %s' % (
            config.metrics_listen, err.strerror or err)) from None
    log.info('metrics: GET /metrics on %s', config.metrics_listen)
    return httpd.MetricsServer(sock, post)


main = main_for(MasterDaemon)

if __name__ == '__main__':
    main()
