"""What the master's and the client's executors share: messages go out through
the zmq thread."""
from ..executor import DaemonExecutor
from . import actions as act


class NetworkExecutor(DaemonExecutor):
    """The master's and the client's: messages go out through the zmq thread."""

    def __init__(self, reload_config, daemon_log, state_file, link):
        super().__init__(reload_config, daemon_log, state_file)
        self.link = link
        self.handles({act.Send: self._send})

    def _send(self, action):
        self.link.send(action.socket, action.frames)
