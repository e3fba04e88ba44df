"""A real dpd-workerd fed bad input (SPEC 3.1 and 5; reliability.md table (a)).

Each case starts its own worker with two running processes, makes the config
bad in one way, and checks that (a) the log names the file and the problem,
(b) the worker lives, (c) the processes keep their pids, (d) the state file
shows the rejection and (e) `dpd-workerd -t` on the same content exits 78;
then a valid edit (a third process) is applied. Other tests: the same kind
of input at start (`-f` exits 78), and entries that are valid but cannot
start, which put that one process in `failed`.
"""
import json
import os
import signal
import stat
from dataclasses import dataclass

import pytest

from support import (IS_ROOT, PYTHON, Daemon, pid_alive, read_json, read_pid, run, wait_until,
                     write_json)
from dpd import jsonfile

EX_CONFIG = 78
root_only = pytest.mark.skipif(not IS_ROOT, reason='the root worker\'s checks; needs root')

# Lines that show a bad edit was NOT simply rejected: stop waiting for the
# rejection as soon as one appears, and fail with it.
NOT_REJECTED = (': cannot start:', 'c: running', 'definition changed', 'crashed', 'Traceback',
                'stopping')


class Scenario:
    """One worker for one test: `a` and `b` running, their pids recorded."""

    def __init__(self, workdir, subdir=None):
        self.workdir = workdir
        directory = workdir.path
        if subdir:
            directory = workdir.join(subdir)
            os.mkdir(directory, 0o755)
            os.chmod(directory, 0o755)
        self.dir = directory
        self.config = os.path.join(directory, 'worker.json')
        self.state_file = os.path.join(directory, 'worker.state.json')
        self.pid_files = {name: workdir.join('%s.pid' % name) for name in 'abc'}
        self.entries = {name: workdir.actor(name, 'sleep', pid_file=self.pid_files[name])
                        for name in 'abc'}
        self.daemon = None
        self.pids = {}
        self.writer = None     # a file object held open by a case (a writer mid-write)

    @property
    def a(self):
        return self.entries['a']

    @property
    def b(self):
        return self.entries['b']

    @property
    def c(self):
        return self.entries['c']

    def doc(self, *more):
        return {'procs': [self.a, self.b] + list(more)}

    def start(self):
        write_json(self.config, self.doc())
        self.daemon = Daemon('dpd-workerd', self.config).start()
        for name in 'ab':
            self.pids[name] = wait_until(lambda: self._live_pid(name),
                                         message='%s running with its pid file' % name)
        wait_until(lambda: self._state_pid('a') and self._state_pid('b'),
                   message='both running in the state file')
        return self

    def _live_pid(self, name):
        pid = read_pid(self.pid_files[name])
        return pid if pid and pid_alive(pid) else None

    def state(self):
        return read_json(self.state_file)

    def proc_state(self, name):
        for record in self.state()['procs']:
            if record['name'] == name:
                return record
        return None

    def _state_pid(self, name):
        record = self.proc_state(name)
        return record and record['state'] == 'running' and record['pid']

    # --------------------------------------------------------- ways to write the file

    def put_doc(self, doc, mode=0o644):
        write_json(self.config, doc, mode)

    def put_bytes(self, data, mode=0o644):
        """Replace the file atomically (temp file + rename), as the client does."""
        tmp = self.config + '.new.tmp'
        with open(tmp, 'wb') as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.rename(tmp, self.config)

    def put_text(self, text):
        self.put_bytes(text.encode('utf-8'))

    def put_in_place(self, data):
        """Overwrite the file's content in place (shell `>`, an editor without rename)."""
        with open(self.config, 'r+b') as f:
            f.truncate(0)
            f.write(data)

    def raw_procs(self, third):
        """The file's text with `a`, `b` and a third entry written as raw JSON text."""
        return '{"procs": [%s,\n %s,\n %s]}' % (json.dumps(self.a), json.dumps(self.b), third)

    def make_room(self):
        """Before a valid edit: rename() replaces a file, a FIFO or a symlink at
        once, but cannot put a file over a directory."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if os.path.isdir(self.config) and not os.path.islink(self.config):
            os.rmdir(self.config)

    # --------------------------------------------------------- checks

    def log(self):
        return self.daemon.log()

    def rejection_lines(self, expect):
        prefix = self.config + ': '
        return [line for line in self.log().splitlines()
                if ' ERROR ' in line and prefix in line and expect in line]

    def wait_rejected(self, expect):
        """(a) and (b): the log names the file and the problem; the worker lives."""
        def outcome():
            if self.rejection_lines(expect):
                return 'rejected'
            if self.daemon.proc.poll() is not None:
                return 'the worker exited with status %s' % self.daemon.proc.returncode
            log = self.log()
            for sign in NOT_REJECTED:
                if sign in log:
                    return 'the log says %r' % sign
            return None
        try:
            seen = wait_until(outcome, timeout=10)
        except AssertionError:
            raise AssertionError('no rejection naming %r:\n%s' % (expect, self.log())) from None
        assert seen == 'rejected', '%s instead of a rejection naming %r:\n%s' % (
            seen, expect, self.log()[-4000:])
        assert self.daemon.proc.poll() is None, 'the worker is alive'

    def assert_untouched(self):
        """(c): `a` and `b` run with the pids they had, and nothing else started."""
        for name in 'ab':
            assert read_pid(self.pid_files[name]) == self.pids[name], name
            assert pid_alive(self.pids[name]), name
        log = self.log()
        for sign in NOT_REJECTED:
            assert sign not in log, '%r in the log of a rejected edit:\n%s' % (sign, log[-4000:])
        assert not os.path.exists(self.pid_files['c'])

    def wait_state_rejected(self, expect):
        """(d): the state file shows config.ok false, with the error."""
        def rejected():
            config = self.state()['config']
            return config['ok'] is False and any(
                expect in error and error.startswith(self.config + ': ')
                for error in config['errors'])
        wait_for(rejected, 'the state file shows the rejection naming %r' % expect, self.state)
        for name in 'ab':
            record = self.proc_state(name)
            assert record['state'] == 'running' and record['pid'] == self.pids[name], record

    def check_command(self, expect):
        """(e): `dpd-workerd -t` on the same content exits 78 and says why."""
        code, out, err = run('dpd-workerd', '-t', self.config)
        assert code == EX_CONFIG, (code, out, err)
        assert expect in err and self.config in err, err

    def recover(self):
        """A valid edit that adds `c` is applied; `a` and `b` are left alone."""
        self.make_room()
        self.put_doc(self.doc(self.c))
        self.wait_recovered()

    def wait_recovered(self):
        self.daemon.wait_log('c: running')
        wait_for(lambda: self._state_pid('c') and self.state()['config']['ok'],
                 'c running and the config ok in the state file', self.state)
        assert self.state()['config']['errors'] == []
        for name in 'ab':
            assert read_pid(self.pid_files[name]) == self.pids[name], name
            assert pid_alive(self.pids[name]), name
        assert self.daemon.proc.poll() is None

    def finish(self):
        code = self.daemon.stop()
        assert code == 0, self.log()[-3000:]
        assert 'Traceback' not in self.log(), self.log()

    def close(self):
        if self.writer is not None:
            self.writer.close()
        if self.daemon is not None and self.daemon.proc.poll() is None:
            self.daemon.proc.kill()
            self.daemon.proc.wait()


def wait_for(predicate, what, show, timeout=None):
    """wait_until, and on a timeout show what `show()` says then, not before."""
    try:
        return wait_until(predicate, **({'timeout': timeout} if timeout else {}))
    except AssertionError:
        try:
            shown = show()
        except Exception as err:  # the state file may be unreadable: say why
            shown = repr(err)
        raise AssertionError('timed out waiting for %s; now: %s' % (what, shown)) from None


@pytest.fixture
def scenario(workdir):
    made = []

    def make(subdir=None):
        made.append(Scenario(workdir, subdir))
        return made[-1]
    yield make
    for one in made:
        one.close()


# ===================================================================== the cases

@dataclass
class Case:
    id: str
    act: object            # act(scenario): make the config bad
    expect: object         # the problem, as the log says it; or expect(scenario) -> str
    subdir: str = None     # the config in a directory of its own
    recover: object = None # recover(scenario) instead of the usual valid edit
    marks: tuple = ()

    def param(self):
        return pytest.param(self, id=self.id, marks=self.marks)


def with_c(**keys):
    """A bad third entry: `c` plus `keys` (None removes a key)."""
    def act(s):
        entry = dict(s.c, **keys)
        for key in [k for k, v in keys.items() if v is None]:
            del entry[key]
        s.put_doc(s.doc(entry))
    return act


def with_a(**keys):
    """`a` itself changed badly: applied, it would restart `a`."""
    def act(s):
        s.put_doc({'procs': [dict(s.a, **keys), s.b, s.c]})
    return act


def doc_is(doc):
    return lambda s: s.put_doc(doc)


def text_with_c(third):
    return lambda s: s.put_text(s.raw_procs(third))


def c_text(extra):
    return '{"name": "c", "run": "/bin/sleep", "args": ["1000"], %s}' % extra


def missing_comma(s):
    """The comma between `b` and `c` left out: the error says where."""
    text = json.dumps(s.doc(s.c), indent=1)
    at = text.rindex('},\n  {')
    text = text[:at + 1] + text[at + 2:]
    s.put_text(text)
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads(text)
    assert info.value.lineno > 1
    s.where = 'line %d column %d: invalid JSON' % (info.value.lineno, info.value.colno)


def truncated_in_place(s):
    good = json.dumps(s.doc(s.c), indent=1).encode()
    s.put_in_place(good[:len(good) // 2])


def half_written(s):
    """An editor mid-save: half the new content written in place, the file still open."""
    good = json.dumps(s.doc(s.c), indent=1).encode()
    s.rest = good[len(good) // 2:]
    s.writer = open(s.config, 'r+b', buffering=0)
    s.writer.truncate(0)
    s.writer.write(good[:len(good) // 2])


def finish_writing(s):
    s.writer.write(s.rest)
    s.writer.close()
    s.writer = None
    s.wait_recovered()


def empty_in_place(s):
    s.put_in_place(b'')


def whitespace_in_place(s):
    s.put_in_place(b'  \n\t\n   ')


def huge_file(s):
    limit = jsonfile.MAX_FILE_BYTES
    filler = b'x' * (limit + 1024)
    s.put_bytes(json.dumps(s.doc(s.c)).encode()[:-1] + b', "_pad": "' + filler + b'"}')


def replace_with(make):
    """Put something that is not a regular file in the config's place, atomically."""
    def act(s):
        tmp = s.config + '.other'
        make(tmp)
        if os.path.isdir(tmp) and not os.path.islink(tmp):
            os.unlink(s.config)      # rename() cannot put a directory over a file
        os.rename(tmp, s.config)
    return act


