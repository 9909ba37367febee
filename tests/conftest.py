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
import tempfile  # noqa: E402
os.environ.setdefault('CENTER_LOSS_CACHE', tempfile.mkdtemp(prefix='center-loss-cache-'))
