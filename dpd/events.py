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


class StateWritten(Record):
    """The executor wrote the state file (and what is published with it), which
    took `seconds` of its thread's CPU time."""
    seconds: float


class ConfigRejected(Record):
    messages: tuple


class CommandReceived(Record):
    """An operator's request on the control socket (SPEC 6.3), as decoded JSON;
    `number` names the connection the answer goes to."""
    number: int
    request: dict
    uid: int                # who asked, as the kernel says (SO_PEERCRED)


class CommandGone(Record):
    """The operator hung up before the last answer (dpd-ctl ended: stop streaming),
    or read so slowly that the control thread ended the connection (control.py)."""
    number: int
