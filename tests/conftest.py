"""pytest set-up only: the repository on sys.path, MXNet imported once, quietly, and its process-wide mixed
precision kept out of this process (helpers live in helpers.py)."""
import os
import sys
import warnings

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # helpers.py, for the tests in the folders below

from devices import compat  # noqa: E402,F401  (numpy alias and thread count, before mxnet)
with warnings.catch_warnings():
    # mxnet 1.9.1 imports distutils' LooseVersion and numpy's removed financial functions
    warnings.simplefilter('ignore', DeprecationWarning)
    import mxnet  # noqa: E402,F401

# MXNet's mixed precision (amp.init) is process-wide and cannot be undone: once one test in this process
# turned it on, every later network here would compute in bfloat16 (on a CPU with AVX512-BF16, where
# --precision auto may pick it). A test trains in bfloat16 only in a child process, or passes --precision float32.
from mxnet.contrib import amp  # noqa: E402


def _no_amp_in_the_test_process(*args, **kwargs):
    raise AssertionError('amp.init was called in the pytest process: it would leave bfloat16 on for every later '
                         'test; pass --precision float32, or train in bfloat16 in a child process')


amp.init = _no_amp_in_the_test_process

# The measured choice of --precision auto is cached per machine: the tests use a
# cache of their own, so they neither write into the user's nor depend on it.
import shutil  # noqa: E402
import tempfile  # noqa: E402
OWN_CACHE = None if 'CENTER_LOSS_CACHE' in os.environ else tempfile.mkdtemp(prefix='center-loss-cache-')
if OWN_CACHE:
    os.environ['CENTER_LOSS_CACHE'] = OWN_CACHE


def pytest_configure(config):
    # MXNet 1.9.1's own code calls numpy's tostring() (recordio) and scipy.sparse.csr (ndarray.utils) on
    # every record and array it reads: hundreds of lines of warnings about code that is not ours
    config.addinivalue_line('filterwarnings', 'ignore::DeprecationWarning:mxnet')


def pytest_sessionfinish(session, exitstatus):
    if OWN_CACHE:  # the suite's own cache, not one the user named
        shutil.rmtree(OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope='module')
def idx(tmp_path_factory):
    """A tiny IDX dataset: 100 training and 200 test images of random pixels, labels 0..9."""
    from helpers import make_dataset
    return make_dataset(str(tmp_path_factory.mktemp("idx") / "d"), n_train=100, n_test=200)
