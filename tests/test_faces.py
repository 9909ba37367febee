"""Faces as the field trains them: a small synthetic set of 112x112 faces packed in insightface's layout with
a .bin, the field's networks (IR-ResNet-18, MobileFaceNet) trained for an epoch with its conventions (a random
mirror, the flip test, (x - 127.5) / 128, 512-D), then the model out of the trainer: exported (MXNet files and
ONNX, run here by onnxruntime against the trainer's own features), images embedded, two images compared."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, dirs, faces, jpeg, run_main as run

PEOPLE, EACH = 4, 8
FACE = ['--use_gpu', 'False', '--precision', 'float32', '--batch_size', '16', '--min_epoch_steps', '0',
        '--decode_workers', '1', '--no_plotting', '--epochs', '1']


def pairs_txt(people, per, folds=2):
    """LFW's format over person00..: per fold, ``per`` same pairs then ``per`` different pairs."""
    names = ['person%02d' % i for i in range(people)]
    lines = ['%d\t%d' % (folds, per)]
    for f in range(folds):
        lines += ['%s\t%d\t%d' % (names[(f + k) % people], 1 + k, 5 + k) for k in range(per)]
        lines += ['%s\t%d\t%s\t%d' % (names[(f + k) % people], 1 + k, names[(f + k + 1) % people], 2 + k)
                  for k in range(per)]
    return '\n'.join(lines) + '\n'


