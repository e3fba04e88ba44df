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
