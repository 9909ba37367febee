"""The trainer end to end on a slice of the vendored MNIST, and its command-line errors."""
import os
import re

import imageio.v2 as imageio
import pytest

from helpers import run_main as main


@pytest.fixture(scope='module')
def pipeline(tmp_path_factory):
    """--train --center_loss, then --second_train, then --test, on 6000 training images.

    8-D features: a 2-D bottleneck needs many more steps than a test can afford to
    pass the floor below; the later stages read the size from the checkpoint. No
    shifts: they slow the first epochs (0.78 after 3 epochs on this slice, under the
    floor); test_data checks them exactly and test_precision runs with them. lr 0.01: the
    default warm-up (half an epoch) is 47 steps on this slice, too short for 0.025 at 8-D
    (the loss became NaN in epoch 1).
    """
    tmp = tmp_path_factory.mktemp('run')
    common = ['--ckpt_dir', str(tmp / 'ckpt'), '--out_dir', str(tmp / 'out'),
              '--train_samples', '6000', '--test_samples', '2000', '--use_gpu', 'False', '--shift', '0',
              '--min_epoch_steps', '0']
    # --frames 6: two frames an epoch in the first stage (one within it), three in the second
    first = main('--train', '--center_loss', '--epochs', '3', '--feature_size', '8', '--frames', '6', '--lr', '0.01',
                 *common)
    second = main('--second_train', '--epochs', '2', '--frames', '6', *common)
    test = main('--test', '--prefix', 'center-loss-second', '--knn_k', '5', *common)
    return tmp, first, second, test


def test_first_stage_learns(pipeline):
    tmp, (rc, out, err), _, _ = pipeline
    assert rc == 0, err
    last = [l for l in out.splitlines() if 'epoch  3/3' in l][0]
    softmax, center = map(float, re.search(r'test acc: softmax ([0-9.]+) center ([0-9.]+)', last).groups())
    # chance is 0.1; a pipeline with broken labels, loss or update stays near it
    assert softmax > 0.8 and center > 0.8, last
    for tag in ('best', 'last'):
        assert os.path.getsize(str(tmp / 'ckpt' / ('center-loss-%s.params' % tag))) > 0


def test_second_stage_continues_from_the_first(pipeline):
    tmp, _, (rc, out, err), _ = pipeline
    assert rc == 0, err
    assert 'second stage from' in out and 'centers frozen' in out
    assert os.path.isfile(str(tmp / 'ckpt' / 'center-loss-second-best.params'))
    assert os.path.isfile(str(tmp / 'ckpt' / 'center-loss-best.params'))  # the first stage is kept


def test_gifs_and_frames_within_epochs(pipeline):
    tmp = pipeline[0]
    out = tmp / 'out'
    within = {'center-loss': ['00.50', '01.50', '02.50'], 'center-loss-second': ['00.33', '00.67', '01.33', '01.67']}
    for prefix, epochs in (('center-loss', 3), ('center-loss-second', 2)):
        for split in ('train', 'test'):
            frames = imageio.mimread(str(out / ('%s-%s.gif' % (prefix, split))))
            assert len(frames) == 6
            assert frames[0].shape[0] > 200 and frames[0].shape[1] > 200
            names = ['%02d' % e for e in range(1, epochs + 1)] + within[prefix]
            for when in names:
                assert os.path.isfile(str(out / ('%s-%s-epoch-%s.png' % (prefix, split, when)))), when
            drawn = sorted(f for f in os.listdir(str(out)) if f.startswith('%s-%s-epoch-' % (prefix, split)))
            assert len(drawn) == 6, drawn
            # a frame within an epoch is a picture of its own, not a copy of the epoch's end
            assert (imageio.imread(str(out / ('%s-%s-epoch-%s.png' % (prefix, split, within[prefix][0])))) !=
                    imageio.imread(str(out / ('%s-%s-epoch-01.png' % (prefix, split))))).any()
        assert os.path.isfile(str(out / ('%s-curves.png' % prefix)))


