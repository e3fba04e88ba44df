"""How dpd-ctl prints an answer (dpd/ctl/commands.py): what a node answered
through the master may be a stranger's text, printed escaped."""
import io

from dpd.ctl import commands

HOSTILE = '\x1b]0;owned\x07\x1b[2J'


def described(command, answer, **fields):
    out, err = io.StringIO(), io.StringIO()
    request = commands.parse_request(command, ['one'], node='web1', **fields)
    commands._describe(request, answer, out, err)
    return out.getvalue() + err.getvalue()


def test_names_and_pids_a_node_answered_are_escaped():
    answer = {'ok': True, 'results': [{'name': 'one' + HOSTILE, 'pid': '7' + HOSTILE}]}
    for command, fields in (('signal', {'signal': 'HUP', 'all': True}),
                            ('signal', {'signal': 'HUP'}), ('restart', {})):
        text = described(command, answer, **fields)
        assert '\x1b' not in text and '\x07' not in text, text
        assert 'one' in text and '7' in text


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_log_text_a_node_answered_is_escaped_on_a_terminal_only(monkeypatch):
    answers = [{'ok': True, 'text': 'line' + HOSTILE + '\n\tmore\n', 'done': False},
               {'ok': True, 'code': 0, 'done': True}]
    monkeypatch.setattr(commands, 'ask', lambda *_: iter(answers))
    request = commands.parse_request('logs', ['one'], node='web1')
    terminal, pipe = Terminal(), io.StringIO()
    assert commands.run('/w.json', request, 'dpd-clientd', out=terminal) == 0
    assert commands.run('/w.json', request, 'dpd-clientd', out=pipe) == 0
    assert '\x1b' not in terminal.getvalue() and '\n\tmore\n' in terminal.getvalue()
    assert pipe.getvalue() == answers[0]['text'], 'a pipe gets the bytes as they are'
    restart = commands.parse_request('restart', ['one'], node='web1')
    out = Terminal()
    commands.run('/w.json', restart, 'dpd-clientd', out=out)
    assert 'line' not in out.getvalue(), 'text only in a logs answer'
