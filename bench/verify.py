"""Time and peak memory of --verify's figures (verification.verify, both metrics) on synthetic features.

    python bench/verify.py [--cases 4861x5,10000x10] [--dim 2]

Each case NxK is N features of K classes (the sizes of MNIST's test images of
digits 5 to 9, and of all of them) and runs in a process of its own, so that
its peak memory (ru_maxrss, the features and MXNet-free numpy only) is its
own. Prints the CPU first: the figures depend on it.
"""
import argparse
import os
import platform
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_model():
    try:
        with open('/proc/cpuinfo') as f:
            return next(l.split(':', 1)[1].strip() for l in f if l.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or 'unknown CPU'


def one_case(n, classes, dim):
    sys.path.insert(0, ROOT)
    import numpy as np
    import verification
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
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--cases', default='4861x5,10000x10')
    p.add_argument('--dim', type=int, default=2)
    p.add_argument('--one', default=None, help=argparse.SUPPRESS)  # a single case, in this process
    args = p.parse_args()
    if args.one:
        n, k = map(int, args.one.split('x'))
        return one_case(n, k, args.dim)
    print('%s, %d cores; all pairs, exact, both metrics, plus the LFW-style folds' % (
        cpu_model(), len(os.sched_getaffinity(0))))
    for case in args.cases.split(','):
        subprocess.run([sys.executable, os.path.abspath(__file__), '--one', case, '--dim', str(args.dim)], check=True)


if __name__ == '__main__':
    main()
