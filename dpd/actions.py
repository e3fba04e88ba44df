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


class Notify(Record):
    """A line for the service manager (sd_notify), e.g. "READY=1"."""
    text: str


# ------------------------------------------------------------- processes

class Spawn(Record):
    name: str
    spec: object            # ProcessSpec


class FindDaemon(Record):
    """Read `pid_file`; report the process it names if it started after `not_before`."""
    name: str
    pid_file: str
    not_before: int         # start ticks of the launcher


class SendSignal(Record):
    name: str
    pid: int
    signum: int
    group: bool = True      # to the whole process group, led by `pid`


class CheckGroup(Record):
    name: str
    pgid: int


class RemovePidFile(Record):
    path: str
    pid: int                # only if the file still names this pid


class CloseOutput(Record):
    """The process is gone for good: drain its output channel and close it."""
    name: str


# ------------------------------------------------------------- network

class Send(Record):
    socket: str
    frames: tuple


class RebuildLink(Record):
    """Close and re-create the sockets (long silence: maybe a wedged connection)."""


class WriteWorkerFile(Record):
    """Replace the worker file's `procs` (and `_diprocd` record), atomically."""
    entries: list
    record: dict            # {gen, sha256, epoch}
