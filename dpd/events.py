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