def deleted(s):
    os.unlink(s.config)


def chmod_file(mode):
    return lambda s: os.chmod(s.config, mode)


def unsafe_directory(s):
    os.chmod(s.dir, 0o777)
    s.put_doc(s.doc(s.c))


def symlink_into_unsafe_directory(s):
    """The config made a symlink to a file in a 0777 directory: anyone can swap that file."""
    unsafe = s.workdir.join('unsafe')
    os.mkdir(unsafe)
    os.chmod(unsafe, 0o777)
    write_json(os.path.join(unsafe, 'worker.json'), s.doc(s.c))
    tmp = s.config + '.link'
    os.symlink(os.path.join(unsafe, 'worker.json'), tmp)
    os.rename(tmp, s.config)


def safe_directory_again(s):
    os.chmod(s.dir, 0o755)
    s.put_doc(s.doc(s.c))
    s.wait_recovered()


NAME_RULE = 'must be 1-128 of A-Z a-z 0-9 . _ - @ :'
BAD_EDITS = [
    # syntax, and the strict JSON of SPEC 3.1
    Case('missing-comma', missing_comma, lambda s: s.where),
    Case('truncated-in-place', truncated_in_place, 'invalid JSON'),
    Case('half-written-file-still-open', half_written, 'invalid JSON', recover=finish_writing),
    Case('empty', empty_in_place, 'the file is empty'),
    Case('whitespace-only', whitespace_in_place, 'the file is empty'),
    Case('duplicate-key', text_with_c(c_text('"run": "/bin/true"')), 'duplicate key "run"'),
    Case('nan', text_with_c(c_text('"stop_timeout": NaN')), 'NaN is not valid JSON'),
    Case('infinity', text_with_c(c_text('"stop_timeout": Infinity')),
         'Infinity is not valid JSON'),
    Case('5000-digit-integer', text_with_c(c_text('"stop_timeout": %s' % ('9' * 5000))),
         '4300'),
    Case('deep-nesting', text_with_c('[' * 100000 + ']' * 100000), 'nested too deeply'),
    Case('invalid-utf8', lambda s: s.put_bytes(s.raw_procs('{"name": "w\xe9b", "run": "/bin/x"}')
                                               .encode('latin-1')), 'not UTF-8'),
    Case('trailing-garbage', lambda s: s.put_text(json.dumps(s.doc(s.c)) + '\n}'),
         'invalid JSON: Extra data'),
    # valid JSON, wrong shape (a4)
    Case('null', doc_is(None), 'must be an object, not null'),
    Case('list', doc_is([]), 'must be an object, not a list'),
    Case('string', doc_is('x'), 'must be an object, not a string'),
    Case('procs-object', doc_is({'procs': {}}),
         'procs: must be a list of processes, not an object'),
    Case('missing-procs', doc_is({}), 'missing required key "procs"'),
    Case('unknown-top-level-key', lambda s: s.put_doc(dict(s.doc(s.c), prcs=[])),
         'unknown key "prcs" (did you mean "procs"?)'),
    Case('entry-not-an-object', lambda s: s.put_doc(s.doc(1)), 'procs[2]: must be an object, '
         'not a number'),
    # keys and types (a5-a10)
    Case('unknown-process-key', with_c(resatrt=False),
         'procs[2] ("c"): unknown key "resatrt" (did you mean "restart"?)'),
    Case('args-string', with_c(args='a b'), 'procs[2] ("c").args: must be a list, not a string'),
    Case('args-number', with_a(args=[1]),
         'procs[0] ("a").args: item 0 must be a string, not a number'),
    Case('restart-string', with_a(restart='false'),
         'procs[0] ("a").restart: must be true or false, not a string'),
    Case('write_pid-1', lambda s: s.put_doc({'procs': [s.a, dict(s.b, write_pid=1), s.c]}),
         'procs[1] ("b").write_pid: must be true or false, not a number'),
    Case('env-number', with_c(env={'A': 1}), 'procs[2] ("c").env: ["A"] must be a string, '
         'not a number'),
    Case('missing-name', with_c(name=None), 'procs[2]: missing required key "name"'),
    Case('missing-run', with_c(run=None), 'procs[2] ("c"): missing required key "run"'),
    Case('relative-run', with_c(run='sleep'),
         'procs[2] ("c").run: must be an absolute path (starting with "/"), not "sleep"'),
    Case('duplicate-names', with_c(name='a'), 'procs[2] ("a"): duplicate name "a" (also procs[0])'),
    Case('shared-pid-file', lambda s: s.put_doc(s.doc(dict(s.c, pid_file=s.pid_files['a']))),
         'procs[2] ("c"): pid_file "%s" is also the pid file of "a"'),
    # names (a22, a23)
    Case('name-slash', with_c(name='a/b'), 'procs[2] ("a/b").name: %s' % NAME_RULE),
    Case('name-unicode', with_c(name='wéb'), 'procs[2] ("w\\u00e9b").name: %s' % NAME_RULE),
    Case('name-newline', with_c(name='c\nd'), 'procs[2] ("c\\nd").name: %s' % NAME_RULE),
    Case('name-129-chars', with_c(name='n' * 129), 'not "%s"' % ('n' * 129)),
    Case('name-lone-surrogate', text_with_c('{"name": "\\ud800", "run": "/bin/sleep"}'),
         'procs[2] ("\\ud800").name: is not valid Unicode'),
    Case('nul-in-args', text_with_c('{"name": "c", "run": "/bin/sleep", "args": ["x\\u0000y"]}'),
         'procs[2] ("c").args: item 0 must not contain a NUL character'),
    # rules between keys, and the extensions
    Case('daemon-without-pid-file', with_c(daemon=True, pid_file=None),
         'procs[2] ("c"): "daemon": true needs "pid_file" and "write_pid": false'),
    Case('umask-999', with_c(umask='999'),
         'procs[2] ("c").umask: must be an octal string such as "022", not "999"'),
    Case('stop-signal-FOO', with_c(stop_signal='FOO'),
         'procs[2] ("c").stop_signal: must be a signal name such as "TERM", not "FOO"'),
    Case('negative-stop-timeout', with_a(stop_timeout=-1),
         'procs[0] ("a").stop_timeout: must be between 0 and 86400, not -1'),
    # the file itself (a21, a24, a25)
    Case('huge-file', huge_file, 'too large'),
    Case('directory', replace_with(os.mkdir), 'not a regular file'),
    Case('fifo', replace_with(os.mkfifo), 'not a regular file'),
    Case('symlink-to-dev-zero', replace_with(lambda p: os.symlink('/dev/zero', p)),
         'not a regular file'),
    Case('deleted', deleted, 'cannot read: No such file or directory'),
    # SPEC 5: who may write a root worker's file (a27)
    Case('world-writable-file', chmod_file(0o666), 'refused: the file is group- or world-writable',
         marks=(root_only,)),
    Case('group-writable-file', chmod_file(0o664), 'refused: the file is group- or world-writable',
         marks=(root_only,)),
    Case('directory-0777-not-sticky', unsafe_directory, 'refused: its directory', subdir='etc',
         recover=safe_directory_again, marks=(root_only,)),
    # once product bugs, now pinned
    Case('symlink-into-unsafe-directory', symlink_into_unsafe_directory, 'refused',
         marks=(root_only,)),
    Case('huge-integer-stop-timeout', text_with_c(c_text('"stop_timeout": 1%s' % ('0' * 400))),
         'procs[2] ("c").stop_timeout: must be between 0 and 86400'),
    Case('env-name-lone-surrogate', text_with_c(c_text('"env": {"\\ud800": "x"}')),
         'procs[2] ("c").env'),
]


