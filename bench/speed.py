"""Training speed of this trainer against an original-style Gluon loop and PyTorch, in one run.

    python bench/speed.py            # a 10,000-image slice of MNIST (about two minutes on 2 cores)
    python bench/speed.py --full     # the whole training set
    python bench/speed.py --prelu    # also LeNet++ with PReLU, ours and PyTorch's
    python bench/speed.py --torch ~/torch-venv/bin/python   # PyTorch from a Python of its own
    python bench/speed.py --prelu --rounds 3   # the like-for-like pairs timed 3 times each, in turn: medians

Every contender runs in a process of its own (MXNet's mixed precision and the
thread count are per process), on the same images, batch 128, LeNet++ with
2-D features, softmax + center loss; each first warms up on 20 batches, then
times one epoch:
- ours: train.build_stage and train.train_epoch, batches sliced from arrays held on the device, one
  hybridized graph per step, sums read back every 50 batches; --precision auto
  (bfloat16 convolutions on a CPU that has the instructions) and float32. The
  contenders do not augment, so the ratios use ours with --shift 0; ours at
  the defaults (2-pixel shifts) is timed on a line of its own;
- original-style (bench/original_style.py): the original Gluon port's recipe,
  started without OMP_NUM_THREADS so MXNet keeps its default thread count, as
  the original did;
- PyTorch (bench/pytorch_lenet.py, when torch is installed here or ``--torch`` names a Python that
  has it): PReLU in float32,
  the reference the speed targets were set against, and the same activation
  and precision as ours (LeakyReLU, bfloat16 autocast).
Then the ratios; each contender's arithmetic rate (FLOP_PER_IMAGE, the
forward and backward convolutions and dense layers of LeNet++, about 485 MFLOP
an image, times its images/s) beside this machine's practical float32 peak, the
rate of numpy's matrix multiply ``a @ b`` on as many threads as the trainer
uses, measured in the same run; our whole epoch (test evaluation, the two
feature-map frames and the checkpoint included) against our training loop
alone; the time of nearest-center and k-NN evaluation of 10,000 test features
against 60,000 training features; and the peak memory of a one-epoch main.py run.

On a slice, the test images and the plotted training points are the same
fraction of MNIST's (1/6 of the slice each), so the epoch ratio is the one of
a full epoch.
"""
import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.dirname(os.path.abspath(__file__))
BATCH, WARMUP = 128, 20


def lenet_flops(size=28, channels=(32, 64, 128), kernel=5, feature_size=2, classes=10):
    """FLOP of one image's training step in LeNet++: 2 per multiply-add, forward, the data
    gradient (none for the first layer, whose input needs none) and the weight gradient."""
    macs, first, c_in, side = 0, None, 1, size
    for c_out in channels:
        for _ in range(2):
            layer = side * side * c_out * c_in * kernel * kernel
            first = layer if first is None else first
            macs += layer
            c_in = c_out
        side //= 2
    dense = side * side * c_in * feature_size + feature_size * classes
    return 2 * (3 * (macs + dense) - first)


FLOP_PER_IMAGE = lenet_flops()


