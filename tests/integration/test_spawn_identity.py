"""Starting a child as another user: through setpriv (vfork), or by Popen (fork).

Both ways must give the child exactly the same credentials. Root only."""
import os
import re
import subprocess

import pytest

from dpd.worker import spawn
from dpd.procspec import parse_process
from dpd.schema import Problems

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason='switching users needs root')


def spec_of(**entry):
    problems = Problems()
    spec = parse_process(dict({'name': 'p', 'run': '/bin/cat'}, **entry), 'procs[0]',
                         problems, 'nobody')
    assert spec is not None, problems.messages
    return spec


def credentials_of_child(spec, monkeypatch, setpriv):
    monkeypatch.setattr(spawn, 'SETPRIV', spawn.SETPRIV if setpriv else None)
    read_fd, write_fd = os.pipe()
    try:
        child = spawn.start(spec, spawn.identity(spec), write_fd)
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd) as output:
        status = output.read()
    assert child.wait(timeout=30) == 0
    fields = dict(line.split(':', 1) for line in status.splitlines() if ':' in line)
    return {key: fields[key].split() for key in ('Uid', 'Gid', 'Groups', 'CapEff', 'CapPrm')}


@pytest.mark.parametrize('setpriv', [True, False], ids=['setpriv', 'popen'])
def test_real_effective_saved_ids_and_exactly_the_users_groups(monkeypatch, setpriv):
    if setpriv and spawn.SETPRIV is None:
        pytest.skip('no setpriv here')
    spec = spec_of(args=['/proc/self/status'], user='nobody', group='daemon')
    seen = credentials_of_child(spec, monkeypatch, setpriv)
    assert seen['Uid'] == ['65534'] * 4
    assert seen['Gid'] == ['1'] * 4, 'the group key sets the primary group'
    assert sorted(seen['Groups']) == ['1', '65534'], 'and the user\'s own groups stay'
    assert seen['CapEff'] == seen['CapPrm'] == ['0000000000000000']


def test_the_setpriv_command_line_names_every_group_then_the_program():
    who = spawn.Identity('nobody', 65534, 1, (1, 65534), '/nonexistent', '/bin/sh')
    argv = spawn.switch_user_argv(who, ['/bin/prog', '-x', '--', 'y'])
    assert argv[1:] == ['--reuid=65534', '--regid=1', '--groups=1,65534', '--',
                        '/bin/prog', '-x', '--', 'y']


def test_a_program_the_user_may_not_execute_is_a_clear_error(tmp_path):
    private = tmp_path / 'private-prog'
    private.write_bytes(open('/bin/true', 'rb').read())
    private.chmod(0o700)
    os.chmod(tmp_path, 0o755)
    spec = spec_of(run=str(private), user='nobody')
    with pytest.raises(spawn.SpawnError, match='not executable by user "nobody"'):
        spawn.start(spec, spawn.identity(spec), subprocess.DEVNULL)
    private.chmod(0o701)
    child = spawn.start(spec, spawn.identity(spec), subprocess.DEVNULL)
    assert child.wait(timeout=30) == 0


@pytest.mark.parametrize('rlimits', [(), (('nofile', 100, 200),)], ids=['switch', 'and-limits'])
def test_loader_variables_reach_the_program_and_no_program_run_as_root(rlimits):
    """LD_* in a process's env would make setpriv or prlimit, run as root before
    the switch, load the file author's code: those starts take another way."""
    spec = spec_of(args=['/proc/self/status', '/proc/self/limits'], user='nobody',
                   env={'LD_DEBUG': 'files'})      # the loader says which program it loads
    read_fd, write_fd = os.pipe()
    try:
        child = spawn.start(spec, spawn.identity(spec), write_fd, rlimits=rlimits)
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, errors='replace') as output:
        seen = output.read()
    assert child.wait(timeout=30) == 0
    assert 'needed by /bin/cat' in seen, 'the program keeps its environment'
    assert 'setpriv' not in seen and 'prlimit' not in seen, seen
    assert re.search(r'^Uid:\s+65534\s+65534\s+65534\s+65534$', seen, re.M)
    if rlimits:
        assert re.search(r'^Max open files\s+100\s+200\s', seen, re.M)
