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
