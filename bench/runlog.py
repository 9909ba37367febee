"""The bench scripts' logs: one JSON line a run, stamped with where its figures come from (the CPU, the
cores this process may use, the commit of the code), appended as each run ends and read back to print
a table from logs written in parts."""
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def provenance():
    """{'cpu': 'AMD EPYC (family 25, model 1)', 'cores': 2, 'commit': 'ff3a782'}; commit '' outside git."""
    import sys
    sys.path.insert(0, ROOT)
    from devices import compat
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, universal_newlines=True).stdout.strip()
    return dict(cpu=compat.cpu_name(), cores=len(os.sched_getaffinity(0)), commit=commit)


def ready(path):
    """Open the log ``path`` for appending once, before any run, so that one that cannot be written fails
    with OSError now and not after hours of runs (nothing without a path)."""
    if path:
        open(path, 'a').close()


def append(path, row):
    """Add ``row`` to the log ``path`` (nothing without a path)."""
    if path:
        with open(path, 'a') as f:
            f.write(json.dumps(row) + '\n')


def read(paths):
    """Every row of the logs ``paths``, in order; ValueError naming the file and line of one that is not
    a JSON object, OSError for one that cannot be read."""
    rows = []
    for path in paths:
        with open(path, 'rb') as f:
            for number, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except ValueError:
                        row = None
                    if not isinstance(row, dict):
                        raise ValueError('%s, line %d: not a JSON line of a bench log' % (path, number))
                    rows.append(row)
    return rows
