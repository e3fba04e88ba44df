"""Facts: what threads and the executor observed, posted to the controller.

Past tense, frozen, small. Nothing here decides anything.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Tick:
    """The controller's wait for the nearest deadline ran out."""


@dataclass(frozen=True)
class SignalReceived:
    signum: int


@dataclass(frozen=True)
class ThreadCrashed:
    thread: str
    error: str


@dataclass(frozen=True)
class ConfigLoaded:
    config: object          # a WorkerConfig, ClientConfig or MasterConfig
    wall: float = None      # when it was read, wall clock (the master's versions use it)


@dataclass(frozen=True)
class ConfigRejected:
    messages: tuple


# ------------------------------------------------------------- processes

@dataclass(frozen=True)
class ProcessStarted:
    name: str
    pid: int
    started: tuple          # procfs.identity: (start ticks, session); None if gone


@dataclass(frozen=True)
class SpawnFailed:
    name: str
    error: str


@dataclass(frozen=True)
class ProcessExited:
    name: str
    pid: int
    code: int = None        # exit status, when the process exited
    signal: int = None      # the signal that ended it; both None: unknown (not our child)


@dataclass(frozen=True)
class DaemonFound:
    name: str
    pid: int
    started: tuple


@dataclass(frozen=True)
class DaemonNotFound:
    name: str
    reason: str


@dataclass(frozen=True)
class GroupChecked:
    name: str
    pgid: int
    alive: bool


@dataclass(frozen=True)
class PreviousRun:
    """What the last worker on this config left: live processes, finished ones."""
    adopted: tuple          # of dicts: the state-file records, verified alive
    finished: tuple         # of dicts: `exited` records of this boot


# ------------------------------------------------------------- network

@dataclass(frozen=True)
class LinkMessage:
    socket: str             # the socket's name in the daemon's plan
    frames: tuple           # bytes; on a ROUTER the first is the peer's routing id
    user_id: str = None     # the ZAP User-Id (the node name) when keys are in use


@dataclass(frozen=True)
class LinkEvent:
    socket: str
    kind: str               # connected, disconnected, handshake-ok, handshake-*, denied
    detail: str = ''


# ------------------------------------------------------------- the client's worker file

@dataclass(frozen=True)
class WorkerObserved:
    """What the local worker file holds and what its worker says about it."""
    applied: dict = None    # {gen, sha256} the file really holds (gen 0: edited by hand)
    worker: dict = None     # {running, pid, config_ok, errors}
    processes: tuple = ()   # per-process states from the worker's state file
    read_at: float = None   # monotonic time the file was read; None: now


@dataclass(frozen=True)
class WorkerFileWritten:
    gen: int
    sha256: str


@dataclass(frozen=True)
class WorkerFileRefused:
    reason: str
