"""Debian integration (issue 6): the init scripts, systemd units, cron files,
logrotate snippet and install step, checked by the tools that will read them
and run for real against temp configs (nothing is installed on the machine)."""
import glob
import gzip
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time

import pytest

from support import (IS_ROOT, REPO, Daemon, command, pid_alive, pids_with, read_json,
                     read_pid, wait_until, write_json)

DAEMONS = ('dpd-workerd', 'dpd-clientd', 'dpd-masterd')
KIND = {'dpd-workerd': 'worker', 'dpd-clientd': 'client', 'dpd-masterd': 'master'}
INIT = os.path.join(REPO, 'init')
CRON = os.path.join(REPO, 'cron')
INSTALL = os.path.join(INIT, 'install')
UNRENDERED_BIN = '/usr/local/bin/'
needs_root = pytest.mark.skipif(not IS_ROOT, reason='needs root: the daemons and the tools '
                                'run as they would on a server')


def tool(name):
    """The path of a system tool, or skip (tests/run installs them as root)."""
    path = shutil.which(name, path=os.environ.get('PATH', '') + ':/usr/sbin:/sbin:/usr/bin')
    if not path:
        pytest.skip('%s is not installed (bash tests/run installs it when run as root)' % name)
    return path


def daemon_command(name):
    """The installed console script: its process name is `name`, which the
    init scripts match with start-stop-daemon --name."""
    path = command(name)[0]
    if os.path.basename(path) != name:
        pytest.skip('no installed %s console script (run the tests with bash tests/run)' % name)
    return path


def read(path):
    with open(path) as f:
        return f.read()


def comm(pid):
    try:
        return read('/proc/%d/comm' % pid).strip()
    except OSError:
        return None


def render(text, bindir):
    """What init/install does to every file: the commands' real directory."""
    text = text.replace(UNRENDERED_BIN + 'dpd-', bindir.rstrip('/') + '/dpd-')
    return re.sub(r'(?m)^PATH=/usr/local/sbin:', 'PATH=%s:/usr/local/sbin:' % bindir, text)


def make_config(workdir, name, procs=()):
    """A temp config for `name` whose pid and log files live in the temp dir."""
    pid_file = workdir.join('run', name + '.pid')
    doc = {'pid_file': pid_file, 'log_file': workdir.join('log', name + '.log')}
    if name == 'dpd-workerd':
        doc['procs'] = list(procs)
    else:
        doc['master_stats'] = 'ipc://' + workdir.join('stats.sock')
        doc['master_updates'] = 'ipc://' + workdir.join('updates.sock')
        if name == 'dpd-clientd':
            doc.update(node_name='testnode', conf_file=workdir.join('worker.json'))
        else:
            doc['nodes'] = {}
    config = workdir.join('%s.json' % KIND[name])
    write_json(config, doc)
    return config, pid_file, doc


def dead(pid):
    """True once every thread of `pid` has exited, so its files (and its lock)
    are closed: a killed daemon shows as a zombie a little earlier than that."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:       # not re-parented to us: /proc must do
        return not pid_alive(pid)


def daemons_of(config):
    """Live daemons started on `config` (their command line names it)."""
    return [pid for pid in pids_with(config) if comm(pid) in DAEMONS]


@pytest.fixture
def reaper(workdir):
    """Whatever a test leaves running on its temp configs is killed at the end."""
    yield
    for pid in pids_with(workdir.path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class InitScript:
    """init/NAME run directly, with DAEMON, CONFIG and PIDFILE in its environment."""

    def __init__(self, name, config, pid_file, **extra):
        self.path = os.path.join(INIT, name)
        self.env = dict(os.environ, DAEMON=daemon_command(name), CONFIG=config,
                        PIDFILE=pid_file, SYSTEMCTL_SKIP_REDIRECT='1', **extra)

    def __call__(self, action, timeout=60, **env):
        started = time.monotonic()
        done = subprocess.run([self.path, action], env=dict(self.env, **env),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)
        self.elapsed = time.monotonic() - started
        return done.returncode, done.stdout + done.stderr


def normalized(text, name):
    """A file with its daemon's names replaced, to compare the three."""
    kind = KIND[name]
    text = re.sub(r'(?m)^# (Short-Description|Description|Should-Start|Should-Stop):.*\n'
                  r'(#    .*\n)*', '', text)
    for old, new in ((name, 'NAME'), ('diprocd-' + kind, 'diprocd-KIND'),
                     ('diprocd ' + kind, 'diprocd KIND'), ('/tmp/%s.' % kind[0], '/tmp/K.')):
        text = text.replace(old, new)
    return text


# ---------------------------------------------------------------------------
# static checks

def lsb_header(text):
    block = text.split('### BEGIN INIT INFO\n', 1)[1].split('### END INIT INFO\n', 1)[0]
    fields, key = {}, None
    for line in block.splitlines():
        match = re.match(r'# ([A-Za-z-]+):\s*(.*)$', line)
        if match:
            key = match.group(1)
            fields[key] = match.group(2)
        else:
            assert re.match(r'#(\t| {2,})\S', line), 'a continuation line: %r' % line
            fields[key] += ' ' + line[1:].strip()
    return fields


