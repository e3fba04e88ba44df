"""What every daemon's executor does the same way; each daemon adds its own actions.

The executor is the only place where actions touch the world. `perform`
returns the facts an action produced, which the controller hands straight
back to the policy.
"""
import logging
import time

from . import actions as act
from . import state
from .daemon import sd_notify
from .events import StateWritten

log = logging.getLogger('dpd')


class DaemonExecutor:
    program = None

    def __init__(self, reload_config, daemon_log, state_file):
        self.reload_config = reload_config  # asks the config watcher to read the file now
        self.daemon_log, self.state_file = daemon_log, state_file
        self.control = None                 # the ControlServer, once it listens
        self._state_encoder = state.StateEncoder()
        self._table = {act.Log: self._log, act.Notify: self._notify,
                       act.ReopenLogs: self._reopen_logs, act.WriteState: self._write_state,
                       act.ReloadConfig: self._reload, act.Reply: self._reply}

    def perform(self, action):
        return self._table[type(action)](action)

    def handles(self, table):
        self._table.update(table)

    def state_body(self, snapshot):
        """The state file's content for a policy snapshot (times already usable)."""
        return snapshot

    def _reload(self, action):
        """HUP: the watcher reads the file and posts what it finds, as for an edit."""
        self.reload_config()

    def _reopen_logs(self, action):
        self.daemon_log.reopen()
        log.info('USR1: log files reopened')

    def _write_state(self, action):
        """The state file and what is published with it; the CPU time that took is
        a fact for the policy, whose next write may wait in proportion (CPU time,
        not wall time: a disk that makes the write wait costs no CPU, and holding
        the next write back would only leave the file further behind)."""
        started = time.thread_time()
        body = self.state_body(action.snapshot)
        self.write_state(body)
        self.publish_metrics(body, action)
        return (StateWritten(time.thread_time() - started),)

    def write_state(self, body):
        """True once the state file holds `body`."""
        try:
            state.write(self.state_file, self.program, body, self._state_encoder)
            return True
        except OSError as err:
            log.error('cannot write the state file %s: %s', self.state_file, err)
            return False

    def _reply(self, action):
        if self.control is not None:
            self.control.answer(action.number, action.message, action.done)

    def publish_metrics(self, body, action):
        """Metrics (SPEC 6.4) from the state file's own body: where they go is each
        daemon's (the worker's metrics_file, the master's HTTP thread)."""

    @staticmethod
    def _notify(action):
        sd_notify(action.text)

    @staticmethod
    def _log(action):
        log.log(action.level, action.message)
