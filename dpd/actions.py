"""Commands: what a policy asks the executor to do. Imperative, frozen, small."""
from dataclasses import dataclass


@dataclass(frozen=True)
class Log:
    level: int
    message: str


@dataclass(frozen=True)
class Exit:
    code: int
    leave_running: bool = False   # QUIT: processes outlive the worker


@dataclass(frozen=True)
class ReloadConfig:
    """Read the config file now (HUP)."""


@dataclass(frozen=True)
class ReopenLogs:
    """USR1: the daemon's own log and every child's."""


@dataclass(frozen=True)
class WriteState:
    snapshot: dict


@dataclass(frozen=True)
class Notify:
    """A line for the service manager (sd_notify), e.g. "READY=1"."""
    text: str


# ------------------------------------------------------------- processes

@dataclass(frozen=True)
class Spawn:
    name: str
    spec: object            # ProcessSpec


@dataclass(frozen=True)
class FindDaemon:
    """Read `pid_file`; report the process it names if it started after `not_before`."""
    name: str
    pid_file: str
    not_before: int         # start ticks of the launcher


@dataclass(frozen=True)
class SendSignal:
    name: str
    pid: int
    signum: int
    group: bool = True      # to the whole process group, led by `pid`


@dataclass(frozen=True)
class CheckGroup:
    name: str
    pgid: int


@dataclass(frozen=True)
class RemovePidFile:
    path: str
    pid: int                # only if the file still names this pid


@dataclass(frozen=True)
class CloseOutput:
    """The process is gone for good: drain its output channel and close it."""
    name: str


# ------------------------------------------------------------- network

@dataclass(frozen=True)
class Send:
    socket: str
    frames: tuple


@dataclass(frozen=True)
class RebuildLink:
    """Close and re-create the sockets (long silence: maybe a wedged connection)."""


@dataclass(frozen=True)
class WriteWorkerFile:
    """Replace the worker file's `procs` (and `_diprocd` record), atomically."""
    entries: list
    record: dict            # {gen, sha256, epoch}
