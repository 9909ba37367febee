"""--precision: the measured choice of auto, its cache, the precision a continued stage keeps, and the errors."""
import io
import dataclasses
import json
import os
import re

import mxnet as mx
import pytest

from devices import compat
import models
from devices import precision
from devices import runtime
from runs.checkpoints import Checkpoint
from helpers import QUICK, a_meta, dirs, run_main
from faults.errors import UserError

ONE_EPOCH = ['--train', '--center_loss', '--epochs', '1'] + QUICK
ARCH = models.Arch('lenet++', 'leaky', 2, 10)
SPEC = dict(dataclasses.asdict(ARCH), batch_size=128)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / 'cpuinfo'
    info.write_text('processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n')
    assert compat.cpu_flags(str(info)) == {'fpu', 'sse2', 'avx512f', 'avx512_bf16'}
    assert compat.cpu_flags(str(tmp_path / 'missing')) == set()
    assert compat.cpu_has_bf16({'avx512f', 'avx512_bf16'}) and compat.cpu_has_bf16({'amx_bf16'})
    assert not compat.cpu_has_bf16({'avx512f', 'avx2'})


@pytest.mark.parametrize('bf16,fp32,expected', [(1709, 984, 'bfloat16'), (467, 692, 'float32'),
                                                (110, 100, 'bfloat16'), (109.9, 100, 'float32'),
                                                (100, 100, 'float32')])
def test_bfloat16_only_when_ten_percent_faster(bf16, fp32, expected):
    assert precision.decide({'bfloat16': bf16, 'float32': fp32}) == expected


class FakeTimer(object):
    """Stands in for the child processes: each candidate's rate in each round, and a count of the
    measurements (one per candidate and call)."""

    def __init__(self, **rounds):
        self.rounds, self.calls = rounds, []

    def __call__(self, spec):
        self.calls += [(candidate, spec['batch_size']) for candidate in self.rounds]
        return {p: list(r) if isinstance(r, (list, tuple)) else [r] * 3 for p, r in self.rounds.items()}


def test_auto_measures_once_then_reads_the_cache(tmp_path):
    path = str(tmp_path / 'cache' / 'precision.json')
    timer = FakeTimer(bfloat16=1500.0, float32=900.0)
    first = precision.choose(SPEC, measure=timer, path=path)
    assert first[:4] == ('bfloat16', {'bfloat16': 1500.0, 'float32': 900.0}, 'measured', precision.cache_key(SPEC))
    assert first.spread == 1.0 and 'measured now' in precision.describe(first)
    assert sorted(timer.calls) == [('bfloat16', 128), ('float32', 128)]
    again = precision.choose(SPEC, measure=timer, path=path)
    assert again.precision == 'bfloat16' and again.how == 'cached' and len(timer.calls) == 2
    precision.choose(dict(SPEC, batch_size=64), measure=timer, path=path)  # another setting: measured anew
    assert len(timer.calls) == 4
    entries = json.load(open(path))
    assert len(entries) == 2 and all('OMP_NUM_THREADS' not in k and 'threads=' in k for k in entries)
    key = precision.cache_key(SPEC)
    assert (compat.cpu_field('model name') or '') in key and 'mxnet=1.9.1' in key and 'leaky' in key


def test_a_broken_cache_never_stops_the_choice(tmp_path):
    timer = FakeTimer(bfloat16=600.0, float32=700.0)
    garbage = tmp_path / 'garbage.json'
    garbage.write_text('{not json')
    assert precision.choose(SPEC, measure=timer, path=str(garbage)).precision == 'float32'
    blocked = tmp_path / 'a-file'
    blocked.write_text('')
    # the cache's folder is a file: nothing can be written, the choice is still made
    assert precision.choose(SPEC, measure=timer, path=str(blocked / 'precision.json')).how == 'measured'
    assert len(timer.calls) == 4


