"""dpd-clientd: keeps the local worker file equal to the master's list for this node.

Threads: signals, the client-file watcher, the worker observer (the worker's
state file), the zmq thread. The main thread runs the controller with
ClientPolicy.
"""
import logging
import os
import socket

from .. import nodepolicy, state
from ..cli import main_for
from ..config import ConfigError, daemon_files, lock_path
from ..control import socket_of, socket_path
from ..inbox import Inbox
from ..loop import Controller, serve
from ..signals import SignalThread
from ..watcher import ConfigWatcher, FileWatcher
from ..worker import journal
from . import actions as act
from . import events as ev
from . import sockets, workerfile
from .asker import WorkerAsker
from .client import ClientPolicy
from .config import load_client
from .executor import NetworkExecutor
from .link import ZmqLink
from .protocol import NODE_PATTERN

log = logging.getLogger('dpd')


def node_name(config):
    """`%H` anywhere in node_name becomes the host's name, as `hostname` prints it."""
    node = config.node_name.replace('%H', socket.gethostname())
    if not NODE_PATTERN.match(node):
        raise ConfigError(['%s: node_name: "%s" is not a valid node name' % (config.path, node)])
    return node


class WorkerObserver(FileWatcher):
    """Watches the worker's state file; posts what the worker file and worker say."""

    def __init__(self, conf_file, post):
        _, state_path = daemon_files(conf_file)
        super().__init__(state_path, post, name='worker-observer')
        self.conf_file = conf_file
        self._last = None

    def changed(self, force=False):
        seen = workerfile.observe(self.conf_file)
        what = (seen.applied, seen.worker, seen.processes)
        if force or what != self._last:
            self._last = what
            self.post(seen)


class ClientExecutor(NetworkExecutor):
    program = 'dpd-clientd'

    def __init__(self, reload_config, daemon_log, config, link, node_policy, asker):
        super().__init__(reload_config, daemon_log, config.state_file, link)
        self.conf_file, self.node_policy = config.conf_file, node_policy
        self.taken = _files_taken(config)
        self.handles({act.RebuildLink: self._rebuild,
                      act.WriteWorkerFile: self._write_worker_file,
                      act.AskWorker: lambda action: asker.ask(action.ref, action.request),
                      act.CancelAsk: lambda action: asker.cancel(action.ref)})

    def _rebuild(self, action):
        self.link.rebuild()

    def _write_worker_file(self, action):
        """The node policy first (the worker holds the file to it again), then the
        write: the master hears at once why a list is refused."""
        problems = nodepolicy.check_entries(action.entries, self.node_policy.policy, 'nobody',
                                            self.taken)
        if problems:
            return [ev.WorkerFileRefused(tuple(problems))]
        try:
            workerfile.write(self.conf_file, action.entries, action.record)
        except workerfile.Refused as err:
            return [ev.WorkerFileRefused(('cannot write %s: %s' % (self.conf_file, err),))]
        return [ev.WorkerFileWritten(dict(action.record))]

    def state_body(self, snapshot):
        snapshot['last_heard'] = state.to_wall(snapshot.pop('heard_at'))
        return snapshot


def _files_taken(config):
    """Files no process of the worker file may be given: the worker's (by its
    config's path; its own keys may add more, which the worker refuses itself)
    and this client's."""
    lock, state_file = daemon_files(config.conf_file)
    worker = (config.conf_file, lock, state_file, state_file[:-len('.json')] + '.fifos',
              journal.path_of(state_file), socket_path(state_file))
    ours = (config.path, lock_path(config), config.log_file, config.state_file,
            config.state_file and socket_path(config.state_file))
    return tuple(os.path.normpath(p) for p in worker + ours if p)


class ClientDaemon:
    program = 'dpd-clientd'
    description = 'Keep the local worker file equal to what the master wants for this node.'
    takes_policy = True

    def __init__(self):
        self.node_policy = nodepolicy.PolicyInForce()   # run_daemon gives it --policy

    def load(self, path):
        """At start and for -t: the node policy, the file and its keys (a bad key
        file is a configuration error); an edit reloads the file alone (`reload`)."""
        self.node_policy.load()
        config = self.reload(path)
        sockets.client_curve(config)
        return config

    @staticmethod
    def reload(path):
        config = load_client(path)
        node_name(config)
        return config

    @staticmethod
    def own_paths(config):
        """Files it must own before it trusts them (SPEC 5.2)."""
        return (config.state_file,)

    def check(self, path):
        self.load(path)
        return []

    def serve(self, config, daemon_log, ready):
        events = Inbox()
        signals = SignalThread(events.put)
        node = node_name(config)
        curve = sockets.client_curve(config)
        sockets.warn_if_open((config.master_stats,), curve,
                             'pose as the master and run anything as root here')
        workerfile.default_conf(config.conf_file)
        link = ZmqLink(events, sockets.client_plans(config, curve))
        watcher = ConfigWatcher(config.path, self.reload, events.put, config.sha256)
        def reload_config():
            self.node_policy.reload(log)
            watcher.recheck()
        asker = WorkerAsker(socket_of(config.conf_file), events.put)
        executor = ClientExecutor(reload_config, daemon_log, config, link, self.node_policy,
                                  asker)
        policy = ClientPolicy(config, node, os.urandom(8).hex())
        controller = Controller(policy, executor, events)
        controller.dispatch(workerfile.observe(config.conf_file))
        link.start()
        link.wait_ready()
        signals.start()
        log.info('node %s; master %s%s', node, config.master_stats,
                 ' (CURVE)' if curve else '')
        threads = [signals, link, watcher, WorkerObserver(config.conf_file, events.put), asker]
        return serve(controller, threads, ready).code


main = main_for(ClientDaemon)

if __name__ == '__main__':
    main()
