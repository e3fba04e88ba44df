"""`dpd-ctl restart`, `signal` and `logs --node`: requests to a daemon's control socket.

One request per connection (see `dpd/control.py`), JSON lines back; the last
says `"done": true`. Exit statuses (SPEC 6.3): 0 done, 1 refused or failed
(said why), 2 usage, 3 daemon not running.
"""
import errno
import signal
import socket
import sys

from .. import jsonfile, requests
from ..control import socket_of
from ..printable import printable, printable_log

EX_OK, EX_FAILED, EX_USAGE, EX_NOT_RUNNING = 0, 1, 2, 3
MAX_LINE = 4 << 20             # an answer line (log text arrives in pieces below this)


class Unanswered(Exception):
    """No answer: the daemon is not there, or went away (`code`: the exit status)."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def ask(config_path, request, program):
    """Send `request` to the daemon of `config_path`; yield its answers, the last
    (`done`) included. Unanswered when it cannot be reached or hangs up."""
    path = socket_of(config_path)
    sock = _connect(path, program, config_path)
    with sock:
        try:
            sock.sendall((jsonfile.dumps(request.as_json()) + '\n').encode())
        except OSError:
            pass        # refused before reading it (a user not allowed): its answer says so
        reader = sock.makefile('rb')
        while True:
            try:
                line = reader.readline(MAX_LINE)
            except OSError:
                line = b''
            if not line.endswith(b'\n'):
                raise Unanswered(EX_FAILED, '%s closed the connection before answering'
                                 % program)
            answer = jsonfile.loads(line)
            yield answer
            if answer.get('done'):
                return


def _connect(path, program, config_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(path)
        return sock
    except OSError as err:
        sock.close()
        if err.errno in (errno.ENOENT, errno.ECONNREFUSED):
            raise Unanswered(EX_NOT_RUNNING, '%s is not running for %s (no control socket %s)'
                             % (program, config_path, path)) from None
        raise Unanswered(EX_FAILED, 'cannot use %s: %s' % (path, err.strerror)) from None


def run(config_path, request, program, as_json=False, out=sys.stdout, err=sys.stderr):
    """Ask, print the outcome, return the exit status."""
    answer = None
    shown = printable_log if _is_terminal(out) else str
    try:
        for answer in ask(config_path, request, program):
            if 'text' in answer and request.command == 'logs':     # log lines, as they come
                out.write(shown(answer['text']))
                out.flush()
    except Unanswered as problem:
        err.write('dpd-ctl: %s\n' % problem)
        return problem.code
    except ValueError as problem:
        err.write('dpd-ctl: %s answered something that is not JSON: %s\n' % (program, problem))
        return EX_FAILED
    if as_json:
        out.write(jsonfile.dumps(answer) + '\n')
    else:
        _describe(request, answer, out, err)
    return answer.get('code', EX_FAILED) if not answer.get('ok') else EX_OK


def _is_terminal(out):
    """A log's escape sequences are escaped on a terminal, kept in a pipe or file."""
    try:
        return out.isatty()
    except (AttributeError, ValueError):
        return False


def _describe(request, answer, out, err):
    on = ' on %s' % request.node if request.node else ''
    for result in answer.get('results') or ():
        name = printable(str(result.get('name')))
        if 'error' in result:
            continue
        if request.command == 'restart':
            out.write('%s%s: restarted, ready (pid %s)\n' % (name, on, _pid(result)))
        elif request.command == 'signal':
            out.write('%s%s: sent %s to %s %s\n' % (
                name, on, signal.Signals(request.signum).name,
                'every process of' if request.all else 'pid', _target(request, result)))
    if not answer.get('ok'):
        err.write('dpd-ctl: %s\n' % printable(str(answer.get('error'))))


def _target(request, result):
    """What a node answered is printed escaped: it may be a stranger's text."""
    return '%s (pid %s)' % (printable(str(result.get('name'))), _pid(result)) if request.all \
        else _pid(result)


def _pid(result):
    return printable(str(result.get('pid')))


def parse_request(command, names, node=None, **fields):
    """The request dpd-ctl's arguments make; BadRequest for a bad signal name."""
    doc = dict(fields, command=command, names=list(names), node=node)
    return requests.parse({k: v for k, v in doc.items() if v is not None})
