"""Starting one process: everything the executor does between Spawn and its answer.

In order: who it runs as and its paths; its cgroup limits (enforceable here,
or it cannot start); its pid file's place; its output channel; then the fork,
born in its own cgroup, with its rlimits; the pid file; the limits of its
tree; and a line in the journal, before anything else starts (SPEC 5.2).
"""
import fcntl
import logging
import os
import resource
import signal
import subprocess

from .. import procfs, safefile
from . import events as ev
from . import spawn
from .journal import SPAWN_MARK
from .trees import NoTree

CHECK_OUTPUT = 1 << 16        # a check's output waits in its pipe until it ends
log = logging.getLogger('dpd')


class Starter:
    def __init__(self, reaper, outputs, trees, journal, notifications):
        self.reaper, self.outputs, self.trees, self.journal = reaper, outputs, trees, journal
        self.notifications = notifications
        self.descriptors = spawn.DescriptorLimit()
        self.checks = {}                  # process name -> (pid, identity) of its exec check
        self.marks = {}                   # process name -> the mark of its last start
        self.birth = procfs.BirthClock()
        self.identities = spawn.Identities()

    def start(self, action):
        spec, pid_slot, output = action.spec, None, subprocess.DEVNULL
        try:
            who = self.identities.of(spec)
            spawn.check_paths(spec)
            self.trees.check(spec)
            if spec.write_pid and spec.pid_file:
                pid_slot = safefile.PidFileSlot(spec.pid_file, action.confine)
            output = self._output_fd(spec, who, action.confine)
            self.descriptors.make_room(output)
            rlimits = self._rlimits(spec)       # after make_room: it may raise our nofile
            extra_env = dict(self._notify_env(spec), **self._spawn_mark(spec))
            with self.reaper.spawning(), self.trees.born_in(spec):
                child, born = self._spawned(spec, who, output, action.confine, rlimits,
                                            extra_env)
                self.reaper.watch_child(spec.name, child)
            self._after_birth(spec, child.pid)
            if pid_slot is not None:
                _write_pid(pid_slot, child.pid)
        except (spawn.SpawnError, NoTree, OSError) as err:
            return [ev.SpawnFailed(spec.name, reason(err))]
        finally:
            if output != subprocess.DEVNULL:
                os.close(output)
            if pid_slot is not None:
                pid_slot.close()
        started = self.birth.identity(child.pid, *born)
        self._journal(spec, child.pid, started)
        return [ev.ProcessStarted(spec.name, child.pid, started, self.trees.record(spec.name))]

    def _spawn_mark(self, spec):
        """Without cgroups, a start is journaled before it happens, with a mark the
        child carries in its environment: a worker killed between the fork and the
        journal line leaves a child the next one finds by that mark and ends, so
        it never runs twice (with cgroups, the next start empties the cgroup)."""
        if self.trees.cgroups is not None:
            return {}
        mark = self.marks[spec.name] = os.urandom(8).hex()
        try:
            self.journal.record({'name': spec.name, 'spawning': mark})
        except OSError as err:
            log.error('%s: cannot write the journal %s: %s', spec.name, self.journal.path, err)
        return {SPAWN_MARK: mark}

    def _notify_env(self, spec):
        """NOTIFY_SOCKET (and WATCHDOG_USEC) for a process that says when it is ready."""
        if not spec.notify:
            return {}
        env = {'NOTIFY_SOCKET': self.notifications.ensure(spec.name)}
        if spec.watchdog is not None:
            env['WATCHDOG_USEC'] = str(int(spec.watchdog * 1e6))
        return env

    def start_check(self, action):
        """An `exec` check, run as the process runs (user, group, chroot, cwd, env,
        rlimits) in its own group, its output in a pipe the reaper reads at its end."""
        spec = action.spec
        argv = spec.health.probe.argv
        check = spec._replace(run=argv[0], args=tuple(argv[1:]))
        reader, writer = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            fcntl.fcntl(writer, fcntl.F_SETPIPE_SZ, CHECK_OUTPUT)
            who = self.identities.of(check)
            spawn.check_paths(check)
            with self.reaper.spawning():
                child, born = self._spawned(check, who, writer, action.confine,
                                            self._rlimits(spec))
                self.reaper.watch_check(spec.name, action.seq, child, reader)
        except (spawn.SpawnError, OSError) as err:
            os.close(reader)
            return [ev.CheckDone(spec.name, action.seq, False, reason(err))]
        finally:
            os.close(writer)
        self.checks[spec.name] = (child.pid, self.birth.identity(child.pid, *born))
        return []

    def _spawned(self, *args):
        """spawn.start(*args), and the clock readings around it that date the
        child's birth (BirthClock.identity, once the start is done)."""
        forked_after = self.birth.now()
        child = spawn.start(*args)
        return child, (forked_after, self.birth.now())

    def kill_check(self, name):
        """KILL a check that outlived its timeout (if it is still that process)."""
        pid, started = self.checks.pop(name, (None, None))
        if pid is not None and procfs.is_alive(pid, started):
            kill_group(pid, signal.SIGKILL)       # it leads its own group

    def _after_birth(self, spec, pid):
        """The tree's limits, and its emptiness watched. A tree that cannot be
        limited must not run: it is killed (the reaper reaps it)."""
        events_file = self.trees.events_file(spec.name)
        if events_file is None:
            return
        try:
            self.trees.apply(spec)
            self.reaper.watch_tree(spec.name, events_file)
        except OSError as err:
            self.trees.signal(spec.name, signal.SIGKILL)
            raise spawn.SpawnError('cannot set the limits of its cgroup: %s' % reason(err)) \
                from None

    def _rlimits(self, spec):
        """(name, soft, hard) for the child: its `limits`, and the worker's original
        nofile when the worker raised its own."""
        wanted = dict((name, soft) for name, soft, _ in self.descriptors.for_children())
        hard = dict((name, hard) for name, _, hard in self.descriptors.for_children())
        for name, value in (spec.limits.rlimits if spec.limits else ()):
            value = resource.RLIM_INFINITY if value == 'unlimited' else value
            _check_raisable(name, value)
            wanted[name], hard[name] = value, value
        return tuple((name, wanted[name], hard[name]) for name in sorted(wanted))

    def _output_fd(self, spec, who, confine):
        if spec.logs is None:
            return subprocess.DEVNULL
        channel = self.outputs.attach(spec.name, spec.logs, {os.geteuid(), who.uid}, confine)
        return channel.child_fd()

    def _journal(self, spec, pid, started):
        """On disk before the next start (SPEC 5.2): a `daemon: true` program is a
        launch, whose daemon is not known yet."""
        entry = {'name': spec.name, 'fingerprint': spec.fingerprint,
                 'definition': spec.public_record, 'cgroup': self.trees.record(spec.name)}
        if spec.daemon:
            entry['launch'] = [pid] + list(started or (0, 0))
        else:
            entry.update(pid=pid, started=started)
        try:
            self.journal.record(entry)
        except OSError as err:
            log.error('cannot record the start of %s in %s: %s', spec.name,
                      self.journal.path, err)


