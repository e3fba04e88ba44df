"""dpd-workerd: supervises the processes of one JSON file.

Threads: the signal thread (signals, deaths), the config watcher, one output
pump per process with `logs`. The main thread runs the controller.
"""
import logging
import os
import pwd
import time

from .. import nodepolicy, procfs
from ..cli import main_for
from ..control import open_control
from ..inbox import Inbox
from ..loop import Controller, serve
from ..watcher import ConfigWatcher
from . import adoption, journal, spawn
from .config import fifo_dir, load_worker
from .events import ConfigLoaded
from .executor import Threads, WorkerExecutor
from .output import Outputs
from .policy import WorkerPolicy
from .probes import Prober
from .cgroups import Cgroups
from .reaper import Reaper
from .trees import Trees

DRAIN_SECONDS = 2.0
log = logging.getLogger('dpd')


def default_user():
    """`nobody` for a root worker, else the worker's own user (SPEC 2.2)."""
    if os.geteuid() == 0:
        return 'nobody'
    return pwd.getpwuid(os.geteuid()).pw_name


class WorkerDaemon:
    program = 'dpd-workerd'
    description = 'Supervise the processes listed in one JSON file; apply its edits at once.'
    takes_policy = True

    def __init__(self):
        self.node_policy = nodepolicy.PolicyInForce()   # run_daemon gives it --policy

    def load(self, path):
        """At start and for -t: the node policy, then the file (either bad: exit 78)."""
        self.node_policy.load()
        return self.reload(path)

    def reload(self, path):
        """The config watcher's loader: the file, under the node policy in force."""
        return load_worker(path, default_user(), root=os.geteuid() == 0,
                           policy=self.node_policy.policy)

    @staticmethod
    def own_paths(config):
        """What the worker derives from its config's path: it must own them (SPEC 5.2)."""
        return (config.state_file, journal.path_of(config.state_file), fifo_dir(config))

    def check(self, path):
        """Validate; warn about what would fail at start on this machine."""
        config = self.load(path)
        warnings = list(config.warnings)
        for spec in config.procs:
            try:
                spawn.identity(spec)
                spawn.check_paths(spec)
            except spawn.SpawnError as err:
                warnings.append('%s: %s: would fail to start: %s' % (path, spec.name, err))
        return warnings

    def serve(self, config, daemon_log, ready):
        events = Inbox()
        trees = Trees(_cgroups(config))
        reaper = Reaper(events.put, trees.oom_kills)   # the signal handlers: main thread, first
        procfs.set_child_subreaper()
        threads = Threads(reaper, Outputs(fifo_dir(config), events.put), Prober(events.put))
        watcher = ConfigWatcher(config.path, self.reload, events.put, known_sha256=config.sha256)

        def reload_config():
            self.node_policy.reload(log)
            watcher.recheck()
        executor = WorkerExecutor(reload_config, threads, trees, daemon_log, config.state_file)
        controller = Controller(WorkerPolicy(), executor, events)
        control = open_control(config, events.put)
        executor.control = control
        previous = adoption.take_over(adoption.previous_run(config.state_file), executor,
                                      config.confine)
        reaper.start()
        controller.dispatch(previous)
        controller.dispatch(ConfigLoaded(config, time.time()))
        controller.flush()
        observers = [reaper, threads.prober, watcher] + ([control] if control else [])
        finish = serve(controller, observers, ready)
        if not finish.leave_running:
            threads.outputs.drain(DRAIN_SECONDS)
            trees.close()
        return finish.code


def _cgroups(config):
    """The worker's cgroups (SPEC 6.2), or None: then processes have no cgroup, and
    one whose limits need a cgroup is `failed` saying so."""
    try:
        cgroups = Cgroups.detect(config.path)
        if cgroups is not None:
            cgroups.start()
            log.info('a cgroup per process, below %s%s', cgroups.membership.mount,
                     cgroups.base(cgroups.membership))
            return cgroups
    except OSError as err:
        log.warning('no cgroups for the processes: %s', err)
        return None
    if os.geteuid() == 0:
        log.warning('no cgroups for the processes: no writable cgroup v2 hierarchy')
    return None


main = main_for(WorkerDaemon)

if __name__ == '__main__':
    main()
