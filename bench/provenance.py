"""Where a bench figure comes from, written beside it: the CPU, the cores this process may use, and the
commit of the code that made it."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def provenance():
    """{'cpu': 'AMD EPYC (family 25, model 1)', 'cores': 2, 'commit': 'ff3a782'}; commit '' outside git."""
    import sys
    sys.path.insert(0, ROOT)
    import compat
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, universal_newlines=True).stdout.strip()
    return dict(cpu=compat.cpu_name(), cores=len(os.sched_getaffinity(0)), commit=commit)
