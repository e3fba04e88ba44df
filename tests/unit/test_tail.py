"""A log file's last lines and a Follower across rotation (dpd/tail.py), on real
files in a temporary directory; every wait is `follower.wait` under a deadline."""
import errno
import io
import json
import os
import shutil
import threading
import time

import pytest

from dpd import tail
from dpd.ctl import logs as ctl_logs_module
from dpd.tail import Follower, last_lines


@pytest.fixture
def log(tmp_path):
    return str(tmp_path / 'app.log')


def write(path, text, mode='ab'):
    with open(path, mode) as f:
        f.write(text.encode() if isinstance(text, str) else text)


def numbered(first, last):
    return ''.join('line %05d\n' % i for i in range(first, last)).encode()


def collect(follower, expected, timeout=5.0, limit=None):
    """Read until `expected` (bytes) came, waiting on the follower's fd: no sleep."""
    data, deadline = b'', time.monotonic() + timeout
    while True:
        data += follower.read() if limit is None else follower.read(limit)
        if len(data) >= len(expected) or time.monotonic() > deadline:
            break
        follower.wait(max(0.0, deadline - time.monotonic()))
    assert data == expected
    return data


def open_fds():
    return len(os.listdir('/proc/self/fd'))


@pytest.fixture
def follow(log):
    made = []

    def start(path=log, **keys):
        follower = Follower(path, **keys)
        made.append(follower)
        return follower
    yield start
    for follower in made:
        follower.close()


# ===================================================================== last_lines

def test_last_lines_counts(log):
    write(log, numbered(0, 100))
    assert last_lines(log, 3) == numbered(97, 100)
    assert last_lines(log, 1) == numbered(99, 100)
    assert last_lines(log, 0) == b''
    assert last_lines(log, 100) == numbered(0, 100)


def test_more_lines_asked_than_there_are(log):
    write(log, numbered(0, 5))
    assert last_lines(log, 10) == numbered(0, 5)
    assert last_lines(log, 10000) == numbered(0, 5)


def test_a_last_line_without_newline_is_a_line(log):
    write(log, 'one\ntwo\nthree')
    assert last_lines(log, 1) == b'three'
    assert last_lines(log, 2) == b'two\nthree'
    assert last_lines(log, 5) == b'one\ntwo\nthree'


def test_an_empty_file(log):
    write(log, b'')
    assert last_lines(log, 10) == b''


def test_empty_lines_count(log):
    write(log, 'a\n\n\nb\n')
    assert last_lines(log, 2) == b'\nb\n'
    assert last_lines(log, 3) == b'\n\nb\n'


def test_lines_across_many_blocks(log):
    """Lines that straddle read blocks come out whole."""
    text = numbered(0, 30000)                 # 330 kB, 11-byte lines: not block-aligned
    write(log, text)
    assert len(text) > 4 * tail.BLOCK
    assert last_lines(log, 20000) == numbered(10000, 30000)
    assert last_lines(log, 7000) == numbered(23000, 30000)