@pytest.fixture(scope='module')
def face_set(tmp_path_factory):
    """(the class folders of JPEG faces, the folder cli.pack made of them: train.rec, property, lfw.bin)."""
    tmp = tmp_path_factory.mktemp('faces')
    images, labels = faces(PEOPLE, EACH, seed=5)
    for i, (img, person) in enumerate(zip(images, labels)):
        folder = tmp / 'folders' / ('person%02d' % person)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ('%03d.jpg' % i)).write_bytes(jpeg(img))
    (tmp / 'pairs.txt').write_text(pairs_txt(PEOPLE, 3))
    for args in (['rec', str(tmp / 'folders'), str(tmp / 'packed')],
                 ['bin', str(tmp / 'pairs.txt'), str(tmp / 'folders'), str(tmp / 'packed' / 'lfw.bin')]):
        proc = subprocess.run([sys.executable, '-m', 'cli.pack'] + args, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    return tmp / 'folders', tmp / 'packed'


@pytest.mark.parametrize('model', ['iresnet18', 'mobilefacenet'])
def test_a_face_network_trains_exports_embeds_and_matches(face_set, model, tmp_path):
    from runs import checkpoints
    folders, packed = face_set
    rc, out, err = run('--train', '--center_loss', '--model', model, '--data_dir', str(packed), *FACE, *dirs(tmp_path))
    assert rc == 0, err
    assert "insightface's layout" in out and 'a random half mirrored' in out and 'shifts up to 0 px' in out
    assert 'lmbd 0.003' in out and 'lfw ' in out and ' flip ' in out, out
    meta = checkpoints.load_checkpoint(str(tmp_path / 'ckpt' / 'center-loss-best.params')).meta
    assert meta.run.optim.mirror and meta.run.optim.shift == 0 and meta.run.center.lmbd == 0.003
    assert (meta.run.arch.model, meta.run.arch.act, meta.run.arch.feature_size) == (model, 'prelu', 512)
    assert tuple(meta.normalisation) == pytest.approx((127.5 / 255, 128 / 255))
    pairs = meta.history[-1].pairs['lfw']
    assert {'accuracy', 'accuracy_flip', 'threshold', 'threshold_flip'} <= set(pairs)

    # --verify: the plain and the flip test's figures, and the thresholds at each FAR
    rc, out, err = run('--verify', *FACE[:2], *dirs(tmp_path))
    assert rc == 0 and '  flip cosine' in out, err
    verified = json.load(open(str(tmp_path / 'out' / 'center-loss-pairs-lfw.json')))
    threshold = verified['cosine']['threshold_at_far_0.001']
    assert -1 <= threshold <= 1 and 'threshold_at_far_0.001' in verified['flip']['cosine']

    # --embed: the features of a folder; --match: two of its images at the recorded threshold
    rc, out, err = run('--embed', str(folders / 'person00'), str(folders / 'person01'), *FACE[:2], *dirs(tmp_path))
    assert rc == 0 and 'embeddings of %d images' % (2 * EACH) in out, err
    embedded = np.load(str(tmp_path / 'out' / 'center-loss-embeddings' / 'embeddings.npz'))
    paths, feats = [str(p) for p in embedded['paths']], embedded['features']
    assert feats.shape == (2 * EACH, 512) and list(embedded['classes'][[0, -1]]) == ['person00', 'person01']
    a, b = paths[0], paths[-1]
    rc, out, err = run('--match', a, b, *FACE[:2], *dirs(tmp_path))
    assert rc == 0, err
    fa, fb = feats[0].astype(np.float64), feats[-1].astype(np.float64)
    cosine = fa @ fb / np.linalg.norm(fa) / np.linalg.norm(fb)
    verdict = 'same' if cosine > threshold else 'different'
    assert out.strip() == '%s %s: cosine similarity %.4f, threshold %.4f (at FAR 0.001 on lfw.bin, %s): %s' % (
        a, b, cosine, threshold, tmp_path / 'out' / 'center-loss-pairs-lfw.json', verdict), out

    # --export_model: the ONNX file, run by onnxruntime here, gives the trainer's features of these images
    rc, out, err = run('--export_model', str(tmp_path / 'model'), *FACE[:2], *dirs(tmp_path))
    assert rc == 0 and 'ONNX checked' in out, err
    card = json.load(open(str(tmp_path / 'model' / 'center-loss.json')))
    assert card['input']['shape'] == [None, 3, 112, 112] and card['output'] == {'features': 512, 'normalised': False}
    assert card['thresholds']['lfw.bin']['far']['0.001'] == threshold
    import onnxruntime
    from PIL import Image
    pixels = np.stack([np.asarray(Image.open(p).convert('RGB'), np.float32).transpose(2, 0, 1) for p in paths])
    session = onnxruntime.InferenceSession(str(tmp_path / 'model' / 'center-loss.onnx'),
                                           providers=['CPUExecutionProvider'])
    onnx_feats = session.run(None, {'data': pixels})[0]
    assert np.abs(onnx_feats - feats).max() <= 1e-4 * np.abs(feats).max()
    from mxnet import gluon, nd
    model_files = [str(tmp_path / 'model' / ('center-loss' + s)) for s in ('-symbol.json', '-0000.params')]
    imported = gluon.SymbolBlock.imports(model_files[0], ['data'], model_files[1])
    assert np.abs(imported(nd.array(pixels)).asnumpy() - feats).max() <= 1e-4 * np.abs(feats).max()


def test_using_a_model_says_what_is_missing_in_one_line(face_set, tmp_path):
    from helpers import assert_clean_error
    folders = face_set[0]
    assert_clean_error(run('--match', str(folders / 'person00'), *dirs(tmp_path)), 'expected 2 arguments')
    assert_clean_error(run('--embed', str(folders), '--train', *dirs(tmp_path)), '--embed', 'not with it')
    assert_clean_error(run('--embed', str(folders), *dirs(tmp_path)), 'center-loss-best.params')
    assert_clean_error(run('--far', '0.001', '--test', *dirs(tmp_path)), '--far is for --match')


def test_the_flip_test_adds_each_images_features_and_its_mirrors():
    """verify.pair_features' flip test, against the features of the mirrored files computed on their own."""
    import mxnet as mx
    import models
    from evaluation import verify
    from helpers import png
    from imagesets.pairs import PairList
    arch = models.Arch('lenet', 'relu', 3, 10, (), 1, (16, 16))
    net = models.build_net(arch, [mx.cpu()])
    images = np.random.RandomState(2).randint(0, 256, (6, 16, 16)).astype(np.uint8)
    listed = PairList('x', [('i%d' % k, png(img), None) for k, img in enumerate(images)],
                      np.arange(6).reshape(3, 2), np.array([True, False, True]), np.zeros(3, int))
    plain, flipped = verify.pair_features(net, arch, (0.5, 0.25), listed, mx.cpu())
    mirrored = verify.image_features(net, arch, (0.5, 0.25), [('m', png(img[:, ::-1].copy()), None) for img in images],
                                     mx.cpu(), '--pairs')
    np.testing.assert_allclose(flipped, plain + mirrored, rtol=1e-5, atol=1e-6)
    assert not np.allclose(mirrored, plain)