def script_default(text, variable):
    match = re.search(r'(?m)^%s=\$\{env_\w+:-\$\{%s:-([^}]*)\}\}$' % (variable, variable), text)
    assert match, 'no default for %s' % variable
    return match.group(1)


@pytest.mark.parametrize('name', DAEMONS)
def test_init_script_header_defaults_and_matching(name):
    path = os.path.join(INIT, name)
    assert os.stat(path).st_mode & 0o777 == 0o755
    text = read(path)
    assert text.startswith('#!/bin/sh\n')
    header = lsb_header(text)
    assert header['Provides'] == name
    for key in ('Required-Start', 'Required-Stop'):
        assert set(header[key].split()) == {'$remote_fs', '$syslog', '$network'}
    assert header['Default-Start'].split() == ['2', '3', '4', '5']
    assert header['Default-Stop'].split() == ['0', '1', '6']
    assert header['Short-Description'] and header['Description']
    assert script_default(text, 'DAEMON') == UNRENDERED_BIN + name
    assert script_default(text, 'CONFIG') == '/var/lib/diprocd/diprocd-%s.json' % KIND[name]
    pid_file = script_default(text, 'PIDFILE')
    assert pid_file == '/run/diprocd/%s.pid' % name
    assert '# pidfile: %s\n' % pid_file in text.split('### BEGIN INIT INFO')[0]
    example = os.path.join(REPO, 'examples', 'diprocd-%s.example.json' % KIND[name])
    if os.path.exists(example):
        assert read_json(example)['pid_file'] == pid_file
    assert '/etc/default/$NAME' in text and 'NAME=%s\n' % name in text
    assert '--exec' not in text
    for line in text.splitlines():
        if 'start-stop-daemon --' in line:
            assert '--pidfile "$PIDFILE" --name "$NAME"' in line, line


def test_the_three_init_scripts_differ_only_in_names():
    texts = {name: normalized(read(os.path.join(INIT, name)), name) for name in DAEMONS}
    assert texts['dpd-clientd'] == texts['dpd-workerd']
    assert texts['dpd-masterd'] == texts['dpd-workerd']
    client = lsb_header(read(os.path.join(INIT, 'dpd-clientd')))
    assert set(client['Should-Start'].split()) == {'dpd-masterd', 'dpd-workerd'}


@pytest.mark.parametrize('name', DAEMONS)
def test_default_files_are_key_value_lines_equal_to_the_defaults(name):
    path = os.path.join(INIT, name + '.default')
    assert os.stat(path).st_mode & 0o777 == 0o644
    values, commented = {}, {}
    for line in read(path).splitlines():
        if not line or line.startswith('#'):
            match = re.match(r'#([A-Z_]+)=(\S*)$', line)
            if match:
                commented[match.group(1)] = match.group(2)
            continue
        match = re.match(r'([A-Z_]+)=(\S*)$', line)
        assert match, 'KEY=value only (systemd reads the file too): %r' % line
        values[match.group(1)] = match.group(2)
    script = read(os.path.join(INIT, name))
    assert values['CONFIG'] == script_default(script, 'CONFIG')
    assert values['PIDFILE'] == script_default(script, 'PIDFILE')
    assert values['DAEMON_OPTS'] == ''
    assert int(values['STOP_TIMEOUT']) == 90
    assert commented == {'DAEMON': UNRENDERED_BIN + name}


def cron_file(name):
    """(text, {variable: value}, [minute, hour, dom, month, dow, user, command])."""
    text = read(os.path.join(CRON, name))
    env, jobs = {}, []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith('#'):
            continue
        match = re.match(r'([A-Za-z_]\w*)\s*=\s*(.*)$', line)
        if match:
            env[match.group(1)] = match.group(2)
        else:
            jobs.append(line.split(None, 6))
    assert len(jobs) == 1
    return text, env, jobs[0]


@pytest.mark.parametrize('name', DAEMONS)
def test_cron_file_format(name):
    path = os.path.join(CRON, name)
    assert re.fullmatch(r'[A-Za-z0-9_-]+', os.path.basename(path)), 'cron ignores other names'
    assert os.stat(path).st_mode & 0o777 == 0o644, 'not executable, not writable by others'
    text, env, job = cron_file(name)
    assert text.endswith('\n'), 'cron ignores a file without a final newline'
    assert env['SHELL'] == '/bin/sh'
    assert env['PATH'].split(':')[:2] == ['/usr/local/sbin', '/usr/local/bin']
    assert 'MAILTO' not in env, 'a failed start is worth a mail'
    assert job[:6] == ['*/5', '*', '*', '*', '*', 'root']
    line = job[6]
    assert '%' not in line, 'cron turns % into a newline'
    assert '[ -d /run/systemd/system ]' in line
    assert 'systemctl -q is-enabled %s.service' % name in line
    assert 'systemctl -q is-active %s.service' % name in line
    assert '%s /var/lib/diprocd/diprocd-%s.json >/dev/null' % (name, KIND[name]) in line
    assert normalized(text, name) == normalized(read(os.path.join(CRON, 'dpd-workerd')),
                                                'dpd-workerd')


