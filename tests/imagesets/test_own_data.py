"""Your own images: image folders and RecordIO written here, streamed, trained on end to end;
pair lists (LFW's pairs.txt, insightface's .bin); and every bad input one line and exit 2."""
import json
import os

import numpy as np
import pytest
from mxnet import nd

from runs import checkpoints
from imagesets import pairs
from imagesets import decode, sources
from evaluation import verification
from helpers import FAST, Touch, assert_clean_error, bin_file, digits, dirs, lfw_lines, load_bench, \
    run_main as run, write_folder, write_rec

@pytest.fixture(scope='module')
def same_images(tmp_path_factory):
    """One set of images as a folder and as RecordIO, the records in the folder's (class) order."""
    tmp = tmp_path_factory.mktemp('own')
    splits = {'train': digits(240, 0), 'test': digits(60, 1)}
    folder = write_folder(str(tmp / 'folder'), splits)
    order = {s: np.argsort(lbl, kind='stable') for s, (_, lbl) in splits.items()}  # sorted folders: class order
    rec = write_rec(str(tmp / 'rec'), splits, order)
    return tmp, folder, rec


def last_params(folder):
    ckpt = checkpoints.load_checkpoint(os.path.join(folder, 'ckpt', 'center-loss-last.params'))
    return {k: v.asnumpy() for k, v in ckpt.arrays.items() if k.startswith('net.') or k == 'centers'}, ckpt.meta


def pack(*args):
    """python -m cli.pack as a user runs it: (exit status, stdout, stderr)."""
    import subprocess
    import sys
    from helpers import ROOT
    proc = subprocess.run([sys.executable, '-m', 'cli.pack'] + list(args), cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope='module')
def trained(same_images):
    """A first stage trained from the folder, from the RecordIO and from the folder as cli.pack packs it in
    insightface's layout: {name: (exit, stdout, stderr)}."""
    tmp, folder, rec = same_images
    packed = pack('rec', folder, str(tmp / 'packed'))
    assert packed[0] == 0, packed
    return {name: run('--train', '--center_loss', '--epochs', '2', '--data_dir', source, '--frames', '4', *FAST,
                      *dirs(tmp / ('run-' + name)))
            for name, source in (('folder', folder), ('rec', rec), ('packed', str(tmp / 'packed')))}


