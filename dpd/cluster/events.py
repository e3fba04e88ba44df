"""The master's and the client's facts; the shared ones are re-exported."""
from ..events import (CommandGone, CommandReceived, ConfigLoaded, ConfigRejected,  # noqa: F401
                      SignalReceived, StateWritten, ThreadCrashed, Tick)
from ..record import Record


class LinkMessage(Record):
    socket: str             # the socket's name in the daemon's plan
    frames: tuple           # bytes; on a ROUTER the first is the peer's routing id
    user_id: str = None     # the ZAP User-Id (the node name) when keys are in use


class LinkEvent(Record):
    socket: str
    kind: str               # connected, disconnected, handshake-ok, handshake-*, denied
    detail: str = ''


# the client's view of its worker file

class WorkerObserved(Record):
    """What the local worker file holds and what its worker says about it."""
    applied: dict = None    # {gen, sha256} the file really holds (gen 0: edited by hand)
    worker: dict = None     # {running, pid, config_ok, errors}
    processes: tuple = ()   # per-process states from the worker's state file
    read_at: float = None   # monotonic time the file was read; None: now


class WorkerFileWritten(Record):
    record: dict            # {gen, sha256, epoch}: what the file's _diprocd now says


class WorkerAnswered(Record):
    """The local worker's answer to a relayed command (`done`: its last)."""
    ref: str
    answer: dict
    done: bool


class WorkerFileRefused(Record):
    reasons: tuple          # the node policy's problems, or why the write failed
