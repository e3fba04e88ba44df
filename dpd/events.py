"""Facts: what threads and the executor observed, posted to the controller.

Past tense, frozen, small. Nothing here decides anything.
"""
from .record import Record


class Tick(Record):
    """The controller's wait for the nearest deadline ran out."""


class SignalReceived(Record):
    signum: int


class ThreadCrashed(Record):
    thread: str
    error: str


class ConfigLoaded(Record):
    config: object          # a WorkerConfig, ClientConfig or MasterConfig
    wall: float = None      # when it was read, wall clock (the master's versions use it)


class ConfigRejected(Record):
    messages: tuple


# ------------------------------------------------------------- processes

class ProcessStarted(Record):
    name: str
    pid: int
    started: tuple          # procfs.identity: (start ticks, session); None if gone


class SpawnFailed(Record):
    name: str
    error: str


class ProcessExited(Record):
    name: str
    pid: int
    code: int = None        # exit status, when the process exited
    signal: int = None      # the signal that ended it; both None: unknown (not our child)


class DaemonFound(Record):
    name: str
    pid: int
    started: tuple


class DaemonNotFound(Record):
    name: str
    reason: str


class GroupChecked(Record):
    name: str
    pgid: int
    alive: bool


class PreviousRun(Record):
    """What the last worker on this config left: live processes, finished ones."""
    adopted: tuple          # of dicts: the state-file records, verified alive
    finished: tuple         # of dicts: `exited` records of this boot


# ------------------------------------------------------------- network

class LinkMessage(Record):
    socket: str             # the socket's name in the daemon's plan
    frames: tuple           # bytes; on a ROUTER the first is the peer's routing id
    user_id: str = None     # the ZAP User-Id (the node name) when keys are in use


class LinkEvent(Record):
    socket: str
    kind: str               # connected, disconnected, handshake-ok, handshake-*, denied
    detail: str = ''


# ------------------------------------------------------------- the client's worker file

class WorkerObserved(Record):
    """What the local worker file holds and what its worker says about it."""
    applied: dict = None    # {gen, sha256} the file really holds (gen 0: edited by hand)
    worker: dict = None     # {running, pid, config_ok, errors}
    processes: tuple = ()   # per-process states from the worker's state file
    read_at: float = None   # monotonic time the file was read; None: now


class WorkerFileWritten(Record):
    gen: int
    sha256: str


class WorkerFileRefused(Record):
    reason: str