def test_a_folder_and_its_recordio_train_the_same_steps(same_images, trained):
    """The epoch's order comes from (seed, epoch) over the listed images; the same images in the same
    order, read from PNG files or from records, give the same batches, hence the same parameters."""
    tmp, folder, rec = same_images
    results = {}
    for name, source in (('folder', folder), ('rec', rec), ('packed', str(tmp / 'packed'))):
        rc, out, err = trained[name]
        assert rc == 0, err
        assert 'data: images from %s %s (3 classes, grey images of 16x16), 240 train / 60 test' % (
            'image folder' if name == 'folder' else 'RecordIO', source) in out, out
        results[name] = last_params(str(tmp / ('run-' + name)))
    (pf, mf), (pr, mr) = results['folder'], results['rec']
    assert mf.run.data.dataset == 'images' and mf.run.arch.image_size == (16, 16)
    assert mf.run.arch.channels == 1 and mr.run.arch == mf.run.arch  # the same network from either source
    for k in pf:
        np.testing.assert_allclose(pr[k], pf[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # packed by cli.pack in insightface's layout (header, identity records, property): the same steps again
    assert "train.rec: insightface's layout" in trained['packed'][1]
    pp, mp = results['packed']
    for k in pf:
        np.testing.assert_allclose(pp[k], pf[k], rtol=1e-5, atol=1e-6, err_msg=k)
    assert [h.test_acc_softmax for h in mp.history] == [h.test_acc_softmax for h in mf.history]
    assert mf.history[-1].test_acc_softmax > 0.9  # three easy classes: chance is 1/3
    out = tmp / 'run-folder' / 'out'
    assert os.path.getsize(str(out / 'center-loss-train.gif')) > 0
    assert (out / 'center-loss-test-epoch-01.50.png').exists()


def test_later_commands_on_a_streamed_source(same_images, trained):
    """--second_train, --test, --verify, --compare take the data from the checkpoint; --resume of a
    streamed run ends where an uninterrupted one does."""
    tmp, folder, rec = same_images
    d = dirs(tmp / 'run-folder')
    rc, out, err = run('--second_train', '--epochs', '1', *FAST, *d)
    assert rc == 0 and 'second stage from' in out, err
    rc, out, err = run('--test', '--verify', '--compare', '--knn_k', '3', *FAST, *d)
    assert rc == 0, err
    assert 'knn (k=3) accuracy' in out and 'verify center-loss' in out and 'comparison figure' in out
    b = tmp / 'resumed'
    assert run('--train', '--center_loss', '--epochs', '1', '--data_dir', folder, *FAST, *dirs(b))[0] == 0
    rc, out, err = run('--train', '--center_loss', '--epochs', '2', '--resume', '--allow_changes', *FAST, *dirs(b))
    assert rc == 0 and 'resuming center-loss after epoch 1' in out, err
    pa, _ = last_params(str(tmp / 'run-folder'))
    pb, _ = last_params(str(b))
    for k in pa:
        np.testing.assert_allclose(pb[k], pa[k], rtol=1e-4, atol=1e-5, err_msg=k)


def test_test_classes_without_training_images_are_held_out(tmp_path):
    splits = {'train': digits(90, 0, classes=3), 'test': digits(40, 1, classes=5)}
    root = write_folder(str(tmp_path / 'd'), splits, names=('a', 'b', 'c', 'd', 'e'))
    rc, out, err = run('--train', '--epochs', '1', '--data_dir', root, '--no_plotting', *FAST, *dirs(tmp_path))
    assert rc == 0, err
    assert 'of classes 0,1,2 (held out: 3,4, 16 test images)' in out, out
    rc, out, err = run('--verify', '--prefix', 'softmax', *FAST, *dirs(tmp_path))
    assert rc == 0 and 'held-out classes 3,4' in out and 'open-set AUROC' in out, err


def test_insightface_recordio_and_colour_images_with_a_resnet(tmp_path):
    splits = {'train': digits(64, 0, size=32, colour=True), 'test': digits(24, 1, size=32, colour=True)}
    root = write_rec(str(tmp_path / 'rec'), splits, insightface=True, num_classes=5)
    rc, out, err = run('--train', '--center_loss', '--epochs', '1', '--data_dir', root, '--model', 'resnet18',
                       '--feature_size', '16', '--image_size', '24', '--no_plotting', *FAST, *dirs(tmp_path))
    assert rc == 0, err
    # the classes are the labels found (0, 1, 2), not the 5 the property file allows
    assert '3 classes, colour images of 32x32' in out and 'streamed at 24x24' in out, out
    assert "insightface's layout" in out
    meta = checkpoints.load_checkpoint(str(tmp_path / 'ckpt' / 'center-loss-last.params')).meta
    arch = meta.run.arch
    assert arch.model == 'resnet18' and arch.channels == 3 and arch.image_size == (24, 24)
    assert arch.num_classes == 3


def test_lenet_at_another_size(tmp_path):
    splits = {'train': digits(60, 0, size=40, colour=True), 'test': digits(30, 1, size=40, colour=True)}
    root = write_folder(str(tmp_path / 'd'), splits)
    rc, out, err = run('--train', '--epochs', '1', '--data_dir', root, '--feature_size', '3', *FAST, *dirs(tmp_path))
    assert rc == 0 and 'colour images of 40x40' in out, err
    assert (tmp_path / 'out' / 'softmax-train.gif').exists()  # 3-D features drawn by PCA


# ----------------------------------------------------------------- pair lists

def test_pairs_txt_gives_the_figures_computed_directly(same_images, trained, tmp_path):
    tmp, folder, rec = same_images
    path = tmp_path / 'pairs.txt'
    path.write_text(lfw_lines(10, 3))
    listed = pairs.read_pairs(str(path), os.path.join(folder, 'test'))
    assert listed.pairs.shape == (60, 2) and listed.same.sum() == 30 and list(np.bincount(listed.folds)) == [6] * 10
    # the first line, "a 1 2": the first and second files of test/a in sorted order
    a = sorted(os.listdir(os.path.join(folder, 'test', 'a')))
    assert [listed.images[i][2] for i in listed.pairs[0]] == [os.path.join(folder, 'test', 'a', f) for f in a[:2]]
    rc, out, err = run('--verify', '--pairs', str(path), *FAST, *dirs(tmp / 'run-folder'))
    assert rc == 0, err
    result = json.load(open(str(tmp / 'run-folder' / 'out' / 'center-loss-pairs.json')))
    # the same figures from the features of the same images, computed here
    from evaluation import commands, verify
    ckpt = checkpoints.load_checkpoint(str(tmp / 'run-folder' / 'ckpt' / 'center-loss-best.params'))
    import mxnet as mx
    arch, net, _ = commands.network(ckpt, [mx.cpu()])
    features, flipped = verify.pair_features(net, arch, ckpt.meta.normalisation, listed, mx.cpu())
    for metric in verification.METRICS:
        direct = verification.verify_pairs(features, listed.pairs, listed.same, listed.folds, metric)
        assert result[metric]['folds']['fold_accuracies'] == pytest.approx(direct['folds']['fold_accuracies'])
        assert result[metric]['auc'] == pytest.approx(direct['auc'])
        flip = verification.verify_pairs(flipped, listed.pairs, listed.same, listed.folds, metric)
        assert result['flip'][metric]['auc'] == pytest.approx(flip['auc'])
        # and by hand, with numpy alone: each pair's score, each fold at the threshold best on the other nine
        # (every threshold between two scores tried, the lowest of the best kept)
        a, b = features[listed.pairs[:, 0]].astype(np.float64), features[listed.pairs[:, 1]].astype(np.float64)
        s = (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1)) if metric == 'cosine' else \
            -np.sqrt(((a - b) ** 2).sum(1))
        for k in range(10):
            train, same = s[listed.folds != k], listed.same[listed.folds != k]
            cuts = np.concatenate([[-np.inf], (np.sort(np.unique(train))[1:] + np.sort(np.unique(train))[:-1]) / 2,
                                   [np.inf]])
            t = cuts[int(np.argmax([((train >= c) == same).mean() for c in cuts]))]
            acc = ((s[listed.folds == k] >= t) == listed.same[listed.folds == k]).mean()
            assert direct['folds']['fold_accuracies'][k] == pytest.approx(acc)


def test_a_bin_built_from_a_pairs_txt_gives_its_figures(same_images, trained, tmp_path):
    """cli.pack bin writes a pairs.txt over a folder as insightface's .bin (10 folds: read back as 10 folds):
    --verify on it gives the pairs.txt's figures, and the flip test's."""
    tmp, folder = same_images[:2]
    (tmp_path / 'pairs.txt').write_text(lfw_lines(10, 3))
    rc, out, err = pack('bin', str(tmp_path / 'pairs.txt'), os.path.join(folder, 'test'), str(tmp_path / 'built.bin'))
    assert rc == 0 and '60 pairs (30 same) of 120 images' in out, (out, err)
    figures = {}
    for name, given in (('txt', str(tmp_path / 'pairs.txt')), ('bin', str(tmp_path / 'built.bin'))):
        rc, out, err = run('--verify', '--pairs', given, *FAST, *dirs(tmp / 'run-folder'))
        assert rc == 0, err
        figures[name] = json.load(open(str(tmp / 'run-folder' / 'out' / 'center-loss-pairs.json')))
    for metric in verification.METRICS:
        for part in (figures['txt'], figures['txt']['flip']):
            other = figures['bin'] if part is figures['txt'] else figures['bin']['flip']
            assert part[metric]['auc'] == other[metric]['auc']
            assert part[metric]['folds']['fold_accuracies'] == other[metric]['folds']['fold_accuracies']
            assert part[metric]['threshold_at_far_0.001'] == other[metric]['threshold_at_far_0.001']
    assert pack('bin', str(tmp_path / 'pairs.txt'), os.path.join(folder, 'test'), str(tmp_path / 'x.txt'))[0] == 2
    rc, out, err = pack('rec', str(tmp_path / 'nowhere'), str(tmp_path / 'p'))
    assert rc == 2 and err.strip() == 'error: %s is not a folder' % (tmp_path / 'nowhere')


def test_insightface_bin(same_images, trained, tmp_path):
    tmp = same_images[0]
    listed = pairs.read_pairs(bin_file(tmp_path / 'v.bin', 23))
    assert listed.pairs.tolist()[:2] == [[0, 1], [2, 3]] and list(np.bincount(listed.folds)) == [3, 3, 3] + [2] * 7
    rc, out, err = run('--verify', '--pairs', str(tmp_path / 'v.bin'), *FAST, *dirs(tmp / 'run-folder'))
    assert rc == 0 and '23 pairs (11 same) of 46 images' in out and '10-fold accuracy' in out, err


def test_a_crafted_bin_runs_nothing(same_images, trained, tmp_path):
    marker = tmp_path / 'ran'
    path = bin_file(tmp_path / 'evil.bin', payload=([Touch(str(marker))], [True]))
    assert_clean_error(run('--verify', '--pairs', path, *FAST, *dirs(same_images[0] / 'run-folder')),
                       'evil.bin', 'refused, nothing was run')
    assert not marker.exists()


# ----------------------------------------------------------------- bad input

def test_bad_sources(tmp_path, same_images, trained):
    folder = same_images[1]
    empty = tmp_path / 'empty'
    (empty / 'train').mkdir(parents=True)
    (empty / 'test').mkdir()
    cases = [(str(empty), ['holds no class folders'])]
    no_images = write_folder(str(tmp_path / 'noimg'), {'train': digits(30, 0), 'test': digits(9, 1)})
    os.makedirs(os.path.join(no_images, 'train', 'zebra'))
    cases.append((no_images, ['class folder', 'zebra holds no images']))
    broken = write_folder(str(tmp_path / 'broken'), {'train': digits(30, 0), 'test': digits(9, 1)})
    bad = os.path.join(broken, 'train', 'b', '0004.png')
    with open(bad, 'wb') as f:
        f.write(b'not a png at all')
    cases.append((broken, [bad, 'cannot be decoded as an image (Decoding failed. Invalid image file.)']))
    rec = write_rec(str(tmp_path / 'rec'), {'train': digits(30, 0), 'test': digits(9, 1)})
    os.remove(os.path.join(rec, 'test.idx'))
    cases.append((rec, ['test.rec has no index', 'test.idx']))
    labels = write_rec(str(tmp_path / 'labels'), {'train': digits(30, 0), 'test': digits(9, 1)}, num_classes=2)
    cases.append((labels, ['a label 2', 'outside the 2 classes']))
    for source, fragments in cases:
        assert_clean_error(run('--train', '--epochs', '1', '--data_dir', source, *FAST, *dirs(tmp_path / 'x')),
                           *fragments)
    pairs_txt = tmp_path / 'pairs.txt'
    pairs_txt.write_text('1\t1\na\t1\t999\nb\t1\tc\t1\n')
    assert_clean_error(run('--verify', '--pairs', str(pairs_txt), *FAST, *dirs(same_images[0] / 'run-folder')),
                       'line 2', 'a has no image 999')
    assert_clean_error(run('--train', '--dataset', 'images', *FAST, *dirs(tmp_path / 'x')),
                       '--dataset images needs --data_dir')
    assert_clean_error(run('--train', '--dataset', 'mnist', '--data_dir', folder, *FAST, *dirs(tmp_path / 'x')),
                       'holds image folders, not the IDX files of mnist')


def test_an_image_that_cannot_be_decoded_mid_run_keeps_the_checkpoints(tmp_path):
    """An image broken after the run started (the same size, so the data's fingerprint still matches),
    outside the 500 whose sizes are read when the folder is opened: found when its batch comes, in a
    decoding worker, and named in one line; exit 2, epoch 1 kept."""
    root = write_folder(str(tmp_path / 'd'), {'train': digits(600, 0), 'test': digits(9, 1)})
    common = ['--train', '--epochs', '1', '--data_dir', root, '--no_plotting', *FAST, *dirs(tmp_path)]
    assert run(*common)[0] == 0
    sampled = np.random.RandomState(0).choice(600, decode.SIZE_SAMPLE, replace=False)
    split = sources.open_source(root).splits['train']
    bad = split.items[next(i for i in range(600) if i not in set(sampled))]
    size = os.path.getsize(bad)
    with open(bad, 'wb') as f:
        f.write(b'\x89PNG broken'.ljust(size, b'\x00'))
    result = run(*common, '--resume', '--allow_changes', '--epochs', '3')
    assert_clean_error(result, bad, 'cannot be decoded')
    assert checkpoints.load_checkpoint(str(tmp_path / 'ckpt' / 'softmax-last.params')).meta.epoch == 1


def test_sources_read_records_exactly(tmp_path):
    imgs, labels = digits(12, 5)
    root = write_rec(str(tmp_path / 'r'), {'train': (imgs, labels), 'test': (imgs[:3], labels[:3])})
    src = sources.open_source(root)
    assert list(src.splits['train'].labels) == list(labels) and src.channels == 1 and src.size == (16, 16)
    for i in range(12):
        got = decode.decode(decode.read_bytes(src.splits['train'], i), 1, (16, 16), 'x')
        np.testing.assert_array_equal(got[0], imgs[i])
    assert nd.array(got).shape == (1, 16, 16)


def test_the_set_size_table_says_within_only_where_it_knows(capsys):
    """bench/set_sizes.py's verdict: measured against a search where one ran; where none ran, 'yes, bound'
    only when the defaults reach 0.98 (no run can be more than 0.02 above), else nothing claimed."""
    run = dict(size=300, loss='softmax', train_acc=1.0, steps=1212, nan=False, center=0.5)
    rows = [dict(run, feature_size=2, variant='defaults', softmax=0.90),
            dict(run, feature_size=2, variant='--lr 0.01', softmax=0.93),     # a search 0.03 above: no
            dict(run, feature_size=8, variant='defaults', softmax=0.95),
            dict(run, feature_size=8, variant='--lr 0.01', softmax=0.96),     # 0.01 above: yes
            dict(run, feature_size=16, variant='defaults', softmax=0.98),     # no search, at the bound
            dict(run, feature_size=32, variant='defaults', softmax=0.979)]    # no search, below it
    load_bench('set_sizes').print_table(rows)
    verdicts = {int(line.split(' | ')[1]): line.split(' | ')[-1].rstrip(' |')
                for line in capsys.readouterr().out.splitlines() if line.startswith('| 300 |')}
    assert verdicts == {2: 'no', 8: 'yes', 16: 'yes, bound', 32: '-'}
