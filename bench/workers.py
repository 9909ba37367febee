"""Training images/s of the first stage with 1 and 2 dist_sync workers on this machine.

    python bench/workers.py [--workers 1,2] [--train_samples 12000] [--epochs 2]

Each count runs `launch.py -n N -- main.py --train --center_loss --kvstore dist_sync`
on a slice of MNIST with OMP_NUM_THREADS = cores / N, and reports the last
epoch's training throughput of all workers together (rank 0's rate: every worker
takes a slice of every global batch).
On a 2-core machine two workers contend for the cores: the figure measures
the machinery's overhead, not a speed-up.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(workers, args):
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, '-m', 'devices.launch', '-n', str(workers), '--',
               sys.executable, os.path.join(ROOT, 'main.py'), '--train', '--center_loss', '--kvstore', 'dist_sync',
               '--epochs', str(args.epochs), '--train_samples', str(args.train_samples), '--test_samples', '1000',
               '--batch_size', str(args.batch_size // workers), '--no_plotting', '--use_gpu', 'False',
               '--ckpt_dir', tmp, '--out_dir', tmp]
        env = dict(os.environ, OMP_NUM_THREADS=str(max(1, cores // workers)))
        out = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True).stdout
    rates = re.findall(r'\((\d+) img/s\)', out)
    if not rates:
        sys.exit('bench/workers.py: the run with %d worker(s) failed:\n%s' % (workers, out))
    return int(rates[-1])  # rank 0 reports the rate of all workers together: every worker takes part in every batch


def main():
    sys.path.insert(0, ROOT)
    from cli.flags import Parser, listed, number
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--workers', type=listed(number(int, above=0)), default='1,2')
    p.add_argument('--train_samples', type=number(int, above=0), default=12000)
    p.add_argument('--epochs', type=number(int, at_least=2), default=2,
                   help='the last epoch is reported (the first warms up)')
    p.add_argument('--batch_size', type=number(int, above=0), default=128, help='global batch, split over the workers')
    args = p.parse_args()
    if any(args.batch_size < n for n in args.workers):
        p.error('--batch_size %d is split over the workers: give at least %d' % (args.batch_size, max(args.workers)))
    print('LeNet++ first stage (softmax + center loss), %d training images, global batch %d, CPU, %d cores'
          % (args.train_samples, args.batch_size, len(os.sched_getaffinity(0))))
    base = None
    for n in args.workers:
        rate = run(n, args)
        base = base or rate
        print('%d worker(s): %5d images/s  (%.2fx one worker)' % (n, rate, rate / base))


if __name__ == '__main__':
    main()
