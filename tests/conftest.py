"""pytest set-up only: the repository on sys.path, and MXNet imported once, quietly (helpers live in helpers.py)."""
import os
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import compat  # noqa: E402,F401  (numpy alias and thread count, before mxnet)
with warnings.catch_warnings():
    # mxnet 1.9.1 imports distutils' LooseVersion and numpy's removed financial functions
    warnings.simplefilter('ignore', DeprecationWarning)
    import mxnet  # noqa: E402,F401

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
