"""Before a run writes anything: its output folders checked and made, and the lock that keeps two
runs of one prefix apart."""
import fcntl
import os
import socket
import sys
import tempfile
import time

from faults.errors import UserError


def writable_folder(path, flag):
    """Make ``path`` a folder this run can write in, or say why not, before any training starts."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError('%s %s: not a folder (a file is in the way)' % (flag, path))
    try:
        os.makedirs(path, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix='.write-test-')
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise UserError('%s %s: cannot write there (%s)' % (flag, path, e.strerror or e))


_LOCKS = []  # open lock files: each holds its flock until this process ends


def lock_run(files):
    """Take the lock of this run (its checkpoint folder and first-stage prefix) for as long as the
    process lives, or stop if another process holds it. An OS lock (flock) dies with its holder,
    whatever kills it, on any machine that shares the folder."""
    path = os.path.join(files.ckpt_dir, '.%s.lock' % files.first().prefix)
    f = open(path, 'a+')
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or 'another process'
        f.close()
        raise UserError('%s is in use by %s: two runs of one prefix would overwrite each other\'s checkpoints '
                        'and pictures; wait for it, or use another --prefix or --ckpt_dir'
                        % (path, holder))
    f.seek(0)
    f.truncate()
    f.write('pid %d on %s, started %s: python main.py %s' % (os.getpid(), socket.gethostname(),
                                                              time.strftime('%Y-%m-%d %H:%M:%S'),
                                                              ' '.join(sys.argv[1:])))
    f.flush()
    _LOCKS.append(f)
    return path


def unlock_all():
    """Give up this process's locks (main() when its command is done; the OS would at exit)."""
    while _LOCKS:
        _LOCKS.pop().close()