@pytest.mark.parametrize('case', [case.param() for case in BAD_EDITS])
def test_a_bad_edit_is_rejected_whole_and_the_next_valid_one_applied(scenario, case):
    s = scenario(case.subdir).start()
    case.act(s)
    expect = case.expect(s) if callable(case.expect) else case.expect
    if '%s' in expect:
        expect = expect % s.pid_files['a']
    s.wait_rejected(expect)                          # (a), (b)
    s.assert_untouched()                             # (c)
    s.wait_state_rejected(expect)                    # (d)
    s.check_command(expect)                          # (e)
    assert len(s.rejection_lines(expect)) == 1, 'logged once:\n%s' % s.log()
    (case.recover or Scenario.recover)(s)
    s.finish()


def test_a_bad_edit_then_hup_keeps_the_rejection(scenario):
    """HUP re-reads the same bad file: still rejected, still nothing touched."""
    s = scenario().start()
    s.put_doc(s.doc(dict(s.c, resatrt=True)))
    s.wait_rejected('unknown key "resatrt"')
    s.daemon.signal(signal.SIGHUP)
    s.daemon.wait_log('HUP: reloading the configuration')
    wait_until(lambda: len(s.rejection_lines('unknown key "resatrt"')) == 2)
    s.assert_untouched()
    s.recover()
    s.finish()


