"""The exact moment a daemon says READY=1, or a file is renamed into place."""
import os
import select
import socket

from dpd import inotify

from . import BenchError, mono


class NotifySocket:
    """A NOTIFY_SOCKET of our own: the exact moment a daemon says READY=1."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.sock.bind(path)
        self.sock.setblocking(False)

    def env(self):
        return dict(os.environ, NOTIFY_SOCKET=self.path)

    def ready_at(self):
        """The time a READY=1 was received now, else None (non-blocking)."""
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return None
            if b'READY=1' in data.split(b'\n'):
                return mono()

    def wait_ready(self, proc, timeout, what):
        deadline = mono() + timeout
        while mono() < deadline:
            if proc.poll() is not None:
                raise BenchError('%s exited (%s) before it was ready' % (what, proc.returncode))
            ready = self._wait(min(0.05, deadline - mono()))
            if ready is not None:
                return ready
        raise BenchError('%s not ready within %g s' % (what, timeout))

    def _wait(self, timeout):
        select.select([self.sock], [], [], max(0.0, timeout))
        return self.ready_at()

    def close(self):
        self.sock.close()


class FileEvents:
    """inotify on directories: the moment a file is renamed (or written) into place."""

    def __init__(self):
        self.fd = inotify.init()
        self.keys = {}

    def watch(self, directory, key):
        wd = inotify.add_watch(self.fd, directory, inotify.IN_MOVED_TO | inotify.IN_CLOSE_WRITE)
        self.keys[wd] = key

    def wait(self, timeout):
        """[(key, file name, time seen)] of the events within `timeout` seconds."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return []
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        seen = mono()
        return [(self.keys.get(wd), name, seen) for wd, _, name in inotify.parse(data)]

    def close(self):
        os.close(self.fd)
