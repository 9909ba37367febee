"""Start MXNet's parameter-server processes and N workers on this machine.

    python -m devices.launch -n 2 -- python main.py --train --center_loss --kvstore dist_sync

starts one scheduler, ``-s`` servers (default 1) and ``-n`` workers, all on
127.0.0.1, through the DMLC_* environment variables MXNet reads. Each worker
runs the command after ``--``; the first worker (rank 0) alone writes
checkpoints and pictures. If a worker fails or the time runs out, every process
is stopped (none is left waiting in a reduction) and the exit status says so:
the failed worker's own (128 + N for a worker killed by signal N), 124 on the
time limit. SIGTERM or Ctrl-C to launch.py is passed on to every process, and
it exits 143 or 130 once they have stopped. On several machines, set the same
variables by hand (docs/devices.md).
"""
import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

from faults.signals import stopped, stops_handled

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The scheduler and servers are plain `import mxnet` with a DMLC_ROLE: MXNet then
# runs the server loop and exits when the workers are done.
SERVE = [sys.executable, '-c', 'from devices import compat; import mxnet']


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with(parent):
    """What each child runs before its command: the kernel sends it SIGKILL when launch.py dies,
    however it dies (even by SIGKILL, which launch.py cannot catch to stop them itself), so no
    scheduler, server or worker is left behind waiting for the others."""
    def arm():
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # launch.py died before the line above: nobody to wait for
            os._exit(1)
    return arm


def start(cmd, env, role):
    linux = sys.platform.startswith('linux')
    return subprocess.Popen(cmd, cwd=ROOT, env=dict(env, DMLC_ROLE=role), start_new_session=True,
                            preexec_fn=die_with(os.getpid()) if linux else None)


def stop(procs):
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.time() + 10
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def exit_status(code):
    return 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell reports it


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('-n', '--num_workers', type=int, default=2)
    p.add_argument('-s', '--num_servers', type=int, default=1)
    p.add_argument('--timeout', type=float, default=None, help='seconds before everything is stopped')
    p.add_argument('command', nargs=argparse.REMAINDER, help='-- then the worker command')
    options = p.parse_args(argv)
    command = options.command[1:] if options.command[:1] == ['--'] else options.command
    if not command or options.num_workers < 1 or options.num_servers < 1:
        p.exit(2, 'launch.py: error: give -n >= 1, -s >= 1 and a command after -- (see --help)\n')

    with stops_handled():  # Ctrl-C and SIGTERM stop the workers; a second signal does not break into that
        env = dict(os.environ, DMLC_PS_ROOT_URI='127.0.0.1', DMLC_PS_ROOT_PORT=str(free_port()),
                   DMLC_NODE_HOST='127.0.0.1', DMLC_NUM_WORKER=str(options.num_workers),
                   DMLC_NUM_SERVER=str(options.num_servers))
        helpers = [start(SERVE, env, 'scheduler')] + [start(SERVE, env, 'server') for _ in range(options.num_servers)]
        workers = [start(command, env, 'worker') for _ in range(options.num_workers)]
        deadline = None if options.timeout is None else time.time() + options.timeout
        status = 0
        try:
            # poll every worker each time (any() would stop at the first one alive and
            # never notice a later one that died)
            while not all([w.poll() is not None for w in workers]):
                failed = [exit_status(w.returncode) for w in workers if w.returncode not in (None, 0)]
                if failed:
                    print('launch.py: a worker exited with status %d; stopping the others' % failed[0], file=sys.stderr)
                    status = failed[0]
                    break
                if deadline is not None and time.time() > deadline:
                    print('launch.py: still running after %gs; stopping' % options.timeout, file=sys.stderr)
                    status = 124
                    break
                time.sleep(0.2)
            else:
                status = next((exit_status(w.returncode) for w in workers if w.returncode), 0)
                for h in helpers:  # they leave once the workers have said goodbye
                    try:
                        h.wait(20)
                    except subprocess.TimeoutExpired:
                        pass
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (faults.signals.Terminated)
            status = stopped(e)[1]
        finally:
            stop(workers + helpers)
        return status


if __name__ == '__main__':
    sys.exit(main())