def test_several_bad_edits_in_a_row_then_a_good_one(scenario):
    """Each bad version is rejected for its own reason; the processes never move."""
    s = scenario().start()
    steps = [(with_c(resatrt=1), 'unknown key "resatrt"'),
             (empty_in_place, 'the file is empty'),
             (with_a(restart='no'), 'procs[0] ("a").restart'),
             (replace_with(os.mkfifo), 'not a regular file'),
             (missing_comma, 'invalid JSON')]
    for act, expect in steps:
        act(s)
        s.wait_rejected(expect)
        s.wait_state_rejected(expect)
        s.assert_untouched()
    s.recover()
    s.finish()


@root_only
def test_a_sticky_world_writable_directory_is_fine(scenario):
    s = scenario('etc').start()
    os.chmod(s.dir, 0o1777)
    s.put_doc(s.doc(s.c))
    s.wait_recovered()
    s.finish()


def test_a_deleted_config_reappearing_in_place_is_applied(scenario):
    """Deleted, then written again without rename (a plain `cat > file`)."""
    s = scenario().start()
    os.unlink(s.config)
    s.wait_rejected('cannot read')
    s.assert_untouched()
    with open(s.config, 'w') as f:
        json.dump(s.doc(s.c), f)
    s.wait_recovered()
    s.finish()