def test_metrics_say_when_the_floors_were_reached(pipeline):
    import json
    out = pipeline[0] / 'out'
    first = json.load(open(str(out / 'center-loss-metrics.json')))
    assert list(first['floors']) == ['softmax >= 0.992', 'center >= 0.989']
    assert [h['epoch'] for h in first['epochs']] == [1, 2, 3]
    assert [h['images'] for h in first['epochs']] == [6000, 12000, 18000]
    seconds = [h['seconds'] for h in first['epochs']]
    assert seconds == sorted(seconds) and seconds[0] > 0
    for floor, at in first['floors'].items():  # 6,000 images and 3 epochs: not reached, or reached at an epoch
        method, value = floor.split(' >= ')
        reached = [h for h in first['epochs'] if h['test_acc_' + method] >= float(value)]
        assert at == (None if not reached else {k: reached[0][k] for k in ('epoch', 'images', 'seconds')})
    second = json.load(open(str(out / 'center-loss-second-metrics.json')))
    assert list(second['floors']) == ['center >= 0.99'] and second['stage'] == 'second'
    last_line = [l for l in pipeline[1][1].splitlines() if l.startswith('best test accuracy')][0]
    assert 'time to accuracy: softmax >= 0.992 ' in last_line and 'center >= 0.989 ' in last_line


def test_test_reports_three_methods(pipeline):
    rc, out, err = pipeline[3]
    assert rc == 0, err
    accs = dict(re.findall(r'(softmax|center|knn) (?:\(k=5\) )?accuracy ([0-9.]+)', out))
    assert set(accs) == {'softmax', 'center', 'knn'}, out
    # Chance is 0.1. After only 3 first-stage epochs on 6,000 images the centers have not
    # reached the class means (each step moves them alpha*lmbd/m = 0.4% of the way), and
    # the second stage pulls the features onto those frozen centers: its accuracy on this
    # slice sits well below the first stage's, so the floor is lower here.
    assert all(float(a) > 0.5 for a in accs.values()), out


def test_compare_draws_one_row_per_saved_run(pipeline):
    tmp = pipeline[0]
    common = ['--ckpt_dir', str(tmp / 'ckpt'), '--out_dir', str(tmp / 'out'),
              '--train_samples', '6000', '--test_samples', '2000', '--use_gpu', 'False']
    rc, out, err = main('--compare', *common)
    assert rc == 0, err
    assert 'skipping softmax' in out and '(2 rows)' in out  # no softmax run in this pipeline
    assert imageio.imread(str(tmp / 'out' / 'comparison-mnist.png')).shape[0] > 600


@pytest.mark.parametrize('args,message', [
    ([], 'nothing to do'),
    (['--train', '--epochs', '0'], 'must be > 0'),
    (['--train', '--eval_method', 'foo'], "invalid choice: 'foo'"),
    (['--train', '--prefix', '../x'], 'must be a plain name'),
    (['--train', '--use_gpu', 'maybe'], 'expected a boolean'),
    (['--export', 'x'], '--export writes the features of --test or --verify'),  # not a bare "nothing to do"
    (['--allow_changes'], 'add --resume'),
])
def test_bad_flags(args, message):
    rc, out, err = main(*args)
    assert rc == 2 and message in err and 'Traceback' not in err
    assert len(err.strip().splitlines()) == 1


def test_second_stage_without_first_says_what_to_run(tmp_path):
    rc, out, err = main('--second_train', '--ckpt_dir', str(tmp_path), '--use_gpu', 'False')
    assert rc == 2 and 'Traceback' not in err
    assert 'center-loss-best.params not found' in err and 'python main.py --train --center_loss' in err


def test_help_shows_every_default():
    import main as trainer
    parser = trainer.flags.build_parser(trainer.__doc__)
    text = parser.format_help()
    for action in parser._actions:
        if not action.option_strings or action.help == '==SUPPRESS==' or action.default is False or \
                action.dest == 'help':
            continue  # switches
        shown = parser._get_formatter()._get_help_string(action) or ''
        assert 'default' in shown, action.option_strings
    assert '--epochs EPOCHS' in text and 'default: ' in text


def test_compare_of_one_run_is_refused_with_what_to_name():
    rc, out, err = main('--compare', '--prefix', 'softmax', '--use_gpu', 'False')
    assert rc == 2 and '--compare --prefix softmax: name two runs or more' in err and 'Traceback' not in err
