"""Children's output: a named FIFO per process, moved into its log by one thread.

Why a FIFO and not a pipe: the child holds its end open read-write, so its
writes never fail with EPIPE or SIGPIPE while no worker reads; the next
worker re-opens the FIFO by path and reads what waited (SPEC 3.5). Why
splice and not read+write: data leaves the FIFO only as it lands in the log
file, so a worker killed at any instant loses nothing. splice refuses
O_APPEND files, so each chunk is placed at the file's current end (fstat,
taken once data is waiting), which also makes logrotate's copytruncate work.

Why one thread for all FIFOs (epoll) and not one per process: a thread costs
16 KiB of memory and a start-up; a thousand children would cost 16 MiB and a
slower cold start. The price: a log file on a filesystem that hangs delays
the other logs too (a local disk's page cache never does).

The worker keeps a write end of its own on each FIFO (the keeper) so the
pump never sees EOF between two runs of a process; closing the keeper once
the process is gone for good lets the pump drain that FIFO to EOF.
Only the pump thread closes a FIFO's or a log's fd: other threads send it
commands, so no fd is ever closed under a running splice.
"""
import errno
import fcntl
import logging
import os
import pwd
import queue
import select
import stat
import threading
import time

from ..observer import Observer
from ..safefile import open_log, same_file

CHUNK = 1 << 20
ROUND_BYTES = 4 << 20       # per FIFO per wake-up: a busy writer cannot starve the others
PIPE_SIZE = 1 << 20
ROTATION_CHECK_SECONDS = 1.0

log = logging.getLogger('dpd.output')


def log_owners(user):
    """Who a process's log file may belong to: the worker and the process's user."""
    owners = {os.geteuid()}
    try:
        owners.add(pwd.getpwnam(user).pw_uid)
    except KeyError:
        pass
    return owners


class Channel:
    """One FIFO and the log file it drains into; owned by the pump thread."""

    def __init__(self, name, reader, log_path, log_fd, owners, confine):
        self.name, self.reader = name, reader
        self.log_path, self.log_fd, self.owners = log_path, log_fd, owners
        self.confine = confine              # reopened under the node policy too
        self.generation = 0
        self.next_check = time.monotonic() + ROTATION_CHECK_SECONDS
        self.dropped = 0                    # bytes lost since the last good write


