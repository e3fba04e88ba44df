"""How the worker's policy answers operators (SPEC 6.3): `restart`, `signal`
and `logs` from its control socket.

A part of WorkerPolicy (policy.py), written apart so each reads alone. Names
are checked first: one unknown name refuses the whole request. A restart is
a stop and an uncounted start; it is answered when the new run is ready (or
has failed), found by looking at the named processes after every fact: a
process's `runs` counter tells its new run from the old one.
"""
import logging

from .. import requests
from ..policy import log_action
from . import actions as act
from . import lifecycle as lc


class PendingRestart:
    """A restart command waiting for its processes: name -> their runs before it."""

    def __init__(self, runs):
        self.runs = runs
        self.results = {}


class Commands:
    def _on_command(self, event, now, out):
        request = requests.received(event, out)
        if request is None:
            return
        refusal = self._refusal(request)
        if refusal:
            out.append(act.Reply(event.number, requests.refused(refusal)))
            return
        out.append(log_action(logging.DEBUG if request.command == 'logs' else logging.INFO,
                              'dpd-ctl %s %s (uid %d)' % (request.command,
                                                          ' '.join(request.names), event.uid)))
        {'restart': self._restart_command, 'signal': self._signal_command,
         'logs': self._logs_command}[request.command](event.number, request, now, out)

    def _refusal(self, request):
        """Why nothing at all is done for `request` (None: it can be)."""
        if request.node is not None:
            return '--node goes to the master; this is a worker'
        if self.shutting_down:
            return 'the worker is stopping'
        configured = {spec.name for spec in self.config.procs} if self.config else set()
        unknown = [name for name in request.names if name not in configured]
        if unknown:
            return 'no process %s' % ', '.join(unknown)
        if request.command == 'signal':
            idle = [self.procs[name] for name in request.names if not _signalable(
                self.procs[name])]
            if idle:
                return '; '.join('%s is not running (%s)' % (p.name, p.state) for p in idle)
        if request.command == 'logs':
            if self.procs[request.names[0]].spec.logs is None:
                return '%s has no "logs" file' % request.names[0]
        return None

    def _on_command_gone(self, event, now, out):
        self.restarting.pop(event.number, None)    # the restart goes on; nobody waits

    # ------------------------------------------------------------ restart

    def _restart_command(self, number, request, now, out):
        runs = {}
        for name in request.names:
            proc = self.procs[name]
            runs[name] = self._pending_runs(name)
            if runs[name] is None:
                runs[name] = proc.runs
                self._restart(proc, now, out)
        self.restarting[number] = PendingRestart(runs)

    def _pending_runs(self, name):
        """A restart of this process already under way (its baseline), or None."""
        for pending in self.restarting.values():
            if name in pending.runs and name not in pending.results:
                return pending.runs[name]
        return None

    def _restart(self, proc, now, out):
        if proc.state == lc.STOPPING:
            if proc.stop.then == lc.THEN_RESTART:
                proc.stop.then = lc.THEN_COMMAND      # it goes down already: not a crash
            return                                    # (THEN_START: the edit starts it)
        if proc.state in lc.ACTIVE:
            self._stop(proc, now, out, then=lc.THEN_COMMAND)
        else:
            self._start(proc, now, out, counted=False)

    def _answer_restarts(self, out):
        """After each fact: the restarts whose processes are all ready or failed."""
        for number, pending in list(self.restarting.items()):
            for name, runs in pending.runs.items():
                if name not in pending.results:
                    result = self._restart_result(name, runs)
                    if result is not None:
                        pending.results[name] = result
            if len(pending.results) == len(pending.runs):
                del self.restarting[number]
                out.append(act.Reply(number, _restart_answer(pending)))

    def _ended_before_ready(self, proc):
        """The run a restart waits for ended before it was ready: that restart failed,
        even though the process may be started again (as after any crash)."""
        for pending in self.restarting.values():
            if proc.name in pending.runs and proc.name not in pending.results and \
                    proc.runs > pending.runs[proc.name]:
                pending.results[proc.name] = {'name': proc.name, 'error': _why_not_ready(proc)}

    def _restart_result(self, name, runs_before):
        """{"name", "pid"} once the new run is ready; {"name", "error"} once it cannot
        be; None while it may still be."""
        proc = self.procs.get(name)
        configured = self.config and any(spec.name == name for spec in self.config.procs)
        if proc is None or not configured:
            return {'name': name, 'error': 'removed from the file meanwhile'}
        if self.shutting_down:
            return {'name': name, 'error': 'the worker is stopping'}
        if proc.state == lc.WAITING:
            return {'name': name, 'error': 'waiting for %s' % ', '.join(self._waits_for(proc))}
        if proc.runs == runs_before:
            return None                               # the old run is still stopping
        if proc.state == lc.RUNNING:
            return {'name': name, 'pid': proc.pid}
        if proc.state == lc.STARTING or (proc.state == lc.STOPPING and
                                         proc.stop.then == lc.THEN_START):
            return None
        return {'name': name, 'error': _why_not_ready(proc)}

    # ------------------------------------------------------------ signal, logs

    def _signal_command(self, number, request, now, out):
        results = []
        for name in request.names:
            proc = self.procs[name]
            out.append(act.SendSignal(name, proc.pid, request.signum, group=request.all))
            results.append({'name': name, 'pid': proc.pid})
        out.append(act.Reply(number, requests.done(results=results)))

    def _logs_command(self, number, request, now, out):
        spec = self.procs[request.names[0]].spec
        out.append(act.StreamLog(number, spec.logs, spec.user, request.lines, request.follow,
                                 self.confine))


def _signalable(proc):
    return proc.state in lc.ACTIVE and proc.pid is not None


def _why_not_ready(proc):
    if proc.state == lc.FAILED:
        return 'cannot start: %s' % proc.error
    if proc.state == lc.STOPPING:
        reason = proc.health.error if proc.health else None
        return 'stopped before it was ready%s' % (': unhealthy: %s' % reason if reason else '')
    if proc.error:                  # a daemon its pid file did not name in time
        return 'not ready: %s' % proc.error
    if proc.last_exit:
        return 'ended before it was ready (%s)' % lc.exit_text(proc.last_exit)
    return '%s before it was ready' % proc.state


def _restart_answer(pending):
    results = [pending.results[name] for name in pending.runs]
    failed = [r for r in results if 'error' in r]
    if failed:
        answer = requests.refused('; '.join('%s: %s' % (r['name'], r['error']) for r in failed))
        answer['results'] = results
        return answer
    return requests.done(results=results)