# ===================================================================== at start

def start_time_layouts():
    def text(data):
        return lambda path: _write(path, data)
    good = {'procs': []}
    return [
        pytest.param(text(b'{"procs": [}'), 'invalid JSON', id='invalid-json'),
        pytest.param(text(b''), 'the file is empty', id='empty'),
        pytest.param(text(b'{"procs": [], "prcs": []}'),
                     'unknown key "prcs" (did you mean "procs"?)', id='unknown-key'),
        pytest.param(text(b'{"procs": [{"name": "a", "run": "/bin/sleep", "restart": "false"}]}'),
                     'procs[0] ("a").restart: must be true or false, not a string', id='type'),
        pytest.param(text(b'{"procs": [], "procs": []}'), 'duplicate key "procs"',
                     id='duplicate-key'),
        pytest.param(os.mkdir, 'not a regular file', id='directory'),
        pytest.param(os.mkfifo, 'not a regular file', id='fifo'),
        pytest.param(lambda p: os.symlink('/dev/zero', p), 'not a regular file',
                     id='symlink-to-dev-zero'),
        pytest.param(lambda p: None, 'cannot read: No such file or directory', id='missing'),
        pytest.param(lambda p: _write(p, json.dumps(good).encode(), 0o666),
                     'refused: the file is group- or world-writable', id='world-writable',
                     marks=root_only),
        pytest.param(text(b'{"procs": [{"name": "a", "run": "/bin/sleep", "stop_timeout": 1'
                          + b'0' * 400 + b'}]}'), 'stop_timeout: must be between',
                     id='huge-integer'),
    ]