CAP_SYS_RESOURCE = 24


def _check_raisable(name, value):
    """Without CAP_SYS_RESOURCE (a worker that is not root, or root in a container
    that dropped it) a child cannot get more than the worker's own hard limit;
    nobody can give more descriptors than the kernel's fs.nr_open."""
    if name == 'nofile' and value > _nr_open():
        raise spawn.SpawnError('limits.nofile %s is above the kernel\'s limit, fs.nr_open %d'
                               % ('unlimited' if value == resource.RLIM_INFINITY else value,
                                  _nr_open()))
    if procfs.has_capability(CAP_SYS_RESOURCE):
        return
    _, hard = resource.getrlimit(getattr(resource, 'RLIMIT_' + name.upper()))
    if hard != resource.RLIM_INFINITY and (value == resource.RLIM_INFINITY or value > hard):
        raise spawn.SpawnError('limits.%s %s is above the worker\'s own hard limit %d (it '
                               'cannot raise it: no CAP_SYS_RESOURCE)'
                               % (name, 'unlimited' if value == resource.RLIM_INFINITY
                                  else value, hard))


def _nr_open():
    try:
        with open('/proc/sys/fs/nr_open') as f:
            return int(f.read())
    except (OSError, ValueError):
        return 1048576


def _write_pid(slot, pid):
    try:
        slot.write(pid)
    except OSError as err:
        kill_group(pid, signal.SIGKILL)  # it must not run unrecorded; the reaper reaps it
        raise spawn.SpawnError('cannot write pid file %s: %s' % (slot.path, reason(err))) \
            from None


def reason(err):
    """An error as a person wants to read it: "PATH: Permission denied"."""
    if isinstance(err, OSError) and err.strerror:
        return '%s: %s' % (err.filename, err.strerror) if err.filename else err.strerror
    return str(err)


def kill_group(pgid, signum):
    if pgid <= 1:
        return  # killpg(0) is our own group, killpg(1) everything init leads
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass
