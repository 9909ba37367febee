"""Time and peak memory of --verify's figures (verification.verify, both metrics) on synthetic features.

    python bench/verify.py [--cases 4861x5,10000x10] [--dim 2]

Each case NxK is N features of K classes (the sizes of MNIST's test images of
digits 5 to 9, and of all of them) and runs in a process of its own, so that
its peak memory (ru_maxrss, the features and MXNet-free numpy only) is its
own. Prints the CPU first: the figures depend on it.
"""
import argparse
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def case(value):
    """--cases: NxK, N features of K classes, 2 <= K <= N / 2 (pairs of each kind)."""
    try:
        n, k = (int(v) for v in value.lower().split('x'))
    except ValueError:
        n = k = 0
    if not 2 <= k <= n // 2:
        raise argparse.ArgumentTypeError('expected NxK, N features of K classes with 2 <= K <= N/2, got %r' % value)
    return n, k


def one_case(n, classes, dim):
    sys.path.insert(0, ROOT)
    import numpy as np
    from evaluation import verification
    rng = np.random.RandomState(0)
    labels = rng.randint(0, classes, n)
    features = rng.randn(n, dim) + 3 * rng.randn(classes, dim)[labels]
    times = []
    for metric in verification.METRICS:
        tic = time.time()
        r = verification.verify(features, labels, metric)
        times.append(time.time() - tic)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print('%6d images, %2d classes, %d-D: %10d pairs  cosine %.1fs  euclidean %.1fs  total %.1fs  peak memory %.0f MiB'
          % (n, classes, dim, r['pairs'], times[0], times[1], sum(times), peak))


def main():
    sys.path.insert(0, ROOT)
    from devices import compat
    from cli.flags import Parser, listed, number
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cases', type=listed(case), default='4861x5,10000x10', help='NxK: N features of K classes')
    p.add_argument('--dim', type=number(int, above=0), default=2)
    p.add_argument('--one', type=case, default=None, help=argparse.SUPPRESS)  # a single case, in this process
    args = p.parse_args()
    if args.one:
        return one_case(*args.one, args.dim)
    print('%s, %d cores; all pairs, exact, both metrics, plus the LFW-style folds' % (
        compat.cpu_name(), len(os.sched_getaffinity(0))))
    for n, k in args.cases:
        subprocess.run([sys.executable, os.path.abspath(__file__), '--one', '%dx%d' % (n, k), '--dim', str(args.dim)],
                       check=True)


if __name__ == '__main__':
    main()