def _write(path, data, mode=0o644):
    with open(path, 'wb') as f:
        f.write(data)
    os.chmod(path, mode)


@pytest.mark.parametrize('make, expect', start_time_layouts())
def test_starting_on_bad_content_exits_78(workdir, make, expect):
    config = workdir.join('worker.json')
    make(config)
    code, out, err = run('dpd-workerd', '-f', '-v', config, timeout=10)
    assert code == EX_CONFIG, (code, out, err)
    assert '%s: ' % config in err and expect in err, err
    assert 'Traceback' not in err
    assert not os.path.exists(workdir.join('worker.state.json'))
    code, out, err = run('dpd-workerd', '-t', config, timeout=10)
    assert code == EX_CONFIG and expect in err and 'test failed' in err, (code, out, err)


def test_check_on_good_content_exits_0(workdir):
    config = workdir.join('worker.json')
    write_json(config, {'procs': [workdir.actor('a', 'sleep')]})
    code, out, err = run('dpd-workerd', '-t', config)
    assert code == 0 and 'test is successful' in out, (code, out, err)


def test_every_error_is_logged_and_in_the_state_file(scenario):
    s = scenario().start()
    s.put_doc({'procs': [dict(s.a, restart='no'), s.b, dict(s.c, resatrt=1, args='x')],
               'bogus': 1})
    problems = ['unknown key "bogus"', 'procs[0] ("a").restart: must be true or false',
                'procs[2] ("c"): unknown key "resatrt"', 'procs[2] ("c").args: must be a list']
    for problem in problems:
        s.wait_rejected(problem)
    s.wait_state_rejected(problems[0])
    errors = s.state()['config']['errors']
    assert len(errors) == len(problems), errors
    for problem in problems:
        assert any(problem in error for error in errors), (problem, errors)
    s.assert_untouched()
    s.recover()
    s.finish()


