"""Runs before ``import mxnet``: makes mxnet 1.9.1 importable on today's Pythons.

mxnet 1.9.1 still uses ``np.bool``, which numpy 1.24 removed.  On Python <= 3.11
requirements.txt pins numpy<1.24; on 3.12 only numpy 1.26 has wheels, so the
alias is restored here (it is exactly the builtin bool numpy used to alias).
"""
import numpy as np

if 'bool' not in vars(np):  # deprecated (1.20-1.23) or removed (1.24+); asking would warn
    np.bool = bool

# MXNet's CPU kernels (OpenMP) ran a LeNet++ step about 2x faster with one
# thread per available core than with the default; a value the user set wins.
import os  # noqa: E402

os.environ.setdefault('OMP_NUM_THREADS', str(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
                                             else os.cpu_count() or 1))
