"""The client's thread that asks the local worker's control socket, for the
master's operators (SPEC 6.3): one connection per relayed command, its JSON
lines posted back as WorkerAnswered facts. It decides nothing.
"""
import queue
import selectors
import socket

from .. import jsonfile, requests
from ..observer import Observer
from .events import WorkerAnswered

MAX_LINE = 4 << 20          # the worker's answers are far smaller (log text in 64 KiB pieces)


class _Question:
    def __init__(self, ref, sock):
        self.ref, self.sock, self.inbox = ref, sock, b''


class WorkerAsker(Observer):
    def __init__(self, socket_path, post):
        super().__init__('worker-asker', post)
        self.socket_path = socket_path
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.wake_r, selectors.EVENT_READ)
        self._questions = {}                    # ref -> _Question
        self._orders = queue.SimpleQueue()

    # ------------------------------------------------------------ other threads

    def ask(self, ref, request):
        self._orders.put(('ask', ref, request))
        self.wake()

    def cancel(self, ref):
        self._orders.put(('cancel', ref, None))
        self.wake()

    # ------------------------------------------------------------ this thread

    def observe(self):
        while not self.stopping:
            for key, _ in self._selector.select():
                if key.fileobj == self.wake_r:
                    self.read_wakeups()
                    self._take_orders()
                else:
                    self._receive(key.data)
        for question in list(self._questions.values()):
            self._close(question)

    def _take_orders(self):
        while True:
            try:
                kind, ref, request = self._orders.get_nowait()
            except queue.Empty:
                return
            if kind == 'ask':
                self._ask(ref, request)
            elif ref in self._questions:
                self._close(self._questions[ref])

    def _ask(self, ref, request):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            sock.settimeout(2.0)                # a local socket: connecting is immediate
            sock.connect(self.socket_path)
            sock.sendall((jsonfile.dumps(request) + '\n').encode())
            sock.setblocking(False)
        except OSError as err:
            sock.close()
            self.post(WorkerAnswered(ref, requests.refused(
                'the worker does not answer on this node (%s: %s)'
                % (self.socket_path, err.strerror or err)), True))
            return
        question = _Question(ref, sock)
        self._questions[ref] = question
        self._selector.register(sock, selectors.EVENT_READ, question)

    def _receive(self, question):
        try:
            data = question.sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            data = b''
        question.inbox += data
        while b'\n' in question.inbox:
            line, question.inbox = question.inbox.split(b'\n', 1)
            if self._posted(question, line):
                return
        if not data or len(question.inbox) > MAX_LINE:
            self._close(question)
            self.post(WorkerAnswered(question.ref, requests.refused(
                'the worker closed the connection before answering'), True))

    def _posted(self, question, line):
        """Post one answer line; True once the last one went (the question is closed)."""
        try:
            answer = jsonfile.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            self._close(question)
            self.post(WorkerAnswered(question.ref, requests.refused(
                'the worker answered something that is not a JSON object'), True))
            return True
        done = answer.pop('done', True) is not False
        if done:
            self._close(question)
        self.post(WorkerAnswered(question.ref, answer, done))
        return done

    def _close(self, question):
        del self._questions[question.ref]
        self._selector.unregister(question.sock)
        question.sock.close()
