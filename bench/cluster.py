#!/usr/bin/env python3
"""Cluster benchmark: one real dpd-masterd, N nodes, real ZeroMQ sockets on loopback.

Run it with the test venv's interpreter (it has pyzmq and the project):

    .venv-test/bin/python bench/cluster.py            # everything, 5 to 8 minutes
    .venv-test/bin/python bench/cluster.py --quick    # small sizes, a smoke test
    .venv-test/bin/python bench/cluster.py --master-only --nodes 1000 --json OUT

Nodes come in three kinds:

* real: a `dpd-clientd -f` and a `dpd-workerd -f` per node, each in its own temp dir;
* simulated (N = 200, 1000): many nodes in a few processes (`--sim-procs`). Each
  simulated node owns a DEALER socket with the options the client sets
  (`dpd.cluster.sockets.client_plans`) and its monitor, and its brain is the
  client's own: the real controller (`dpd.loop.Controller`, through `dispatch` and
  `flush`) driving the real policy (`dpd.cluster.client.ClientPolicy`): the same
  HELLO/REPORT timers, connection and epoch rules, the same STATE checks (decode, sha256, node match,
  `parse_process_list`, local policy). Only the executor is simulated: it sends on
  the node's sockets and writes its worker file with `dpd.cluster.workerfile.write`
  (fsync included unless `--fsync off`); after a write it shows the policy what a
  worker would (every process running), so REPORTs carry a realistic process table.
  It writes no client state file and runs no worker. A due deadline is a `Tick`
  dispatched by the child process's scheduler (one heap for all its nodes).
* acknowledging (`--master-only`): a DEALER per node (and its monitor) and nothing
  else: HELLO, a REPORT for every STATE, a REPORT every report interval; no validation, no
  file (see bench/clusterbench/masteronly.py for that mode's figures and JSON).

The master always is the real `dpd-masterd -f` ($DPD_MASTERD, default: the one next
to this interpreter); clients and workers come from $DPD_CLIENTD and $DPD_WORKERD
(same default). Endpoints are tcp://127.0.0.1 on two free ports below the kernel's
ephemeral range (so no reconnecting node can get the master's port as its own
source port while the master is down: a TCP self-connect). TCP, not ipc://, because
deployments use TCP and its listen backlog is what 1000 nodes reconnecting at
once meet after a master restart.

How each figure is measured (times from CLOCK_MONOTONIC, shared by all processes):

1. "master file saved -> every node's worker file updated": every node's list in
   the master file is changed (real nodes: one `sleep` added to each; simulated: an
   env value changed in every process) and the file replaced by rename. The clock
   starts just before the rename. Real nodes: inotify on each node's directory
   sees the rename of its worker file, whose `_diprocd` record then holds the new
   sha256. Simulated: the node's time right after `workerfile.write` returned.
   The figure is the time of the last node; median and p95 over `--repeat` edits.
2. "master file saved -> process running" (one real node, the others idle): one
   `sleep` with a unique argument added to that node's list; the clock stops when
   a child of its worker has exec'd it (its /proc cmdline), polled every 1 ms.
3. "client started late -> worker file written": master up; the node's worker file
   reset to {"procs": []}; a real dpd-clientd is started; clock from just before
   exec (and, second row, from its sd_notify READY=1) until inotify sees the worker
   file with the node's list. The client is stopped between runs.
4. "master killed and restarted": SIGKILL, reaped, restarted at once with the same
   file. Clock from the SIGKILL until every node has been confirmed in sync under the
   new epoch: at the nodes, the first ACK (or STATE equal to what it holds) carrying
   the new epoch; and, second row, the master's own state file listing every node
   `in-sync` (read every 25 ms). "No process restarted": simulated nodes wrote no
   worker file during the restart; real nodes: every worker child keeps its pid.
5. "master CPU / RSS, idle nodes": after a settle, the master's utime+stime (all
   threads, /proc/PID/stat) over `--window` seconds (default 30) while nodes send
   REPORTs every report interval +-20 % (10 s up to 500 nodes, N / 50 s beyond, as
   the master's ACK says; its HUGZ, for first-round clients, reach no simulated node);
   RSS is VmRSS at the end of the window; the peak
   (VmHWM) is in the JSON.

The code is in bench/clusterbench/ (its __init__ lists the modules).

Output: a markdown table on stdout, everything else (samples, counters, CPU of
the simulators, versions, load average) in the JSON (--json, default
results-raw/cluster.json). Every wait has a deadline; every process started is
stopped (SIGTERM, then SIGKILL by pid), also on Ctrl-C.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for path in (ROOT, HERE):
    if path not in sys.path:
        sys.path.insert(0, path)

from clusterbench.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
