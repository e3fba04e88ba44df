"""What the master's and the client's executors share: messages go out through
the zmq thread."""
from ..executor import DaemonExecutor
from . import actions as act


class NetworkExecutor(DaemonExecutor):
    """The master's and the client's: messages go out through the zmq thread, handed
    over once per batch of facts (`end_batch`, called by the controller): a thousand
    answers wake that thread once, not a thousand times."""

    def __init__(self, reload_config, daemon_log, state_file, link):
        super().__init__(reload_config, daemon_log, state_file)
        self.link = link
        self._outgoing = []
        self.handles({act.Send: self._send})

    def _send(self, action):
        fallback = action.fallback
        self._outgoing.append((action.socket, action.frames, None if fallback is None
                               else (fallback.socket, fallback.frames)))

    def end_batch(self):
        if self._outgoing:
            outgoing, self._outgoing = self._outgoing, []
            self.link.send_all(outgoing)