def test_at_most_limit_bytes_and_only_whole_lines(log):
    write(log, numbered(0, 30000))
    for limit in (1000, tail.BLOCK, tail.BLOCK + 5, 3 * tail.BLOCK):
        got = last_lines(log, 20000, limit=limit)
        assert 0 < len(got) <= limit
        assert got == numbered(30000 - len(got) // 11, 30000), 'whole lines, the last ones'


def test_the_file_is_opened_with_the_opener_given(log):
    write(log, 'x\n')
    seen = []

    def opener(path):
        seen.append(path)
        return open(path, 'rb')
    assert last_lines(log, 1, opener=opener) == b'x\n' and seen == [log]
    with pytest.raises(FileNotFoundError):
        last_lines(log + '.missing', 1)


# ===================================================================== Follower

def test_appended_lines_come_as_they_are_written(log, follow):
    write(log, numbered(0, 10))
    follower = follow()
    assert follower.read() == b'', 'what was there before is backlog, not news'
    write(log, numbered(10, 12))
    collect(follower, numbered(10, 12))
    write(log, 'partial')
    collect(follower, b'partial')
    write(log, ' end\n')
    collect(follower, b' end\n')
    assert follower.read() == b''


def test_backlog_then_read_give_every_line_once(log, follow):
    write(log, numbered(0, 50))
    follower = follow()
    write(log, numbered(50, 60))              # after following began: read(), not backlog
    assert follower.backlog(5) == numbered(45, 50)
    assert follower.backlog(0) == b''
    assert follower.backlog(1000) == numbered(0, 50)
    collect(follower, numbered(50, 60))


def test_read_with_a_limit_ends_at_a_line_end(log, follow):
    follower = follow()
    write(log, 'aaaa\nbbbb\ncccc\n')
    follower.wait(5.0)
    assert follower.read(12) == b'aaaa\nbbbb\n'
    assert follower.read(7) == b'cccc\n'
    write(log, 'x' * 20 + '\n')
    follower.wait(5.0)
    assert follower.read(8) == b'x' * 8, 'a line longer than the limit comes in pieces'
    assert follower.read() == b'x' * 12 + b'\n'


def test_a_small_limit_reads_a_big_backlog_in_pieces_in_order(log, follow):
    follower = follow()
    write(log, numbered(0, 5000))
    data, deadline = b'', time.monotonic() + 5.0
    while len(data) < len(numbered(0, 5000)) and time.monotonic() < deadline:
        piece = follower.read(1000)
        assert len(piece) <= 1000 and (not piece or piece.endswith(b'\n'))
        data += piece
    assert data == numbered(0, 5000)


def test_rename_and_create_rotation(log, follow):
    """logrotate `create`: the old file is read to its end (the writer still has it
    open), then the new one from its start."""
    write(log, numbered(0, 3))
    follower = follow()
    write(log, numbered(3, 5))
    collect(follower, numbered(3, 5))
    with open(log, 'ab') as writer:
        write(log, numbered(5, 6))
        os.rename(log, log + '.1')
        writer.write(numbered(6, 8))          # the writer has not reopened yet
        writer.flush()
        write(log, numbered(8, 10), mode='xb')
    collect(follower, numbered(5, 10))
    write(log, numbered(10, 11))
    collect(follower, numbered(10, 11))


def test_rotation_with_the_new_file_created_later(log, follow):
    write(log, b'')
    follower = follow()
    write(log, numbered(0, 2))
    os.rename(log, log + '.1')
    collect(follower, numbered(0, 2))
    assert follower.read() == b''
    write(log, numbered(2, 4), mode='xb')
    collect(follower, numbered(2, 4))


def test_rotation_while_more_than_a_limit_of_the_old_file_is_unread(log, follow):
    """A reader slower than the writer (the control socket's rate limit) loses
    nothing of the old file when it is rotated under it."""
    write(log, b'')
    follower = follow()
    write(log, numbered(0, 1000))             # 11 kB unread
    os.rename(log, log + '.1')
    write(log, numbered(1000, 1010), mode='xb')
    data, deadline = b'', time.monotonic() + 5.0
    while len(data) < len(numbered(0, 1010)) and time.monotonic() < deadline:
        data += follower.read(1000)
    assert data == numbered(0, 1010)


def test_copytruncate(log, follow):
    write(log, numbered(0, 100))
    follower = follow()
    write(log, numbered(100, 101))
    collect(follower, numbered(100, 101))
    shutil.copyfile(log, log + '.1')
    with open(log, 'r+b') as f:
        f.truncate(0)
    write(log, numbered(101, 103))
    collect(follower, numbered(101, 103))
    write(log, numbered(103, 104))
    collect(follower, numbered(103, 104))


def test_a_file_missing_at_first_is_followed_once_created(log, follow):
    follower = follow()
    assert follower.backlog(10) == b'' and follower.read() == b''
    write(log, numbered(0, 3), mode='xb')
    collect(follower, numbered(0, 3))
    write(log, numbered(3, 4))
    collect(follower, numbered(3, 4))


def test_wait_returns_at_its_timeout_when_nothing_happens(log, follow):
    write(log, 'x\n')
    follower = follow()
    started = time.monotonic()
    follower.wait(0.05)
    assert 0.04 <= time.monotonic() - started < 2.0


def test_a_refusing_opener_raises_at_construction_and_leaks_nothing(log):
    write(log, 'secret\n')

    def refuse(path):
        raise PermissionError(13, 'refused: not the log it writes', path)
    before = open_fds()
    with pytest.raises(PermissionError):
        Follower(log, opener=refuse)
    assert open_fds() == before


def test_a_missing_directory_raises_at_construction(tmp_path):
    before = open_fds()
    with pytest.raises(OSError):
        Follower(str(tmp_path / 'nowhere' / 'app.log'))
    assert open_fds() == before


def test_close_releases_everything(log):
    write(log, 'x\n')
    before = open_fds()
    Follower(log).close()
    assert open_fds() == before


# ============================================================ open_plain, and dpd-ctl logs here

class Unblocked:
    """Runs `call` in a thread under a deadline; an open that blocks on the FIFO is
    let go by opening its other end, so a failing test does not hang."""

    def __init__(self, call, fifo):
        self.call, self.fifo, self.result, self.error = call, fifo, None, None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.thread.join(5.0)
        self.blocked = self.thread.is_alive()
        if self.blocked:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            self.thread.join(5.0)

    def _run(self):
        try:
            self.result = self.call()
        except OSError as err:
            self.error = err


def test_open_plain_follows_no_link_and_never_waits_on_a_fifo(log, tmp_path):
    secret = str(tmp_path / 'secret')
    write(secret, 'root:$6$x\n')
    os.symlink(secret, log)
    with pytest.raises(OSError) as caught:
        last_lines(log, 10)
    assert caught.value.errno == errno.ELOOP
    os.unlink(log)
    os.mkfifo(log)
    run = Unblocked(lambda: last_lines(log, 10), log)
    assert not run.blocked, 'the open waited for a writer'
    assert run.error is not None and 'not a regular file' in str(run.error)


class Terminal(io.BytesIO):
    def isatty(self):
        return True


HOSTILE = b'\x1b]0;title\x07\x1b[2J'


def ctl_logs(tmp_path, log, out=None, owner=None):
    """dpd.ctl.logs.logs on a worker file naming `log`: (status, out, err)."""
    config = str(tmp_path / 'worker.json')
    if os.path.exists(config):
        os.unlink(config)                   # a new file: root's unless `owner`
    with open(config, 'w') as f:
        json.dump({'procs': [{'name': 'web', 'run': '/bin/sleep', 'logs': log}]}, f)
    if owner is not None:
        os.chown(config, owner, -1)
    out, err = out if out is not None else io.BytesIO(), io.StringIO()
    status = ctl_logs_module.logs(config, 'web', 10, False, out=out, err=err)
    return status, out.getvalue(), err.getvalue()


def test_ctl_logs_escapes_control_characters_on_a_terminal_only(log, tmp_path):
    text = b'a' + HOSTILE + b'\tb\r\n' + '\u00e9\u2028'.encode() + b'\x9b\n'
    write(log, text)
    status, out, err = ctl_logs(tmp_path, log, Terminal())
    assert (status, err) == (0, '')
    assert out == (b'a\\x1b]0;title\\x07\\x1b[2J\tb\\x0d\n' + '\u00e9\\u2028\ufffd\n'.encode())
    assert ctl_logs(tmp_path, log)[1] == text, 'into a pipe or a file: the bytes as written'


def test_ctl_logs_on_a_terminal_keeps_a_character_cut_between_two_reads(log, tmp_path):
    out = Terminal()
    printer = ctl_logs_module._printer(out)
    for piece in ('\u00e9'.encode()[:1], '\u00e9'.encode()[1:] + b'\x1b\n'):
        printer.write(piece)
    assert out.getvalue() == '\u00e9\\x1b\n'.encode()


def test_ctl_logs_refuses_a_link_a_fifo_and_a_strangers_file(log, tmp_path):
    secret = str(tmp_path / 'shadow')
    write(secret, 'root:$6$secret\n')
    os.symlink(secret, log)
    status, out, err = ctl_logs(tmp_path, log)
    assert (status, out) == (1, b'') and 'refused: it is a symbolic link' in err, err
    os.unlink(log)
    os.mkfifo(log)
    run = Unblocked(lambda: ctl_logs(tmp_path, log), log)
    assert not run.blocked, 'dpd-ctl waited for a writer on the FIFO'
    assert run.result[0] == 1 and 'not a regular file' in run.result[2], run.result
    if os.geteuid() == 0:
        os.unlink(log)
        write(log, 'a stranger\'s\n')
        os.chown(log, 54321, -1)
        status, out, err = ctl_logs(tmp_path, log)
        assert (status, out) == (1, b'') and 'owned by uid 54321' in err, err