class Pump(Observer):
    def __init__(self, post):
        super().__init__('outputs', post)
        self.generation = 0                 # bumped on USR1
        self._channels = {}                 # reader fd -> Channel
        self._commands = queue.SimpleQueue()
        self._epoll = select.epoll()
        self._epoll.register(self.wake_r, select.EPOLLIN)
        self._idle = threading.Condition()
        self._handlers = {'retarget': self._retarget}

    # ------------------------------------------------------------ other threads

    def add(self, channel):
        """Start draining `channel` (epoll_ctl is thread-safe: no wake-up needed)."""
        channel.generation = self.generation
        with self._idle:
            self._channels[channel.reader] = channel
        self._epoll.register(channel.reader, select.EPOLLIN)

    def command(self, *command):
        self._commands.put(command)
        self.wake()

    def wait_drained(self, timeout):
        """Wait until every channel has reached EOF (after their keepers closed)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._channels and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------ this thread

    def observe(self):
        # a crash is posted by Observer.run: a dead pump would freeze every child
        while not self.stopping:
            for fd, _ in self._epoll.poll():
                if fd == self.wake_r:
                    self._run_commands()
                elif fd in self._channels:
                    self._drain(self._channels[fd])

    def _run_commands(self):
        self.read_wakeups()
        while True:
            try:
                command, *args = self._commands.get_nowait()
            except queue.Empty:
                return
            self._handlers[command](*args)

    def _retarget(self, reader, log_path, log_fd, confine):
        channel = self._channels.get(reader)
        if channel is None:
            os.close(log_fd)
            return
        _close(channel.log_fd)
        channel.log_path, channel.log_fd, channel.confine = log_path, log_fd, confine

    def _drain(self, channel):
        moved = 0
        while moved < ROUND_BYTES:
            count = self._move(channel)
            if count is None:       # the FIFO is empty for now
                return
            if count == 0:          # EOF: every writer is gone, the keeper too
                self._finish(channel)
                return
            moved += count

    def _move(self, channel):
        self._follow_rotation(channel)
        if channel.log_fd is None:
            return self._discard(channel)
        try:
            count = os.splice(channel.reader, channel.log_fd, CHUNK,
                              offset_dst=os.fstat(channel.log_fd).st_size,
                              flags=os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            return None
        except InterruptedError:
            return self._move(channel)
        except OSError as err:
            # a full disk, and anything else the log file does (its owner may be the
            # process's user: `truncate -s 9223372036854775807` makes EINVAL): this
            # channel's failure, said once; never the pump's death, which would kill
            # the worker, again at each start while the output waits in the FIFO
            _failing(channel, 'cannot write %s: %s' % (channel.log_path,
                                                       err.strerror or err))
            return self._discard(channel)
        if count and channel.dropped:
            log.warning('%s: writing to %s again; %d bytes were dropped',
                        channel.name, channel.log_path, channel.dropped)
            channel.dropped = 0
        return count

    def _discard(self, channel):
        try:
            data = os.read(channel.reader, CHUNK)
        except BlockingIOError:
            return None
        channel.dropped += len(data)
        return len(data)

    def _follow_rotation(self, channel):
        """Reopen on USR1, or when the file was moved or deleted (checked each second)."""
        now = time.monotonic()
        asked = channel.generation != self.generation
        if not asked and now < channel.next_check:
            return
        channel.generation, channel.next_check = self.generation, now + ROTATION_CHECK_SECONDS
        if not asked and channel.log_fd is not None and same_file(channel.log_fd,
                                                                  channel.log_path):
            return
        _close(channel.log_fd)
        channel.log_fd = None
        try:
            channel.log_fd = open_log(channel.log_path, channel.owners,
                                      confine=channel.confine)
        except OSError as err:
            _failing(channel, 'cannot open %s: %s' % (channel.log_path, err))

    def _finish(self, channel):
        self._epoll.unregister(channel.reader)
        os.close(channel.reader)
        _close(channel.log_fd)
        with self._idle:
            del self._channels[channel.reader]
            self._idle.notify_all()


def _failing(channel, problem):
    if not channel.dropped:
        log.error('%s: %s; dropping output until it works again', channel.name, problem)


def _close(fd):
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass  # EIO of a log on a network filesystem: the fd is released all the same


class OutputChannel:
    """The executor's handle on one process name's FIFO: its path and keeper."""

    def __init__(self, fifo_path, log_path, confine, reader, keeper):
        self.fifo_path, self.log_path, self.confine = fifo_path, log_path, confine
        self.reader, self.keeper = reader, keeper

    def child_fd(self):
        """A read-write fd on the FIFO for the child's stdout and stderr, by the
        pipe the pump reads (the FIFO's name may have been deleted meanwhile)."""
        return os.open('/proc/self/fd/%d' % self.reader, os.O_RDWR | os.O_CLOEXEC)


class Outputs:
    """Every process's output channel, by name; used by the executor only."""

    def __init__(self, fifo_dir, post):
        self.fifo_dir = fifo_dir
        _ensure_private_dir(fifo_dir)
        self.pump = Pump(post)
        self.pump.start()
        self.channels = {}

    def attach(self, name, log_path, owners, confine=None, via_pid=None):
        """The channel for `name` writing to `log_path`, created if needed.

        A new or changed log file is opened here, so a bad path fails the start
        with a clear error; an unchanged one stays as it is. `via_pid`: an
        adopted process whose FIFO may have been replaced on disk; its own fd 1
        leads to the right pipe.
        """
        channel = self.channels.get(name)
        if channel is not None and (channel.log_path, channel.confine) == (log_path, confine):
            return channel
        log_fd = open_log(log_path, owners, confine=confine)
        if channel is not None:
            self.pump.command('retarget', channel.reader, log_path, log_fd, confine)
            channel.log_path, channel.confine = log_path, confine
            return channel
        try:
            channel = self._open(name, log_path, log_fd, owners, confine, via_pid)
        except BaseException:
            os.close(log_fd)
            raise
        self.channels[name] = channel
        return channel

    def _open(self, name, log_path, log_fd, owners, confine, via_pid):
        _ensure_private_dir(self.fifo_dir)      # deleted by hand? made again, ours
        fifo = os.path.join(self.fifo_dir, name + '.fifo')
        _ensure_fifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
        if via_pid is not None and _other_pipe(reader, via_pid):
            os.close(reader)
            reader = os.open('/proc/%d/fd/1' % via_pid, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        keeper = os.open('/proc/self/fd/%d' % reader, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(reader, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # over the per-user pipe budget: a smaller buffer still works
        self.pump.add(Channel(name, reader, log_path, log_fd, owners, confine))
        return OutputChannel(fifo, log_path, confine, reader, keeper)

    def close(self, name):
        """The process is gone for good: the pump drains its FIFO to EOF and ends it."""
        channel = self.channels.pop(name, None)
        if channel is not None:
            os.close(channel.keeper)

    def reopen_all(self):
        """USR1: every log is reopened before its next write."""
        self.pump.generation += 1

    def drain(self, timeout):
        """Close every channel and wait (up to `timeout`) for the pump to finish them."""
        for name in list(self.channels):
            self.close(name)
        self.pump.wait_drained(timeout)
        self.pump.stop()


def _ensure_private_dir(path):
    """The FIFO directory: made if missing, and refused unless it is the worker's
    own real directory (mode 0700)."""
    os.makedirs(path, 0o700, exist_ok=True)
    info = os.lstat(path)
    if info.st_uid != os.geteuid() or not stat.S_ISDIR(info.st_mode):
        raise OSError(errno.EPERM, '%s: refused: not a directory owned by the worker' % path)
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)


def _ensure_fifo(path):
    try:
        if stat.S_ISFIFO(os.lstat(path).st_mode):
            return
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o600)


def _other_pipe(fd, pid):
    """True if the adopted process `pid` writes to a pipe other than the FIFO on
    disk (the FIFO was deleted and made again): its own fd 1 leads to the pipe
    that holds its output. Only a pipe: never another file of that process."""
    try:
        theirs = os.stat('/proc/%d/fd/1' % pid)
    except OSError:
        return False
    return stat.S_ISFIFO(theirs.st_mode) and os.fstat(fd).st_ino != theirs.st_ino
