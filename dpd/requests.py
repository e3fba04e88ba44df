"""Operators' requests (SPEC 6.3): what `dpd-ctl` asks a daemon, and its answers.

A request is one JSON object, checked the same way at every hop (dpd-ctl,
the master, the client, the worker): whatever sent it, a field is what this
module says or the request is a usage error. Answers are JSON objects too:
`{"ok": true, ...}`, or `{"ok": false, "code": 1|2, "error": "..."}`, where
the code is dpd-ctl's exit status (1 refused or failed, 2 usage).

    {"v": 1, "command": "restart", "names": ["web"]}
    {"v": 1, "command": "signal", "names": ["web"], "signal": "HUP", "all": false}
    {"v": 1, "command": "logs", "names": ["web"], "lines": 10, "follow": true}
    ... and any of them with "node": "web7" (to the master only)
"""
import signal

from .actions import Reply
from .record import Record

VERSION = 1
COMMANDS = ('restart', 'signal', 'logs')
MAX_NAMES = 1000
MAX_NAME_LENGTH = 256          # process and node names
MAX_LINES = 10000                 # SPEC 6.3: at most 10,000 lines back
DEFAULT_LINES = 10
REFUSED, USAGE = 1, 2             # answers' codes: dpd-ctl's exit statuses


class BadRequest(ValueError):
    """A request no daemon performs: dpd-ctl's usage error."""


class Request(Record):
    command: str
    names: tuple
    signum: int = None            # signal
    all: bool = False             # signal: the whole group or cgroup
    lines: int = DEFAULT_LINES    # logs
    follow: bool = False          # logs
    node: str = None              # for the master: relay to this node

    def as_json(self, node=True):
        """The request as sent on (without `node` past the master)."""
        doc = {'v': VERSION, 'command': self.command, 'names': list(self.names)}
        if self.command == 'signal':
            doc.update(signal=signal.Signals(self.signum).name, all=self.all)
        elif self.command == 'logs':
            doc.update(lines=self.lines, follow=self.follow)
        if node and self.node is not None:
            doc['node'] = self.node
        return doc


def received(event, out):
    """The Request of a CommandReceived fact; None, with a usage-error Reply added to
    the policy's actions `out`, when it is not one."""
    try:
        return parse(event.request)
    except BadRequest as err:
        out.append(Reply(event.number, bad_usage(str(err))))
        return None


def parse(doc):
    """The Request a decoded JSON document asks for; BadRequest says what is wrong."""
    if not isinstance(doc, dict):
        raise BadRequest('a request is a JSON object')
    version = doc.get('v', VERSION)
    if type(version) is not int or version != VERSION:      # true and 1.0 equal 1
        raise BadRequest('request version %r: this daemon speaks version %d'
                         % (version, VERSION))
    command = doc.get('command')
    if command not in COMMANDS:
        raise BadRequest('unknown command %r (one of: %s)' % (command, ', '.join(COMMANDS)))
    names = _names(doc.get('names'), single=command == 'logs')
    node = doc.get('node')
    if node is not None and not (isinstance(node, str) and 0 < len(node) <= MAX_NAME_LENGTH):
        raise BadRequest('"node": not a node name')
    if command == 'signal':
        return Request(command, names, signum=signal_number(doc.get('signal')),
                       all=_flag(doc, 'all'), node=node)
    if command == 'logs':
        lines = doc.get('lines', DEFAULT_LINES)
        if type(lines) is not int or lines < 0:
            raise BadRequest('"lines": a number of lines, 0 or more')
        return Request(command, names, lines=min(lines, MAX_LINES), follow=_flag(doc, 'follow'),
                       node=node)
    return Request(command, names, node=node)


def _names(names, single):
    if not isinstance(names, list) or not names or len(names) > MAX_NAMES:
        raise BadRequest('"names": a list of 1 to %d process names' % MAX_NAMES)
    if single and len(names) != 1:
        raise BadRequest('one process name at a time')
    for name in names:
        if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
            raise BadRequest('"names": %r is not a process name' % (name,))
    return tuple(dict.fromkeys(names))          # each once, in the order given


def _flag(doc, key):
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest('"%s": true or false' % key)
    return value


def signal_number(text):
    """The signal `text` names: HUP, SIGHUP, hup, or its number; BadRequest if none."""
    if isinstance(text, int) and not isinstance(text, bool):
        if not 0 < text < 256:      # (not even in the message: 5000 digits has no repr)
            raise BadRequest('unknown signal number')
        number = text
    elif isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 3:
        number = int(text)          # (isdigit alone takes "²", and 5000 digits int() refuses)
    elif isinstance(text, str):
        name = text.upper()
        name = name if name.startswith('SIG') else 'SIG' + name
        number = getattr(signal.Signals, name, None) if not name.startswith('SIG_') else None
        if number is None:
            raise BadRequest('unknown signal %r' % text)
        return int(number)
    else:
        raise BadRequest('"signal": a signal name such as HUP')
    try:
        return int(signal.Signals(number))
    except ValueError:
        raise BadRequest('unknown signal %r' % text) from None


# ------------------------------------------------------------------ answers

def refused(error):
    return {'ok': False, 'code': REFUSED, 'error': error}


def bad_usage(error):
    return {'ok': False, 'code': USAGE, 'error': error}


def done(**fields):
    return dict(ok=True, code=0, **fields)
