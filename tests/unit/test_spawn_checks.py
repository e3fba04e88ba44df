"""spawn.check_program: what the worker's main thread reads of a program before
it starts it, without ever waiting on the file."""
import os
import threading

import pytest

from dpd.worker import spawn


def same(path):
    return path


def test_a_script_names_its_interpreter_and_an_elf_file_passes(tmp_path):
    script = tmp_path / 'job'
    script.write_text('#!/nonexistent/sh\necho hi\n')
    with pytest.raises(spawn.SpawnError, match='its interpreter /nonexistent/sh is missing'):
        spawn.check_program(str(script), same)
    spawn.check_program('/bin/cat', same)


def test_a_fifo_swapped_in_for_the_program_does_not_stop_the_worker(tmp_path):
    fifo = str(tmp_path / 'prog')
    os.mkfifo(fifo)
    checked = threading.Event()
    thread = threading.Thread(target=lambda: (spawn.check_program(fifo, same), checked.set()),
                              daemon=True)
    thread.start()
    thread.join(5)
    if not checked.is_set():            # the old way: open() waits for a writer
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert checked.is_set(), 'check_program waited on a FIFO'