def test_check_prints_every_problem(workdir):
    config = workdir.join('worker.json')
    write_json(config, {'procs': [dict(workdir.actor('a', 'sleep'), resatrt=1),
                                  dict(workdir.actor('b', 'sleep'), args='x')], 'bogus': 1})
    code, out, err = run('dpd-workerd', '-t', config)
    assert code == EX_CONFIG
    for problem in ('unknown key "bogus"', 'procs[0] ("a"): unknown key "resatrt"',
                    'procs[1] ("b").args: must be a list, not a string'):
        assert '%s: %s' % (config, problem) in err, err


# ===================================================================== cannot start: `failed`

@dataclass
class Broken:
    id: str
    prepare: object        # prepare(s) -> dict of keys for `c`
    expect: object         # in the state file's `error` of `c`; or expect(s, keys) -> str
    fix: object = None     # fix(s): make it startable; c must then run
    check: object = None   # check(s): afterwards (a planted target is unchanged...)
    marks: tuple = ()

    def param(self):
        return pytest.param(self, id=self.id, marks=self.marks)


def _file(path, content=b'precious\n', mode=0o644):
    with open(path, 'wb') as f:
        f.write(content)
    os.chmod(path, mode)
    return path


def planted_pid_link(s):
    s.target = _file(s.workdir.join('precious'))
    os.symlink(s.target, s.pid_files['c'])
    return {}


def planted_log_link(s):
    s.target = _file(s.workdir.join('precious'))
    os.symlink(s.target, s.workdir.join('c.log'))
    return {'logs': s.workdir.join('c.log')}


def target_unchanged(s):
    with open(s.target, 'rb') as f:
        assert f.read() == b'precious\n'
    assert stat.S_IMODE(os.stat(s.target).st_mode) == 0o644


def pid_link_kept(s):
    target_unchanged(s)
    assert os.path.islink(s.pid_files['c'])


def logs_owned_by_a_stranger(s):
    import pwd
    s.target = _file(s.workdir.join('c.log'))
    os.chown(s.target, pwd.getpwnam('nobody').pw_uid, -1)
    return {'logs': s.target}


def not_executable(s):
    return {'run': _file(s.workdir.join('prog'), b'#!/bin/sh\nexec sleep 1000\n', 0o644),
            'args': []}


def bad_interpreter(s):
    return {'run': _file(s.workdir.join('prog'), b'#!/nonexistent/interp\n', 0o755), 'args': []}


def world_writable_pid_dir(s):
    directory = s.workdir.join('piddir')
    os.mkdir(directory)
    os.chmod(directory, 0o777)
    return {'pid_file': os.path.join(directory, 'c.pid')}


def logs_hard_link(s):
    s.target = _file(s.workdir.join('precious'))
    os.link(s.target, s.workdir.join('c.log'))
    return {'logs': s.workdir.join('c.log')}