def test_cache_location(monkeypatch):
    assert precision.cache_path({'CENTER_LOSS_CACHE': '/x'}) == '/x/precision.json'
    assert precision.cache_path({'XDG_CACHE_HOME': '/c'}) == '/c/center-loss-gluon/precision.json'
    home = os.path.expanduser('~')
    assert precision.cache_path({}) == os.path.join(home, '.cache', 'center-loss-gluon', 'precision.json')


def choose(flags, ctxs=(mx.cpu(),), source=None, **kwargs):
    """runtime.choose_precision with the plain values the command line ``flags`` would give it."""
    asked = flags[flags.index('--precision') + 1] if '--precision' in flags else 'auto'
    return runtime.choose_precision(asked, list(ctxs), ARCH, 128, source, '--resume' in flags,
                                    '--train' in flags or '--second_train' in flags, **kwargs)[:2]


def test_auto_measures_only_where_bfloat16_can_run(monkeypatch):
    def no_measurement(*args, **kwargs):
        raise AssertionError('measured')
    monkeypatch.setattr(precision, 'choose', no_measurement)
    monkeypatch.setattr(compat, 'cpu_has_bf16', lambda flags=None: False)
    assert choose(['--train'])[0] == 'float32'
    monkeypatch.setattr(compat, 'cpu_has_bf16', lambda flags=None: True)
    assert choose(['--train'], ctxs=[mx.gpu(0)])[0] == 'float32'  # no GPU is touched: only its type is read
    assert choose(['--train', '--precision', 'float32']) == ('float32', 'asked for')
    assert choose(['--train', '--precision', 'bfloat16']) == ('bfloat16', 'asked for')
    assert choose(['--train'], may_measure=False) == (None, '')  # a worker but the first: rank 0 decides


def test_auto_takes_the_measured_choice_and_says_both_rates(monkeypatch):
    monkeypatch.setattr(compat, 'cpu_has_bf16', lambda flags=None: True)
    choice = precision.Choice('float32', {'bfloat16': 467.0, 'float32': 692.0}, 'measured', 'k', 'now', 1.02)
    monkeypatch.setattr(precision, 'choose', lambda spec: choice)
    chosen, why = choose(['--train'])
    assert chosen == 'float32' and 'bfloat16 467' in why and 'float32 692' in why and '1.10x' in why


def ckpt(recorded):
    return Checkpoint('ck/center-loss-last.params', {}, a_meta(1, precision=recorded))


def test_a_continued_stage_keeps_the_recorded_precision(monkeypatch):
    monkeypatch.setattr(precision, 'choose', lambda spec: precision.Choice(
        'float32', {'bfloat16': 1.0, 'float32': 1.0}, 'measured', 'k', 'now', 1.0))
    monkeypatch.setattr(compat, 'cpu_has_bf16', lambda flags=None: True)
    assert choose(['--train', '--resume'], source=ckpt('bfloat16'))[0] == 'bfloat16'
    assert choose(['--second_train'], source=ckpt('bfloat16'))[0] == 'bfloat16'
    assert choose(['--train', '--resume'], source=ckpt('float32'))[0] == 'float32'
    with pytest.raises(UserError, match='was trained in bfloat16: resume it without --precision float32'):
        choose(['--train', '--resume', '--precision', 'float32'], source=ckpt('bfloat16'))
    monkeypatch.setattr(compat, 'cpu_has_bf16', lambda flags=None: False)
    with pytest.raises(UserError, match='no bfloat16 instructions.*was trained in bfloat16'):
        choose(['--train', '--resume'], source=ckpt('bfloat16'))
    assert choose(['--test'], source=ckpt('bfloat16'))[0] == 'float32'  # evaluation only: it may
    monkeypatch.setattr(compat, 'cpu_has_bf16', lambda flags=None: True)
    assert choose(['--test'], ctxs=[mx.gpu(0)], source=ckpt('bfloat16')) == (
        'float32', 'ck/center-loss-last.params records bfloat16, which runs on the CPU only')  # a GPU: it may too
    with pytest.raises(UserError, match='for the CPU'):
        choose(['--second_train'], ctxs=[mx.gpu(0)], source=ckpt('bfloat16'))


