"""--verify --pairs against the same figures computed directly, on MNIST's test set.

    python bench/image_sets.py --out /tmp/mnist-images --pairs 3000
    python bench/pairs_check.py --images /tmp/mnist-images --ckpt ckpt/center-loss-best.params

Runs ``main.py --verify --pairs OUT/pairs.txt --pairs_dir OUT/folder/test`` on the checkpoint (the images
read back from the PNG files, decoded by MXNet), then computes the same pairs' figures here from the IDX
test images held in memory (bench/image_sets.py names each file after its index in the IDX file), and
prints both, with the largest difference.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main():
    from cli.flags import Parser
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--images', required=True, help='the folder bench/image_sets.py wrote (with --pairs)')
    p.add_argument('--ckpt', required=True, help='a best checkpoint trained on MNIST')
    args = p.parse_args()
    if not os.path.isfile(os.path.join(args.images, 'pairs.txt')):
        p.error('--images %s holds no pairs.txt: write it with bench/image_sets.py --pairs N' % args.images)
    if not args.ckpt.endswith('-best.params'):
        p.error('--ckpt %s: expected a <prefix>-best.params checkpoint' % args.ckpt)
    from devices import compat  # noqa: F401
    import mxnet as mx
    from runs import checkpoints
    from evaluation import commands
    from evaluation import predict as evaluation
    from imagesets import images as images_mod
    from imagesets import pairs
    import utils
    from evaluation import verification
    try:
        ckpt = checkpoints.load_checkpoint(args.ckpt)
    except checkpoints.CheckpointError as e:
        p.error('--ckpt: %s' % e)
    ckpt_dir, prefix = os.path.dirname(args.ckpt), os.path.basename(args.ckpt)[:-len('-best.params')]
    out = tempfile.mkdtemp()
    folder = os.path.join(args.images, 'folder', 'test')
    cmd = [sys.executable, os.path.join(ROOT, 'main.py'), '--verify', '--prefix', prefix, '--ckpt_dir', ckpt_dir,
           '--out_dir', out, '--pairs', os.path.join(args.images, 'pairs.txt'), '--pairs_dir', folder]
    print('$ ' + ' '.join(cmd[1:]))
    subprocess.run(cmd, check=True)
    through = json.load(open(os.path.join(out, prefix + '-pairs.json')))

    listed = pairs.read_pairs(os.path.join(args.images, 'pairs.txt'), folder)
    index = np.array([int(os.path.basename(path)[:-4]) for _, _, path in listed.images])
    images, _ = utils.load_split(utils.find_data('mnist', download=False), 'test')
    mean, std = ckpt.meta.normalisation
    x = images_mod.InMemory.of(images[index], mean, std, mx.cpu())
    _, net, _ = commands.network(ckpt, [mx.cpu()])
    features = evaluation.forward_all(net, x)[1].asnumpy()
    print('the same %d pairs from the IDX test images in memory:' % len(listed.same))
    worst = 0.0
    for metric in verification.METRICS:
        direct = verification.verify_pairs(features, listed.pairs, listed.same, listed.folds, metric)
        a, b = through[metric], direct
        worst = max([worst, abs(a['auc'] - b['auc']), abs(a['eer'] - b['eer'])] +
                    [abs(u - v) for u, v in zip(a['folds']['fold_accuracies'], b['folds']['fold_accuracies'])])
        for name, r in (('--pairs', a), ('direct', b)):
            print('  %-9s %-8s AUC %.6f  EER %.6f  %d-fold accuracy %.6f +- %.6f  folds %s' % (
                metric, name, r['auc'], r['eer'], r['folds']['folds'], r['folds']['accuracy_mean'],
                r['folds']['accuracy_std'], ' '.join('%.4f' % v for v in r['folds']['fold_accuracies'])))
    print('largest difference between the two: %.2g' % worst)


if __name__ == '__main__':
    main()
