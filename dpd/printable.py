"""Text from files and the network, made safe to print (SPEC 5.2).

A newline in a process name or a REPORT's error forges log lines; an escape
sequence reaches the operator's terminal. Both are shown escaped instead:
`\\n` becomes the four characters `\\x0a`.
"""
import re

_CONTROL = re.compile('[\x00-\x1f\x7f-\x9f\u2028\u2029]')


def _escape(match):
    code = ord(match.group())
    return '\\x%02x' % code if code < 0x100 else '\\u%04x' % code


def printable(text):
    """`text` with every control character (C0, DEL, C1, line separators) escaped."""
    return _CONTROL.sub(_escape, text)


_LOG_CONTROL = re.compile('[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]')


def printable_log(text):
    """A log's `text` as a terminal may show it: every control character escaped as
    `printable` does, except newline and tab (the log's lines and columns). A
    process's output is its own, and an escape sequence in it would reach the
    operator's terminal: a new title, a cleared screen, keys typed back."""
    return _LOG_CONTROL.sub(_escape, text)