def test_bfloat16_where_it_cannot_run_is_a_clear_error(monkeypatch):
    with pytest.raises(UserError, match='for the CPU'):
        choose(['--train', '--precision', 'bfloat16'], ctxs=[mx.gpu(0)])
    monkeypatch.setattr(compat, 'cpu_has_bf16', lambda flags=None: False)
    with pytest.raises(UserError, match='no bfloat16 instructions'):
        choose(['--train', '--precision', 'bfloat16'])


def test_one_candidate_measured_for_real():
    """The child that times a candidate runs and reports a rate (float32: every CPU has it)."""
    from training import probe
    rate = probe.measure_steps('float32', 'lenet', 'relu', 16, 2, 10, warmup=1, steps=2)
    assert rate > 0


def test_a_busy_moment_slows_both_candidates_alike():
    """Timed in turn, a load that comes and goes falls on both candidates of a round: the medians
    still say float32, where one candidate timed while the machine was busy would have said bfloat16."""
    timer = FakeTimer(float32=[380.0, 660.0, 670.0], bfloat16=[270.0, 455.0, 460.0])  # round 1 busy
    choice = precision.choose(SPEC, measure=timer, path=os.devnull + '/none/precision.json')
    assert choice.precision == 'float32' and choice.rates == {'float32': 660.0, 'bfloat16': 455.0}
    assert precision.decide({'bfloat16': 442.0, 'float32': 366.0}) == 'bfloat16'  # what one busy float32 gave


def test_the_candidates_are_timed_in_turn(monkeypatch):
    """measure_in_turn asks each child for a round in turn (the order flipped each round) and gives
    each candidate's rates by round; a child that fails is one error naming the candidate."""
    asked = []

    class Child(object):
        def __init__(self, cmd, **kwargs):
            self.precision, self.fail = cmd[4], 'fail' in cmd[5]  # python -m training.probe --serve P MODEL
            self.stdin, self.stderr = self, io.StringIO('Error: no such model\n')
            self.stdout = self

        def write(self, text):
            asked.append((self.precision, text.strip()))

        def flush(self):
            pass

        def readline(self):
            return '' if self.fail else ('100\n' if self.precision == 'float32' else '200\n')

        def close(self):
            pass

        def wait(self, timeout=None):
            return 0
    monkeypatch.setattr(precision.subprocess, 'Popen', Child)
    monkeypatch.setattr(precision, 'PAUSE', 0)
    rates = precision.measure_in_turn(SPEC, rounds=3)
    assert rates == {'float32': [100.0] * 3, 'bfloat16': [200.0] * 3}
    assert [a for a in asked if a[1] == 'go'] == [('float32', 'go'), ('bfloat16', 'go'), ('bfloat16', 'go'),
                                                   ('float32', 'go'), ('float32', 'go'), ('bfloat16', 'go')]
    with pytest.raises(RuntimeError, match='measuring float32 failed: Error: no such model'):
        precision.measure_in_turn(dict(SPEC, model='fail'), rounds=1)