CANNOT_START = [
    Broken('unknown-user', lambda s: {'user': 'nosuchuser-dpdt'}, 'no such user "nosuchuser-dpdt"'),
    Broken('unknown-group', lambda s: {'group': 'nosuchgroup-dpdt'},
           'no such group "nosuchgroup-dpdt"'),
    Broken('missing-program', lambda s: {'run': s.workdir.join('missing-prog')},
           'missing-prog: No such file or directory',
           fix=lambda s: os.symlink(PYTHON, s.workdir.join('missing-prog'))),
    Broken('program-not-executable', not_executable, 'not an executable file',
           fix=lambda s: os.chmod(s.workdir.join('prog'), 0o755)),
    Broken('program-is-a-directory', lambda s: {'run': s.workdir.path}, 'not an executable file'),
    Broken('bad-interpreter', bad_interpreter, 'interpreter'),
    Broken('missing-cwd', lambda s: {'cwd': s.workdir.join('nodir')},
           lambda s, keys: 'cwd %s is not an existing directory' % keys['cwd'],
           fix=lambda s: os.mkdir(s.workdir.join('nodir'))),
    Broken('missing-chroot', lambda s: {'chroot': s.workdir.join('nojail')},
           lambda s, keys: 'chroot %s is not an existing directory' % keys['chroot'],
           marks=(root_only,)),
    Broken('pid-file-directory-missing', lambda s: {'pid_file': s.workdir.join('nodir', 'c.pid')},
           'nodir', fix=lambda s: os.mkdir(s.workdir.join('nodir'))),
    Broken('pid-file-planted-symlink', planted_pid_link, 'refused: it is a symbolic link',
           check=pid_link_kept),
    Broken('pid-file-directory-world-writable', world_writable_pid_dir,
           'world-writable and not sticky', marks=(root_only,)),
    Broken('logs-is-a-directory', lambda s: os.mkdir(s.workdir.join('logdir'))
           or {'logs': s.workdir.join('logdir')}, 'Is a directory'),
    Broken('logs-directory-missing', lambda s: {'logs': s.workdir.join('nodir', 'c.log')},
           'No such file or directory', fix=lambda s: os.mkdir(s.workdir.join('nodir'))),
    Broken('logs-planted-symlink', planted_log_link, 'refused: it is a symbolic link',
           check=target_unchanged),
    Broken('logs-hard-link', logs_hard_link, 'hard links', check=target_unchanged),
    Broken('logs-owned-by-a-stranger', logs_owned_by_a_stranger, 'owned by uid',
           check=target_unchanged, marks=(root_only,)),
]


@pytest.mark.parametrize('case', [case.param() for case in CANNOT_START])
def test_an_entry_that_cannot_start_fails_alone(scenario, case):
    s = scenario().start()
    keys = case.prepare(s)
    s.put_doc(s.doc(dict(s.c, **keys)))
    expect = case.expect(s, keys) if callable(case.expect) else case.expect

    def failed():
        record = s.proc_state('c')
        return record and record['state'] == 'failed' and record['error'] and record
    record = wait_for(failed, 'c failed in the state file', s.state)
    assert expect in record['error'], record
    assert record['pid'] is None
    s.daemon.wait_log('c: cannot start: ')
    assert expect in s.log()
    state = s.state()
    assert state['config']['ok'] is True and state['config']['errors'] == []
    for name in 'ab':                     # the others run, untouched
        assert read_pid(s.pid_files[name]) == s.pids[name] and pid_alive(s.pids[name])
        other = s.proc_state(name)
        assert other['state'] == 'running' and other['pid'] == s.pids[name]
    assert s.daemon.proc.poll() is None
    assert 'c: running' not in s.log()
    if case.check:
        case.check(s)
    if case.fix:                          # retried by itself once the cause is gone
        case.fix(s)
        s.daemon.wait_log('c: running', timeout=10)
        wait_for(lambda: s._state_pid('c'), 'c running in the state file', s.state)
    s.finish()
    if case.check:
        case.check(s)