def matmul_rate(n=2048, repeats=10):
    """GFLOP/s of numpy's float32 matrix multiply (the BLAS numpy links, on OMP_NUM_THREADS
    threads): the best of ``repeats`` products of two n x n matrices."""
    import numpy as np
    rng = np.random.RandomState(0)
    a, b = rng.randn(n, n).astype(np.float32), rng.randn(n, n).astype(np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def _timed(f):
    tic = time.time()
    f()
    return time.time() - tic


def child(cmd, env=None):
    """Run a contender in its own process; its last stdout line is JSON."""
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, universal_newlines=True, env=env,
                         stderr=subprocess.DEVNULL if os.environ.get('BENCH_QUIET', '1') == '1' else None)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours(slice_path, precision, act, shift):
    """Run in a child (see main()): images/s of our loop and of our whole epoch."""
    sys.path.insert(0, ROOT)
    from devices import compat  # noqa: F401  (before mxnet)
    import dataclasses
    import numpy as np
    import mxnet as mx
    from devices import precision as precision_mod
    from devices import runtime
    from evaluation import predict
    from imagesets import dataset as data_mod
    from runs import records
    from runs.files import RunFiles
    from runs.meta import Run
    from training import epoch as epoch_mod
    from training import saves
    from training import stage as stage_mod
    import utils

    # batch 128 for every contender; one frame an epoch (frames within epochs are timed by the training runs);
    # a constant rate of 0.01: the rate does not change the time of a step, and the default warm-up and
    # cosine, laid out for 60,000 images, made the PReLU network's loss NaN on this slice
    tmp = tempfile.mkdtemp()
    optim = records.Optim(batch_size=BATCH, lr=0.01, lr_schedule='step', shift=int(shift), min_epoch_steps=0)
    run = Run(records.Arch('lenet++', act, 2, 10), optim=optim, center=records.Center(center_loss=True),
              output=records.Output(out_dir=tmp, frames=1))
    ctxs = [mx.cpu()]
    chosen, why, _ = runtime.choose_precision(precision, ctxs, run.arch, BATCH)
    rt = runtime.Runtime(ctxs, chosen, None, 0, 1, '', why, None, 'device')
    if rt.precision == 'bfloat16':
        precision_mod.enable_bfloat16()
    arrays = np.load(slice_path)
    images, labels = arrays['images'], arrays['labels']
    n = len(labels)
    test_img, test_lbl = utils.load_split(utils.find_data('mnist', download=False), 'test')
    test_img, test_lbl = test_img[:n // 6], test_lbl[:n // 6]   # MNIST's 10,000 : 60,000
    raw = data_mod.Raw(records.Data('mnist', slice_path), None, slice_path, utils.CLASS_NAMES['mnist'],
                       (1, (28, 28)), (images, labels), (test_img, test_lbl), None, [], [])
    with contextlib.redirect_stdout(io.StringIO()):  # its "data:" line
        data = data_mod.load(raw, run.arch, rt)
    stage = stage_mod.build_stage('first', run, rt, data, RunFiles(tmp, tmp, 'bench'), None)
    drawn = stage_mod.drawn_sets(data, optim.seed, 2, rt, plot=n // 6)  # MNIST's 10,000 plotted : 60,000
    stage = dataclasses.replace(stage, **dict(zip(stage_mod.DRAWN, drawn)))

    # warm up on a few batches: the epoch keeps the features of those images alone
    warm = data._replace(train_x=data.train_x.subset(np.arange(WARMUP * BATCH)), train_y=data.train_y[:WARMUP * BATCH])
    epoch_mod.train_epoch(dataclasses.replace(stage, reference=np.arange(WARMUP * BATCH)), rt, warm, 1, False)
    predict.forward_all(stage.net, data.test_x)[1].wait_to_read()

    tic = time.time()
    sums, seen, gathered, _ = epoch_mod.train_epoch(stage, rt, data, 1, False)
    loop = time.time() - tic
    # the rest of an epoch of training.stage.run_stage: evaluation, two frames, the checkpoint
    record, centers = stage_mod.evaluate_epoch(stage, rt, data, 1, sums / seen, gathered)
    stage.frames.draw(1, (stage.drawn, stage.drawn_y, record.train_acc),
                      (stage.test_features, stage.test_drawn_y, record.test_acc_softmax), centers.asnumpy())
    stage.history.append(record)
    saves.save_epoch(stage, rt, data, record, centers, 'mnist')
    whole = time.time() - tic
    return dict(loop=n / loop, epoch=n / whole, ratio=whole / loop, precision=rt.precision, why=rt.why)


def evaluation_times():
    sys.path.insert(0, ROOT)
    from devices import compat  # noqa: F401  (before mxnet)
    import numpy as np
    from mxnet import nd
    from evaluation import predict as evaluation
    rng = np.random.RandomState(0)
    gallery = nd.array(rng.randn(60000, 2))
    gallery_labels = nd.array(rng.randint(0, 10, 60000))
    queries, centers = nd.array(rng.randn(10000, 2)), nd.array(rng.randn(10, 2))
    nd.waitall()
    tic = time.time()
    evaluation.predict_center(queries, centers).asnumpy()
    center_s = time.time() - tic
    tic = time.time()
    evaluation.predict_knn(queries, gallery, gallery_labels, 10).asnumpy()
    return dict(center=center_s, knn=time.time() - tic)


def peak_memory(n):
    """Peak resident memory (MiB) of `main.py --train --center_loss --epochs 1` on n images."""
    # measured by a fresh process of its own: RUSAGE_CHILDREN is the maximum over
    # every child waited for, and the contenders above already ran as children
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, os.path.join(ROOT, 'main.py'), '--train', '--center_loss', '--epochs', '1',
               '--train_samples', str(n), '--use_gpu', 'False', '--ckpt_dir', tmp, '--out_dir', tmp]
        probe = ('import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, '
                 'stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); '
                 'print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)')
        out = subprocess.run([sys.executable, '-c', probe] + cmd, check=True, stdout=subprocess.PIPE,
                             universal_newlines=True)
    return int(out.stdout.split()[-1]) / 1024.0  # KiB -> MiB


def main():
    sys.path.insert(0, ROOT)
    from cli.flags import Parser, number
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--full', action='store_true', help='the whole training set instead of a slice')
    p.add_argument('--samples', type=number(int, at_least=BATCH, at_most=60000), default=10000,
                   help='training images without --full (a batch at least)')
    p.add_argument('--prelu', action='store_true', help='also time LeNet++ with PReLU (ours and PyTorch)')
    p.add_argument('--rounds', type=number(int, at_least=1), default=1,
                   help='time the like-for-like pairs (ours and PyTorch, same activation and precision) this many '
                        'times each, in turn, and take the medians (a VM\'s rate drifts by 30%% between runs)')
    p.add_argument('--torch', metavar='PYTHON', default=None,
                   help='a Python interpreter that has PyTorch (default: this one, if it has torch)')
    p.add_argument('--ours', nargs=4, metavar=('SLICE', 'PRECISION', 'ACT', 'SHIFT'), help=argparse.SUPPRESS)
    p.add_argument('--eval', action='store_true', help=argparse.SUPPRESS)
    p.add_argument('--matmul', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.matmul:  # a child process, with the trainer's thread count
        from devices import compat  # noqa: F401  (OMP_NUM_THREADS: one per core)
        print(json.dumps(dict(gflops=matmul_rate(), threads=os.environ.get('OMP_NUM_THREADS'))))
    elif args.ours:  # a child process
        print(json.dumps(ours(*args.ours)))
    elif args.eval:
        print(json.dumps(evaluation_times()))
    else:
        n = 60000 if args.full else args.samples
        if args.torch and not os.access(args.torch, os.X_OK):
            p.error('--torch: %s is not an executable Python' % args.torch)
        rows = contenders(write_slice(n), args.prelu, args.torch, args.rounds)
        report(rows, n, args.prelu)


def write_slice(n):
    """The first ``n`` MNIST training images in an .npz every contender reads; the machine said first."""
    from devices import compat
    import numpy as np
    import utils
    images, labels = utils.load_split(utils.find_data('mnist', download=False), 'train')
    slice_path = os.path.join(tempfile.mkdtemp(), 'slice.npz')
    np.savez(slice_path, images=images[:n], labels=labels[:n])
    flags = compat.cpu_flags()
    print('CPU: %s, %d cores (AVX512-BF16: %s, AMX: %s, AVX512: %s); %d images, batch %d, LeNet++ 2-D features, '
          'softmax + center loss' % (compat.cpu_name() or 'unknown', len(os.sched_getaffinity(0)),
                                     'yes' if 'avx512_bf16' in flags else 'no',
                                     'yes' if 'amx_bf16' in flags else 'no', 'yes' if 'avx512f' in flags else 'no',
                                     n, BATCH), flush=True)
    return slice_path


def contenders(slice_path, prelu, torch_python=None, rounds=1):
    """{name: the child's figures} of every contender, each in a process of its own."""
    me = [sys.executable, os.path.abspath(__file__)]
    rows = {}
    # The contenders do not augment: ours is compared with --shift 0, and timed at
    # the defaults (2-pixel shifts) on its own line.
    rows['ours'] = child(me + ['--ours', slice_path, 'auto', 'leaky', '0'])
    rows['ours-defaults'] = child(me + ['--ours', slice_path, 'auto', 'leaky', '2'])
    rows['ours-fp32'] = child(me + ['--ours', slice_path, 'float32', 'leaky', '0'])
    if prelu:
        rows['ours-prelu'] = child(me + ['--ours', slice_path, 'auto', 'prelu', '0'])
    env = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}
    rows['original'] = child([sys.executable, os.path.join(HERE, 'original_style.py'), slice_path], env=env)
    import importlib.util
    if torch_python or importlib.util.find_spec('torch') is not None:
        def torch_cmd(act, precision):  # PyTorch's LeNet++ with ``act``, under bfloat16 autocast where ours is
            return [torch_python or sys.executable, os.path.join(HERE, 'pytorch_lenet.py'), slice_path,
                    '--act', act] + (['--bf16'] if precision == 'bfloat16' else [])
        rows['torch-prelu'] = child(torch_cmd('prelu', 'float32'))
        # the like-for-like pairs: ours and PyTorch's, the same activation and precision
        pairs = [(('ours', me + ['--ours', slice_path, rows['ours']['precision'], 'leaky', '0']),
                  ('torch-same', torch_cmd('leaky', rows['ours']['precision'])))]
        if prelu:
            pairs.append((('ours-prelu', me + ['--ours', slice_path, rows['ours-prelu']['precision'], 'prelu', '0']),
                          ('torch-prelu-same', torch_cmd('prelu', rows['ours-prelu']['precision']))))
        for _, (name, cmd) in pairs:
            rows[name] = child(cmd)
        for pair in pairs if rounds > 1 else []:
            rows.update(alternated(pair, rows, rounds))
    rows['peak'] = child(me + ['--matmul'])
    rows['eval'] = child(me + ['--eval'])
    return rows


def alternated(pair, rows, rounds):
    """The two contenders of ``pair`` timed again until each has ``rounds`` rates (the first pass's, then in
    turn, the order flipped each round), so that a drift of the machine's rate slows both alike: each one's
    row with the median of its rates."""
    import statistics
    rates = {name: [rows[name]['loop']] for name, _ in pair}
    for r in range(rounds - 1):
        for name, cmd in (pair if r % 2 else pair[::-1]):
            rates[name].append(child(cmd)['loop'])
    return {name: dict(rows[name], loop=statistics.median(rates[name]), loops=rates[name]) for name, _ in pair}


def report(rows, n, prelu):
    """Each contender's line, then the ratios, the evaluation's time and the peak memory."""
    peak, o, prec = rows['peak'], rows['ours'], rows['ours']['precision']
    print('float32 matrix multiply (numpy a @ b, 2048 x 2048, %s threads): %.0f GFLOP/s, the practical peak; '
          'a LeNet++ training step takes %.0f MFLOP an image' % (peak['threads'], peak['gflops'], FLOP_PER_IMAGE / 1e6))
    print('--precision auto chose %s (%s)' % (prec, o['why']))

    def line(name, rate, rest=''):  # with the step's GFLOP/s and share of the peak
        gflops = rate * FLOP_PER_IMAGE / 1e9
        print('%-44s %6.0f images/s training loop (%4.0f GFLOP/s, %.2f of the peak)%s'
              % (name, rate, gflops, gflops / peak['gflops'], rest))
    for name, row in rows.items():
        if 'loops' in row:  # the rows of --rounds: each round said, the median used below
            print('%s, %d rounds in turn: %s images/s (median %.0f)'
                  % (name, len(row['loops']), ', '.join('%.0f' % r for r in row['loops']), row['loop']))
    line('ours, leaky, %s, no shifts' % prec, o['loop'], ', %6.0f whole epoch' % o['epoch'])
    line('ours at the defaults (+ 2-px shifts)', rows['ours-defaults']['loop'],
         ', %6.0f whole epoch' % rows['ours-defaults']['epoch'])
    line('ours, leaky, float32, no shifts', rows['ours-fp32']['loop'], ', %6.0f whole epoch' % rows['ours-fp32']['epoch'])
    if prelu:
        line('ours, prelu, %s, no shifts' % rows['ours-prelu']['precision'], rows['ours-prelu']['loop'])
    line('original-style (MXNet default threads)', rows['original']['loop'],
         ', %6.0f with its training-set pass' % rows['original']['epoch'])
    if 'torch-prelu' in rows:
        line('PyTorch %s, prelu, float32' % rows['torch-prelu']['torch'], rows['torch-prelu']['loop'])
        line('PyTorch, leaky, %s' % ('bfloat16 autocast' if prec == 'bfloat16' else 'float32'),
             rows['torch-same']['loop'])
        if prelu:
            line('PyTorch, prelu, %s' % ('bfloat16 autocast' if rows['ours-prelu']['precision'] == 'bfloat16'
                                         else 'float32'), rows['torch-prelu-same']['loop'])
    else:
        print('PyTorch: not installed (pip install torch, or --torch PYTHON)')
    ratios(rows, prelu)
    print('evaluation of 10,000 test features against 60,000: nearest center %.3fs, k-NN (k=10) %.3fs (target 2s)'
          % (rows['eval']['center'], rows['eval']['knn']))
    print('peak memory of a one-epoch main.py run on %d images: %.0f MiB (target 2048)' % (n, peak_memory(n)))


def ratios(rows, prelu):
    o = rows['ours']
    print('ratio ours / original-style:                    %.2fx loop (target 2.5x), %.2fx epoch'
          % (o['loop'] / rows['original']['loop'], o['epoch'] / rows['original']['epoch']))
    if 'torch-prelu' in rows:
        print('ratio ours / PyTorch prelu float32 (the reference the targets were set on): %.2fx loop (target 1.3x)'
              % (o['loop'] / rows['torch-prelu']['loop']))
        print('ratio ours / PyTorch, same activation and precision: %.2fx loop'
              % (o['loop'] / rows['torch-same']['loop']))
        if prelu:
            print('ratio ours prelu / PyTorch prelu, same precision:    %.2fx loop'
                  % (rows['ours-prelu']['loop'] / rows['torch-prelu-same']['loop']))
    print('our whole epoch / our training loop: %.2fx (target 1.2x), %.2fx at the defaults'
          % (o['ratio'], rows['ours-defaults']['ratio']))


if __name__ == '__main__':
    main()