def test_a_cached_choice_far_from_what_the_run_sees_either_way_is_said_and_forgotten(tmp_path):
    path = str(tmp_path / 'precision.json')
    timer = FakeTimer(bfloat16=442.0, float32=366.0)
    precision.choose(SPEC, measure=timer, path=path)
    cached = precision.choose(SPEC, measure=timer, path=path)
    assert cached.how == 'cached' and cached.precision == 'bfloat16' and cached.when
    described = precision.describe(cached)
    assert described.startswith('cached, measured %s: bfloat16 442, float32 366' % cached.when)
    assert 'rounds within 0%' in described
    assert precision.check_cached(cached, 'bfloat16', 300.0, 100, path) is None  # a loop somewhat slower: fine
    assert precision.check_cached(cached, 'bfloat16', 100.0, 49, path) is None  # 49 steps: too short to say
    assert precision.check_cached(cached, 'bfloat16', 800.0, 100, path) is None  # somewhat faster: fine
    note = precision.check_cached(cached, 'bfloat16', 200.0, 100, path)
    assert 'under half the 442' in note and 'next run measures again' in note
    assert precision.choose(SPEC, measure=timer, path=path).how == 'measured' and len(timer.calls) == 4
    # what the issue saw: measured under load at 66 images/s, the machine alone trains at 467
    loaded = FakeTimer(bfloat16=[81.0, 67.0, 56.0], float32=[50.0, 66.0, 73.0])
    other = dict(SPEC, batch_size=64)
    precision.choose(other, measure=FakeTimer(bfloat16=67.0, float32=66.0), path=path)
    cached = precision.choose(other, measure=loaded, path=path)
    note = precision.check_cached(cached, cached.precision, 467.0, 100, path)
    assert 'over twice the 6' in note and 'measures again' in note
    assert precision.choose(other, measure=FakeTimer(bfloat16=800.0, float32=467.0), path=path).precision == 'bfloat16'
    assert precision.check_cached(None, 'float32', 1.0, 100, path) is None


def test_rounds_that_disagree_are_used_for_the_run_and_not_cached(tmp_path):
    """81, 67, 56 against 36, 66, 73 images/s: rounds 2x apart say the machine was busy; the median's choice
    is used, said to be unsure, and the next run measures again."""
    path = str(tmp_path / 'precision.json')
    timer = FakeTimer(bfloat16=[81.0, 67.0, 56.0], float32=[36.0, 66.0, 73.0])
    first = precision.choose(SPEC, measure=timer, path=path)
    assert first.how == 'unsure' and first.spread == pytest.approx(73.0 / 36.0) and not os.path.exists(path)
    assert 'rounds differ by 103%' in precision.describe(first) and 'not cached' in precision.describe(first)
    # each candidate's rounds within 50%, but bfloat16 ahead by 1.10x in one round and behind in the others
    split = FakeTimer(bfloat16=[600.0, 480.0, 470.0], float32=[450.0, 500.0, 520.0])
    unsure = precision.choose(SPEC, measure=split, path=path)
    assert unsure.how == 'unsure' and not os.path.exists(path)
    assert 'rounds disagree on the choice (1.10x: the machine was busy)' in precision.describe(unsure)
    # rounds 30% apart (an idle VM's own noise) that agree on the choice: cached
    calm = FakeTimer(bfloat16=[800.0, 700.0, 910.0], float32=[467.0, 470.0, 380.0])
    second = precision.choose(SPEC, measure=calm, path=path)
    assert second.how == 'measured' and second.precision == 'bfloat16' and os.path.exists(path)
    assert precision.choose(SPEC, measure=calm, path=path).how == 'cached'


def test_the_first_line_names_the_precision_used(tmp_path):
    rc, out, err = run_main(*ONE_EPOCH, *dirs(tmp_path))
    assert rc == 0, err
    first = out.splitlines()[0]
    chosen = re.search(r'context cpu\(0\), precision (float32|bfloat16) \(', first).group(1)
    if compat.cpu_has_bf16():  # measured (or cached by an earlier test): the line gives both rates
        rates = dict((p, float(r)) for p, r in re.findall(r'(bfloat16|float32) ([0-9.]+)', first.split(': ')[1]))
        assert chosen == precision.decide(rates), first
    else:
        assert chosen == 'float32' and 'no bfloat16 instructions' in first, first
    rc, out, err = run_main(*ONE_EPOCH, '--precision', 'float32', '--shift', '2', *dirs(tmp_path))
    assert rc == 0, err
    assert 'context cpu(0), precision float32 (asked for),' in out.splitlines()[0]
