"""The file watcher thread: every way a file changes is seen, and the writes of
the other files in its directory (the daemon's own state file and journal live
there) do not reach it at all."""
import os
import queue
import stat

import pytest

from dpd import inotify, jsonfile
from dpd.watcher import FileWatcher

DEADLINE = 5.0


class RecordingWatcher(FileWatcher):
    """Posts the file's content each time it may have changed."""

    def changed(self, force=False):
        try:
            with open(self.path) as f:
                self.post(f.read())
        except OSError as err:
            self.post(type(err).__name__)


@pytest.fixture
def watched(tmp_path, monkeypatch):
    """(the file's path, the queue of what the watcher saw, the names of the events
    it was woken for)."""
    path = tmp_path / 'watched.json'
    path.write_text('0')
    (tmp_path / 'worker.state.journal').write_text('')     # a neighbour, there already
    names, parse = [], inotify.parse

    def recording_parse(data):
        events = parse(data)
        names.extend(name for _, _, name in events)
        return events
    monkeypatch.setattr(inotify, 'parse', recording_parse)
    seen = queue.SimpleQueue()
    watcher = RecordingWatcher(str(path), seen.put)
    watcher.start()
    try:
        assert seen.get(timeout=DEADLINE) == '0'        # the first look, at start
        yield path, seen, names
    finally:
        watcher.stop()


def next_seen(seen, expected):
    """What the watcher posts until `expected` (a file may be seen twice)."""
    while True:
        content = seen.get(timeout=DEADLINE)
        if content == expected:
            return


def test_an_edit_in_place(watched):
    path, seen, _ = watched
    with open(path, 'w') as f:
        f.write('1')
    next_seen(seen, '1')


def test_a_replacement_by_rename_and_then_an_edit_of_the_new_file(watched):
    path, seen, _ = watched
    (path.parent / 'new.tmp').write_text('2')
    os.rename(path.parent / 'new.tmp', path)
    next_seen(seen, '2')
    with open(path, 'w') as f:       # the new file's writes are watched too
        f.write('3')
    next_seen(seen, '3')


def test_a_removal_and_a_new_file_written_in_place(watched):
    path, seen, _ = watched
    os.unlink(path)
    next_seen(seen, 'FileNotFoundError')
    with open(path, 'w') as f:
        f.write('4')
    next_seen(seen, '4')


def test_a_chmod(watched):
    path, seen, names = watched
    os.chmod(path, 0o600)
    seen.get(timeout=DEADLINE)
    assert path.name in names


def test_a_symlinks_target_edited_in_place(tmp_path):
    target_dir = tmp_path / 'elsewhere'
    target_dir.mkdir()
    target = target_dir / 'real.json'
    target.write_text('a')
    link = tmp_path / 'link.json'
    link.symlink_to(target)
    seen = queue.SimpleQueue()
    watcher = RecordingWatcher(str(link), seen.put)
    watcher.start()
    try:
        assert seen.get(timeout=DEADLINE) == 'a'
        with open(target, 'w') as f:
            f.write('b')
        next_seen(seen, 'b')
    finally:
        watcher.stop()


def test_writes_of_other_files_in_the_directory_never_wake_it(watched):
    """A state file's journal is appended to and truncated, a log written: none of
    it is an event. (A replacement by rename of another file still is: the
    directory's names are watched.)"""
    path, seen, names = watched
    with open(path.parent / 'worker.state.journal', 'r+') as journal:
        for n in range(20):
            journal.write('line %d\n' % n)
            journal.flush()
        journal.truncate(0)
    with open(path.parent / 'worker.state.journal', 'a') as journal:
        journal.write('again\n')
    with open(path, 'w') as f:       # then the file itself: its events come alone
        f.write('5')
    next_seen(seen, '5')
    assert set(names) == {''}, names     # the file's own watch names no file


@pytest.mark.parametrize('umask', [0o022, 0o077])
def test_a_replaced_file_gets_its_mode_with_no_chmod_unless_the_umask_narrowed_it(
        tmp_path, umask):
    """A state file's replacement is a few directory events, not one more for a
    chmod of the mode the file already has."""
    fd = inotify.init()
    old = os.umask(umask)
    try:
        inotify.add_watch(fd, str(tmp_path), inotify.IN_ATTRIB)
        jsonfile.replace_file(str(tmp_path / 'x.state.json'), b'{}', mode=0o644, durable=False)
        try:
            events = inotify.parse(os.read(fd, 4096))
        except BlockingIOError:
            events = []
    finally:
        os.umask(old)
        os.close(fd)
    assert stat.S_IMODE(os.stat(tmp_path / 'x.state.json').st_mode) == 0o644
    assert bool(events) == (umask == 0o077)
