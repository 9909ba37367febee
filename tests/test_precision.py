"""--precision: which machines get bfloat16, and the errors when it cannot run."""
import argparse
import re

import mxnet as mx
import pytest

import compat
import main as trainer
from conftest import run_main
from utils import UserError

SMALL = ['--train', '--center_loss', '--epochs', '1', '--train_samples', '600', '--test_samples', '200',
         '--use_gpu', 'False', '--no_plotting']


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / 'cpuinfo'
    info.write_text('processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu\n')
    assert compat.cpu_flags(str(info)) == {'fpu', 'sse2', 'avx512f', 'avx512_bf16'}
    assert compat.cpu_flags(str(tmp_path / 'missing')) == set()
    assert compat.cpu_has_bf16({'avx512f', 'avx512_bf16'}) and compat.cpu_has_bf16({'amx_bf16'})
    assert not compat.cpu_has_bf16({'avx512f', 'avx2'})


def args_with(precision):
    return argparse.Namespace(precision=precision)


def test_auto_is_float32_without_bfloat16_instructions(monkeypatch):
    monkeypatch.setattr(compat, 'cpu_has_bf16', lambda flags=None: False)
    args = args_with('auto')
    trainer.setup_precision(args, [mx.cpu()])
    assert args.precision == 'float32'


def test_auto_is_float32_on_a_gpu():
    args = args_with('auto')
    trainer.setup_precision(args, [mx.gpu(0)])  # no GPU is touched: only its type is read
    assert args.precision == 'float32'


def test_bfloat16_where_it_cannot_run_is_a_clear_error(monkeypatch):
    with pytest.raises(UserError, match='for the CPU'):
        trainer.setup_precision(args_with('bfloat16'), [mx.gpu(0)])
    monkeypatch.setattr(compat, 'cpu_has_bf16', lambda flags=None: False)
    with pytest.raises(UserError, match='no bfloat16 instructions'):
        trainer.setup_precision(args_with('bfloat16'), [mx.cpu()])


def test_the_first_line_names_the_precision_used(tmp_path):
    dirs = ['--ckpt_dir', str(tmp_path / 'ckpt'), '--out_dir', str(tmp_path / 'out')]
    rc, out, err = run_main(*SMALL, *dirs)
    assert rc == 0, err
    expected = 'bfloat16' if compat.cpu_has_bf16() else 'float32'
    assert re.search(r'context cpu\(0\), %s,' % expected, out.splitlines()[0]), out
    rc, out, err = run_main(*SMALL, '--precision', 'float32', '--shift', '2', *dirs)
    assert rc == 0, err
    assert 'context cpu(0), float32,' in out.splitlines()[0]
