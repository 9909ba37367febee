import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import compat  # noqa: E402,F401  (numpy alias and thread count, before mxnet)


def pytest_configure(config):
    # mxnet 1.9.1 imports distutils' LooseVersion and numpy's removed financial functions
    config.addinivalue_line('filterwarnings', 'ignore::DeprecationWarning')