def shell_files(tmp_path):
    """The init scripts, init/install, and each cron command as a script."""
    files = [os.path.join(INIT, name) for name in DAEMONS] + [INSTALL]
    for name in DAEMONS:
        job = cron_file(name)[2]
        path = tmp_path / ('cron-' + name)
        path.write_text('#!/bin/sh\n%s\n' % job[6])
        files.append(str(path))
    return files


def test_shell_syntax(tmp_path):
    for path in shell_files(tmp_path):
        for shell in ('sh', 'dash', 'bash'):
            if shutil.which(shell):
                done = subprocess.run([shell, '-n', path], capture_output=True, text=True)
                assert done.returncode == 0 and not done.stderr, (shell, path, done.stderr)


def test_shellcheck(tmp_path):
    shellcheck = tool('shellcheck')
    files = shell_files(tmp_path)
    done = subprocess.run([shellcheck, '-s', 'sh'] + files,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    defaults = [os.path.join(INIT, name + '.default') for name in DAEMONS]
    done = subprocess.run([shellcheck, '-s', 'sh', '-e', 'SC2034'] + defaults,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_insserv_orders_the_scripts(tmp_path):
    """What `insserv` and `update-rc.d NAME defaults` read: the LSB headers
    (a dry run on a copy of /etc/init.d)."""
    insserv = tool('insserv')
    init_d = tmp_path / 'init.d'
    init_d.mkdir()
    for script in glob.glob('/etc/init.d/*'):
        if os.path.isfile(script) and os.path.basename(script) not in DAEMONS:
            shutil.copy(script, init_d)
    for level in '0123456S':
        (tmp_path / ('rc%s.d' % level)).mkdir()
    for name in DAEMONS:
        shutil.copy(os.path.join(INIT, name), init_d)
    done = subprocess.run([insserv, '-n', '-v', '-p', str(init_d)] + list(DAEMONS),
                          cwd=str(init_d), capture_output=True, text=True)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    ours = [line for line in output.splitlines() if 'dpd-' in line]
    assert not [line for line in ours if re.search(r'(?i)warning|fatal|overlapping|'
                                                   r'missing|not an executable', line)], output
    links = {level + name: link for level, link, name
             in re.findall(r'rc(.)\.d/([SK]\d\d)(dpd-\w+)$', output, re.M)}
    for name in DAEMONS:
        for level in '2345':
            assert links[level + name].startswith('S'), output
        for level in '016':
            assert links[level + name].startswith('K'), output
    assert links['2dpd-clientd'] > links['2dpd-workerd']
    assert links['2dpd-clientd'] > links['2dpd-masterd']


@needs_root
def test_update_rc_d_enables_and_removes_the_scripts(tmp_path):
    """`update-rc.d NAME defaults`, run for real on copies of /etc/init.d and
    /etc/rc?.d mounted over the originals in a private mount namespace."""
    update_rc_d, unshare = tool('update-rc.d'), tool('unshare')
    levels = '0123456S'
    if not all(os.path.isdir('/etc/rc%s.d' % level) for level in levels):
        pytest.skip('no /etc/rc?.d here')
    etc = tmp_path / 'etc'
    shutil.copytree('/etc/init.d', etc / 'init.d', symlinks=True)
    for level in levels:
        shutil.copytree('/etc/rc%s.d' % level, etc / ('rc%s.d' % level), symlinks=True)
    for name in DAEMONS:
        shutil.copy(os.path.join(INIT, name), etc / 'init.d')
    mounts = ['/etc/init.d'] + ['/etc/rc%s.d' % level for level in levels]
    script = ''.join('mount --bind %s%s %s\n' % (tmp_path, path, path) for path in mounts)
    # on a systemd host update-rc.d would also reload the host's systemd
    script += '[ ! -d /run/systemd ] || mount -t tmpfs tmpfs /run/systemd\n'
    script += ''.join('%s %s defaults\n' % (update_rc_d, name) for name in DAEMONS)
    script += 'ls /etc/rc?.d >%s/enabled\n' % tmp_path
    script += 'rm /etc/init.d/dpd-masterd && %s dpd-masterd remove\n' % update_rc_d
    script += 'ls /etc/rc?.d >%s/removed\n' % tmp_path
    done = subprocess.run([unshare, '-m', 'sh', '-ec', script], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'dpd-' not in done.stdout + done.stderr, 'no warning about our scripts'
    for name in ('dpd-workerd', 'dpd-clientd'):
        for level in levels[:-1]:
            links = [link for link in os.listdir(etc / ('rc%s.d' % level))
                     if link[3:] == name]
            assert len(links) == 1 and links[0][0] == ('S' if level in '2345' else 'K'), \
                (level, name)
            assert os.readlink(etc / ('rc%s.d' % level) / links[0]) == '../init.d/' + name
    assert re.search(r'(?m)^S\d\ddpd-masterd$', (tmp_path / 'enabled').read_text())
    assert 'dpd-masterd' not in (tmp_path / 'removed').read_text()
    assert not [link for level in levels for link in os.listdir('/etc/rc%s.d' % level)
                if 'dpd-' in link], 'the host was not touched'


def unit_lines(text):
    pairs = []
    for line in text.splitlines():
        if line and not line.startswith(('#', '[')):
            key, _, value = line.partition('=')
            pairs.append((key, value))
    return pairs


@pytest.mark.parametrize('name', DAEMONS)
def test_unit_settings(name):
    path = os.path.join(INIT, name + '.service')
    text = read(path)
    pairs = unit_lines(text)
    settings = dict(pairs)
    binary = UNRENDERED_BIN + name
    assert settings['Type'] == 'notify'
    assert settings['EnvironmentFile'] == '-/etc/default/' + name
    # the worker and the client take the node policy (SPEC 5.1); the master has none
    policy = ' --policy ${POLICY}' if name != 'dpd-masterd' else ''
    assert settings['Environment'] == 'CONFIG=/var/lib/diprocd/diprocd-%s.json DAEMON_OPTS=%s' \
        % (KIND[name], ' POLICY=/etc/diprocd/policy.json' if policy else '')
    assert settings['ExecStart'] == binary + ' -f%s $DAEMON_OPTS ${CONFIG}' % policy
    assert [v for k, v in pairs if k == 'ExecReload'] == [binary + ' -t%s ${CONFIG}' % policy,
                                                          '/bin/kill -HUP $MAINPID']
    assert settings['KillMode'] == 'process'
    assert settings['Restart'] == 'on-failure'
    assert settings['RestartPreventExitStatus'] == '78'
    assert settings['RuntimeDirectory'] == 'diprocd'
    assert settings['RuntimeDirectoryPreserve'] == 'yes'
    assert settings['WantedBy'] == 'multi-user.target'
    assert '[Install]' in text and 'PIDFile' not in settings


def test_systemd_analyze_verify(tmp_path):
    """The units rendered with real commands, as init/install writes them."""
    analyze = tool('systemd-analyze')
    bindir = os.path.dirname(daemon_command('dpd-workerd'))
    paths = []
    for name in DAEMONS:
        path = tmp_path / (name + '.service')
        path.write_text(render(read(os.path.join(INIT, name + '.service')), bindir))
        paths.append(str(path))
    done = subprocess.run([analyze, 'verify'] + paths, capture_output=True, text=True,
                          cwd=str(tmp_path), env=dict(os.environ, SYSTEMD_LOG_LEVEL='notice'))
    output = done.stdout + done.stderr
    ours = [line for line in output.splitlines()
            if 'dpd-' in line or str(tmp_path) in line or 'diprocd' in line]
    assert done.returncode == 0 and not ours, output


# ---------------------------------------------------------------------------
# the init scripts, run

def reload_evidence(name, workdir, config, doc):
    """Edit the config, and return a function telling when the daemon has
    re-read it (after the reload)."""
    if name == 'dpd-workerd':
        doc['procs'].append(workdir.actor('c', 'sleep'))
        write_json(config, doc)
        return lambda: ('HUP: reloading the configuration' in read(doc['log_file'])
                        and len(pids_with(workdir.marker)) == 3)
    if name == 'dpd-masterd':
        doc['nodes']['node9'] = []
        write_json(config, doc)
        state = config.replace('.json', '.state.json')
        return lambda: ('HUP: reloading the configuration' in read(doc['log_file'])
                        and 'node9' in read(state))
    doc['allowed_users'] = ['nobody']
    write_json(config, doc)
    return lambda: 'HUP: reloading the configuration' in read(doc['log_file'])


@needs_root
@pytest.mark.parametrize('name', DAEMONS)
def test_init_script_start_status_reload_stop(workdir, reaper, name):
    ready = workdir.join('ignoring.ready')
    procs = [workdir.actor('a', 'sleep'),
             workdir.actor('b', 'ignore-term', ready, stop_timeout=1.5)]
    config, pid_file, doc = make_config(workdir, name, procs)
    init = InitScript(name, config, pid_file, DAEMON_OPTS='-v')

    assert init('status')[0] == 3
    code, out = init('start')
    assert code == 0, out
    pid = read_pid(pid_file)
    assert pid and pid_alive(pid) and comm(pid) == name
    assert daemons_of(config) == [pid]
    if name == 'dpd-workerd':
        wait_until(lambda: len(pids_with(workdir.marker)) == 2 and os.path.exists(ready))
    code, out = init('status')
    assert code == 0 and 'running (pid %d' % pid in out, out

    code, out = init('start')
    assert code == 0, out
    assert daemons_of(config) == [pid] and read_pid(pid_file) == pid

    reloaded = reload_evidence(name, workdir, config, doc)
    code, out = init('reload')
    assert code == 0, out
    wait_until(reloaded, message=lambda: read(doc['log_file']))
    assert daemons_of(config) == [pid]
    assert init('force-reload')[0] == 0
    hups = 2    # reload, force-reload: each logged once the daemon handled it
    wait_until(lambda: read(doc['log_file']).count('HUP: reloading') == hups,
               message=lambda: read(doc['log_file']))
    with open(config, 'w') as f:
        f.write('{"procs": [}')
    code, out = init('reload')
    assert code == 6 and 'not reloaded' in out and 'invalid JSON' in out, out
    assert daemons_of(config) == [pid]
    assert read(doc['log_file']).count('HUP: reloading') == hups, 'no HUP after a failed check'
    write_json(config, doc)

    children = pids_with(workdir.marker)
    code, out = init('stop')
    assert code == 0, out
    # stop returned when the daemon's lock was released, in its last instants
    wait_until(lambda: dead(pid), timeout=1, message='stop returns once the daemon is gone')
    if name == 'dpd-workerd':
        assert len(children) == 3
        assert init.elapsed >= 1.4, 'the worker waited for its TERM-ignoring process'
        assert not [c for c in children if pid_alive(c)], 'the worker stopped its processes'
    assert not os.path.exists(pid_file)
    assert init('status')[0] == 3
    assert init('stop')[0] == 0
    assert init('reload')[0] == 7
    code, out = init('try-restart')
    assert code == 0 and not daemons_of(config), out


@needs_root
@pytest.mark.parametrize('name', DAEMONS)
def test_init_script_after_kill9_and_with_a_foreign_pid(workdir, reaper, name):
    procs = [workdir.actor('a', 'sleep')]
    config, pid_file, _ = make_config(workdir, name, procs)
    init = InitScript(name, config, pid_file)
    assert init('start')[0] == 0
    pid = read_pid(pid_file)
    if name == 'dpd-workerd':
        child = wait_until(lambda: pids_with(workdir.marker))
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: dead(pid))
    code, out = init('status')
    assert code == 1 and 'not running, but %s exists' % pid_file in out, out

    code, out = init('start')
    assert code == 0, out
    new = read_pid(pid_file)
    assert new != pid and pid_alive(new) and daemons_of(config) == [new]
    if name == 'dpd-workerd':
        assert pids_with(workdir.marker) == child, 'the new worker adopted the process'

    code, out = init('restart')
    assert code == 0, out
    newer = read_pid(pid_file)
    assert newer != new and daemons_of(config) == [newer]
    assert init('stop')[0] == 0
    assert not daemons_of(config) and not pids_with(workdir.marker)

    # a pid file naming a live process that is not ours: dead, and never signalled
    with open(pid_file, 'w') as f:
        f.write('%d\n' % os.getpid())
    assert init('status')[0] == 1
    assert init('stop')[0] == 0
    assert not os.path.exists(pid_file), 'the stale pid file is removed'
    assert init('status')[0] == 3


@needs_root
def test_init_script_errors(workdir, reaper):
    config, pid_file, doc = make_config(workdir, 'dpd-workerd')
    init = InitScript('dpd-workerd', config, pid_file)
    code, out = init('bogus')
    assert code == 3 and 'Usage:' in out
    code, out = init('start', DAEMON=workdir.join('missing'))
    assert code == 5 and 'missing or not executable' in out, out
    code, out = init('start', CONFIG=workdir.join('none.json'))
    assert code == 6 and 'none.json is missing' in out, out
    bad = workdir.join('bad.json')
    write_json(bad, {'procs': 1})
    code, out = init('start', CONFIG=bad)
    assert code == 6 and 'must be a list' in out, out
    # PIDFILE is not the pid_file of CONFIG: the daemon runs, the script says so
    code, out = init('start', PIDFILE=workdir.join('other.pid'))
    assert code == 1 and 'is it the pid_file of' in out, out
    daemon = read_pid(pid_file)
    assert daemons_of(config) == [daemon]
    assert init('stop')[0] == 0 and not daemons_of(config)


@needs_root
def test_init_script_stop_escalates_after_stop_timeout(workdir, reaper):
    """A process slower to stop than STOP_TIMEOUT: a second TERM makes the
    worker kill it at once."""
    ready = workdir.join('ready')
    procs = [workdir.actor('stubborn', 'ignore-term', ready, stop_timeout=60)]
    config, pid_file, _ = make_config(workdir, 'dpd-workerd', procs)
    init = InitScript('dpd-workerd', config, pid_file, STOP_TIMEOUT='1')
    assert init('start')[0] == 0
    wait_until(lambda: os.path.exists(ready))
    daemon, child = read_pid(pid_file), pids_with(workdir.marker)
    code, out = init('stop')
    assert code == 0 and 'still runs after 1 s: TERM again' in out, out
    assert 1 <= init.elapsed < 10
    wait_until(lambda: dead(daemon), timeout=1)
    assert not [c for c in child if pid_alive(c)]


@needs_root
def test_init_script_quit_then_start_keeps_the_processes(workdir, reaper):
    """The README's upgrade path: QUIT the worker alone, start it again."""
    config, pid_file, _ = make_config(workdir, 'dpd-workerd', [workdir.actor('a', 'sleep')])
    init = InitScript('dpd-workerd', config, pid_file)
    assert init('start')[0] == 0
    daemon = read_pid(pid_file)
    child = wait_until(lambda: pids_with(workdir.marker))
    os.kill(daemon, signal.SIGQUIT)
    wait_until(lambda: dead(daemon))
    assert init('status')[0] == 3
    assert init('start')[0] == 0
    assert pids_with(workdir.marker) == child
    assert init('stop')[0] == 0 and not pids_with(workdir.marker)


# ---------------------------------------------------------------------------
# cron

def cron_runner(name, workdir, config, fake_systemd=None):
    """Runs the file's command the way cron does: its SHELL, its PATH (with
    our commands' directory first, as init/install writes it), nothing else."""
    _, env, job = cron_file(name)
    line = job[6].replace('/var/lib/diprocd/diprocd-%s.json' % KIND[name], config)
    assert config in line
    bindir = os.path.dirname(daemon_command(name))
    environ = {'SHELL': env['SHELL'], 'HOME': '/root', 'LOGNAME': 'root',
               'PATH': render('PATH=' + env['PATH'], bindir)[len('PATH='):]}
    argv = [env['SHELL'], '-c', line]
    if fake_systemd is not None:
        # a host booted with systemd, seen from a private mount namespace
        environ['PATH'] = fake_systemd + ':' + environ['PATH']
        argv = [tool('unshare'), '-m', env['SHELL'], '-c',
                'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec "$0" -c "$1"',
                env['SHELL'], line]

    def run(**extra):
        done = subprocess.run(argv, env=dict(environ, **extra), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout + done.stderr
    return run


def stop_daemon(pid):
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: dead(pid))


@needs_root
@pytest.mark.parametrize('name', DAEMONS)
def test_cron_starts_a_dead_daemon_and_never_a_second(workdir, reaper, name):
    config, pid_file, _ = make_config(workdir, name, [workdir.actor('a', 'sleep')])
    cron = cron_runner(name, workdir, config)
    assert cron() == (0, '')
    assert cron() == (0, ''), 'silent when the daemon runs'
    pid = read_pid(pid_file)
    assert pid and daemons_of(config) == [pid] and comm(pid) == name
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: dead(pid))
    assert cron() == (0, '')
    new = read_pid(pid_file)
    assert new != pid and daemons_of(config) == [new]
    assert cron() == (0, '') and daemons_of(config) == [new]
    stop_daemon(new)
    # a start that fails speaks (cron mails it)
    with open(config, 'w') as f:
        f.write('{')
    code, out = cron()
    assert code == 78 and 'invalid JSON' in out
    assert not daemons_of(config)


@needs_root
def test_cron_leaves_a_systemd_managed_daemon_alone(workdir, reaper):
    config, pid_file, _ = make_config(workdir, 'dpd-workerd')
    fake = workdir.join('fakebin')
    os.mkdir(fake)
    calls = workdir.join('systemctl.calls')
    with open(os.path.join(fake, 'systemctl'), 'w') as f:
        f.write('#!/bin/sh\necho "$*" >>%s\n'
                'case $2 in is-enabled) exit "$ENABLED" ;; is-active) exit "$ACTIVE" ;; esac\n'
                'exit 1\n' % calls)
    os.chmod(os.path.join(fake, 'systemctl'), 0o755)
    cron = cron_runner('dpd-workerd', workdir, config, fake_systemd=fake)
    assert cron(ENABLED='0', ACTIVE='1') == (0, '')
    assert cron(ENABLED='1', ACTIVE='0') == (0, '')
    assert not daemons_of(config) and not os.path.exists(pid_file)
    assert read(calls).split('\n')[:3] == ['-q is-enabled dpd-workerd.service',
                                           '-q is-enabled dpd-workerd.service',
                                           '-q is-active dpd-workerd.service']
    assert cron(ENABLED='1', ACTIVE='3') == (0, ''), 'systemd host, unit not used: cron runs it'
    pid = wait_until(lambda: read_pid(pid_file))
    assert daemons_of(config) == [pid]
    stop_daemon(pid)


# ---------------------------------------------------------------------------
# logrotate

def numbered_lines(path):
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rt') as f:
        text = f.read()
    assert text.endswith('\n'), '%s ends with a whole line' % path
    return [int(line) for line in text.splitlines()]


def count_lines(path):
    try:
        with open(path, 'rb') as f:
            return f.read().count(b'\n')
    except FileNotFoundError:
        return 0


@needs_root
def test_logrotate_rotates_the_worker_and_its_processes_logs(workdir, reaper):
    logrotate = tool('logrotate')
    run, logs = workdir.join('run'), workdir.join('log')
    os.mkdir(logs)
    chatty = os.path.join(logs, 'chatty.log')
    config, pid_file, doc = make_config(
        workdir, 'dpd-workerd', [workdir.actor('chatty', 'chatty', 0, 0.001, logs=chatty)])
    own = doc['log_file']
    snippet = read(os.path.join(INIT, 'diprocd.logrotate'))
    assert snippet.count('/var/log/diprocd/') == 1 and '/run/diprocd/$name.pid' in snippet
    conf = workdir.join('logrotate.conf')
    with open(conf, 'w') as f:
        f.write(snippet.replace('/var/log/diprocd/', logs + '/')
                .replace('/run/diprocd/', run + '/'))
    os.chmod(conf, 0o644)

    def rotate():
        done = subprocess.run([logrotate, '-f', '-s', workdir.join('logrotate.state'), conf],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and not done.stdout + done.stderr, done.stderr

    worker = Daemon('dpd-workerd', config).start()
    try:
        wait_until(lambda: count_lines(chatty) > 300)
        rotate()
        wait_until(lambda: count_lines(chatty) > 300 and
                   'USR1: log files reopened' in read(own))
        rotate()
        wait_until(lambda: count_lines(chatty) > 300 and
                   'USR1: log files reopened' in read(own))
    finally:
        worker.stop()
    files = [chatty + '.2.gz', chatty + '.1', chatty]
    numbers = [n for path in files for n in numbered_lines(path)]
    assert numbers == list(range(len(numbers))), 'every line once, in order, across the files'
    assert sorted(os.listdir(logs)) == ['chatty.log', 'chatty.log.1', 'chatty.log.2.gz',
                                        'dpd-workerd.log', 'dpd-workerd.log.1',
                                        'dpd-workerd.log.2.gz']
    with gzip.open(own + '.2.gz', 'rt') as f:
        first = f.read()
    assert 'ready (pid %d' % worker.pid in first and 'USR1' not in first
    assert read(own + '.1').count('USR1: log files reopened') == 1
    assert read(own).count('USR1: log files reopened') == 1
    assert 'every process stopped' in read(own)
    for path in (chatty, own):
        info = os.stat(path)
        assert stat.S_IMODE(info.st_mode) == 0o640 and info.st_uid == 0


# ---------------------------------------------------------------------------
# init/install

def install(root, *options, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ('VIRTUAL_ENV', 'PYTHONPATH')}
    env['DESTDIR'] = str(root)
    done = subprocess.run([INSTALL] + list(options), env=env, cwd='/', capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def readme_section():
    text = read(os.path.join(REPO, 'README'))
    return text.split('## Install on a Debian server\n', 1)[1].split('\n## ', 1)[0]


# paths the README section names that the install step does not make
NOT_INSTALLED = ('/var/lib/diprocd/diprocd-worker.json', '/etc/cron.d/', '/usr/bin/python3',
                 '/run/diprocd/dpd-workerd.pid', '/var/log/diprocd/*.log', '/tmp/root')


def check_installed_tree(root, prefix='/opt/diprocd'):
    bindir = prefix + '/bin'
    expected = {}
    for name in DAEMONS:
        expected['/etc/init.d/' + name] = 0o755
        expected['/usr/local/lib/systemd/system/%s.service' % name] = 0o644
        expected['/etc/default/' + name] = 0o644
        expected['/usr/share/doc/diprocd/cron/' + name] = 0o644
    expected['/etc/logrotate.d/diprocd'] = 0o644
    for doc in ['README', 'LICENSE'] + [os.path.basename(p) for p in
                                        glob.glob(os.path.join(REPO, 'examples', '*.example.json'))]:
        expected['/usr/share/doc/diprocd/' + doc] = 0o644
    for path, mode in expected.items():
        info = os.stat(root + path)
        assert stat.S_ISREG(info.st_mode) and stat.S_IMODE(info.st_mode) == mode, path
        text = read(root + path)
        assert UNRENDERED_BIN + 'dpd-' not in text, '%s: a path left unrendered' % path
        assert str(root) not in text, '%s names the staging directory' % path
    for directory in ('/var/lib/diprocd', '/var/log/diprocd'):
        assert stat.S_IMODE(os.stat(root + directory).st_mode) == 0o755
    for name in DAEMONS:
        assert script_default(read(root + '/etc/init.d/' + name), 'DAEMON') == \
            '%s/%s' % (bindir, name)
        unit = dict(unit_lines(read(root + '/usr/local/lib/systemd/system/%s.service' % name)))
        assert unit['ExecStart'].startswith('%s/%s -f ' % (bindir, name))
        assert '#DAEMON=%s/%s\n' % (bindir, name) in read(root + '/etc/default/' + name)
        job = cron_file(name)[2]
        cron = read(root + '/usr/share/doc/diprocd/cron/' + name)
        assert re.search(r'(?m)^PATH=%s:/usr/local/sbin:' % re.escape(bindir), cron)
        assert job[6] in cron
    # the venv, written for where it will be
    for program in DAEMONS + ('dpd-ctl',):
        script = root + bindir + '/' + program
        assert os.access(script, os.X_OK), script
        assert read(script).split('\n', 1)[0] in ('#!%s/python' % bindir,
                                                  '#!%s/python3' % bindir)
    assert str(root) not in read(root + prefix + '/pyvenv.cfg')
    assert str(root) not in read(root + bindir + '/activate')
    python = root + bindir + '/python3'
    example = root + '/usr/share/doc/diprocd/diprocd-worker.example.json'
    done = subprocess.run([python, root + bindir + '/dpd-workerd', '-t', example], cwd='/',
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and 'test is successful' in done.stdout, done.stderr
    # every path the README section names is there, or is the admin's to make
    named = [path for span in re.findall(r'`([^`\n]+)`', readme_section())
             for path in re.findall(r'(?<![\w.])(/(?:etc|usr|opt|var|run|tmp)/[^\s$)]*)', span)]
    assert len(named) > 10
    for path in named:
        if path not in NOT_INSTALLED:
            assert os.path.exists(root + path), 'the README names %s' % path
    return python


def module_file(python, module):
    done = subprocess.run([python, '-c', 'import %s; print(%s.__file__)' % (module, module)],
                          cwd='/', capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@needs_root
def test_install_with_debian_python3_zmq_into_a_staging_root(tmp_path):
    if subprocess.run(['/usr/bin/python3', '-c', 'import zmq, ensurepip'],
                      capture_output=True).returncode:
        pytest.skip('needs Debian python3 with python3-zmq and python3-venv '
                    '(bash tests/run installs them as root)')
    root = tmp_path / 'root'
    out = install(root, '--system-zmq')
    for step in ('cp /usr/share/doc/diprocd/diprocd-worker.example.json '
                 '/var/lib/diprocd/diprocd-worker.json',
                 'systemctl daemon-reload && systemctl enable --now dpd-workerd',
                 'update-rc.d dpd-workerd defaults', 'insserv dpd-workerd',
                 'cp /usr/share/doc/diprocd/cron/dpd-workerd /etc/cron.d/'):
        assert step in out, out
    python = check_installed_tree(str(root))
    assert module_file(python, 'zmq').startswith('/usr/lib/python3/dist-packages/')
    assert module_file(python, 'dpd').startswith(str(root) + '/opt/diprocd/lib/')

    # the units are enabled where systemd looks for them (offline: --root)
    systemctl = shutil.which('systemctl')
    if systemctl:
        done = subprocess.run([systemctl, '--root=%s' % root, 'enable'] + list(DAEMONS),
                              env=dict(os.environ, SYSTEMCTL_SKIP_SYSV='1'),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        for name in DAEMONS:
            link = '%s/etc/systemd/system/multi-user.target.wants/%s.service' % (root, name)
            assert os.readlink(link) == '/usr/local/lib/systemd/system/%s.service' % name

    # again: the admin's /etc/default file stays, the new one lands beside it
    mine = root / 'etc' / 'default' / 'dpd-workerd'
    mine.write_text('CONFIG=/srv/worker.json\n')
    script = root / 'etc' / 'init.d' / 'dpd-workerd'
    script.write_text('#!/bin/sh\n')
    out = install(root, '--system-zmq')
    assert mine.read_text() == 'CONFIG=/srv/worker.json\n'
    assert (root / 'etc' / 'default' / 'dpd-workerd.dpkg-dist').read_text() == \
        render(read(os.path.join(INIT, 'dpd-workerd.default')), '/opt/diprocd/bin')
    assert '/etc/default/dpd-workerd kept' in out
    assert '/etc/default/dpd-clientd (unchanged)' in out
    assert script.read_text() != '#!/bin/sh\n', 'the init scripts are replaced'


def pypi_reachable():
    try:
        socket.create_connection(('pypi.org', 443), timeout=5).close()
        return True
    except OSError:
        return False


@needs_root
def test_install_default_with_pyzmq_from_pypi(tmp_path):
    if subprocess.run(['/usr/bin/python3', '-c', 'import ensurepip'],
                      capture_output=True).returncode:
        pytest.skip('needs Debian python3 with python3-venv')
    if not pypi_reachable():
        pytest.skip('pypi.org is not reachable')
    root = tmp_path / 'root'
    install(root)
    python = check_installed_tree(str(root))
    assert module_file(python, 'zmq').startswith(str(root) + '/opt/diprocd/lib/')


def test_install_rejects_bad_usage(tmp_path):
    for argv in (['--bogus'], ['--prefix'], ['--prefix', 'relative']):
        done = subprocess.run([INSTALL] + argv, env=dict(os.environ, DESTDIR=str(tmp_path)),
                              capture_output=True, text=True, timeout=60)
        assert done.returncode in (1, 2) and done.stderr, argv
    assert not os.listdir(tmp_path)
