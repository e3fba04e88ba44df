"""What the master's and the client's policies share: their answers to signals
and to a crashed thread."""
import logging
import signal

from ..policy import Policy, log_action
from . import actions as act


class NetworkPolicy(Policy):
    """The master's and the client's answers to signals and to a crashed thread."""
    crash_note = ''

    def on_signal(self, event, now, out):
        if event.signum in (signal.SIGTERM, signal.SIGINT):
            out.append(act.Notify('STOPPING=1'))
            out.append(act.WriteState(self.snapshot(now)))
            out.append(act.Exit(0))
        elif event.signum == signal.SIGHUP:
            out.append(log_action(logging.INFO, 'HUP: reloading the configuration'))
            out.append(act.ReloadConfig())
        elif event.signum == signal.SIGUSR1:
            out.append(act.ReopenLogs())

    def on_thread_crashed(self, event, now, out):
        out.append(log_action(logging.CRITICAL, 'thread %s crashed: %s; exiting (%s)'
                              % (event.thread, event.error, self.crash_note)))
        out.append(act.Exit(1))
