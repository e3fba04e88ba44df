"""Commands: what a policy asks the executor to do. Imperative, frozen, small."""
from .record import Record


class Log(Record):
    level: int
    message: str


class Exit(Record):
    code: int
    leave_running: bool = False   # QUIT: processes outlive the worker


class ReloadConfig(Record):
    """Read the config file now (HUP)."""


class ReopenLogs(Record):
    """USR1: the daemon's own log and every child's."""


class WriteState(Record):
    snapshot: dict
    metrics_file: str = None      # the worker's metrics_file, rewritten from the same snapshot
    confine: tuple = None         # where root may write it (the node policy, SPEC 5.1)


class Notify(Record):
    """A line for the service manager (sd_notify), e.g. "READY=1"."""
    text: str


class Reply(Record):
    """An answer to the request on control connection `number` (`done`: the last)."""
    number: int
    message: dict
    done: bool = True
