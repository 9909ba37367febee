"""The CUDA set-up, tested on CPU: library discovery and load order on a fake
nvidia/*/lib tree, the requirements file `make` picks by the cards' compute
capabilities, the GPU the trainer picks, and the pins."""
import os
import re
import subprocess
import sys

import mxnet as mx
import pytest

from devices import compat
import main as trainer
from devices import runtime
from helpers import ROOT, assert_clean_error, dirs


def fake_site(tmp_path, skip=()):
    """site-packages/nvidia/<folder>/lib/<soname> for every library, as the wheels lay them out."""
    site = tmp_path / 'site-packages'
    for folder, pattern, _ in compat.CUDA_LIBS:
        if pattern in skip:
            continue
        lib = site / 'nvidia' / folder / 'lib'
        lib.mkdir(parents=True, exist_ok=True)
        (lib / pattern.replace('*', '8')).write_bytes(b'\x7fELF')
    return str(site)


def test_load_order_follows_dependencies(tmp_path):
    site = fake_site(tmp_path)
    calls = []
    compat.preload_cuda(roots=compat.nvidia_roots([site]), load=calls.append)
    assert calls[0] == 'libcuda.so.1'  # the driver first
    names = [os.path.basename(c) for c in calls[1:]]
    assert all(c.startswith(site) for c in calls[1:])
    assert names == [p.replace('*', '8') for _, p, _ in compat.CUDA_LIBS]
    before = {name: i for i, name in enumerate(names)}
    assert before['libcudart.so.11.0'] < before['libcublas.so.11']
    assert before['libcublasLt.so.11'] < before['libcublas.so.11'] < before['libcusolver.so.11']
    assert before['libcudnn_ops_infer.so.8'] < before['libcudnn_cnn_infer.so.8'] < before['libcudnn.so.8']
    assert before['libnvrtc-builtins.so.11.8'] < before['libnvrtc.so.11.2']


def test_a_library_no_wheel_has_is_left_to_the_system_linker(tmp_path):
    site = fake_site(tmp_path, skip=('libcudnn.so.8',))
    found = dict(compat.find_cuda_libs(compat.nvidia_roots([site])))
    assert 'libcudnn.so.8' in found  # bare soname: a system cuDNN may still provide it


def test_missing_library_names_it_and_its_wheel(tmp_path):
    site = fake_site(tmp_path, skip=('libcudnn.so.8',))

    def load(path):
        if not os.path.isabs(path) and path != 'libcuda.so.1':
            raise OSError('%s: cannot open shared object file: No such file or directory' % path)
    with pytest.raises(compat.CudaSetupError) as e:
        compat.preload_cuda(roots=compat.nvidia_roots([site]), load=load)
    msg = str(e.value)
    assert 'libcudnn.so.8' in msg and 'nvidia-cudnn-cu11' in msg and 'GPU=0' in msg


def test_no_driver_says_so(tmp_path):
    def load(path):
        raise OSError('no')
    with pytest.raises(compat.CudaSetupError, match='NVIDIA driver'):
        compat.preload_cuda(roots=[], load=load)


def test_cpu_build_is_not_a_cuda_build():
    if mx.runtime.Features().is_enabled('CUDA'):
        pytest.skip('the CUDA build of MXNet is installed here: this checks the CPU build')
    assert not compat.mxnet_is_cuda_build()


def test_cuda_build_is_recognised(tmp_path):
    info = tmp_path / 'mxnet_cu112-1.9.1.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: mxnet-cu112\nVersion: 1.9.1\n')
    assert compat.mxnet_is_cuda_build([str(tmp_path)])


def make_reqs(tmp_path, nvidia_smi):
    """(requirements file, stderr) that `make print-reqs` picks with ``nvidia_smi`` as the nvidia-smi script."""
    env = dict(os.environ)
    env.pop('GPU', None)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    if nvidia_smi is not None:
        tool = bin_dir / 'nvidia-smi'
        tool.write_text('#!/bin/sh\n' + nvidia_smi)
        tool.chmod(0o755)
    env['PATH'] = '%s:/usr/bin:/bin' % bin_dir
    proc = subprocess.run(['make', '-s', '-C', ROOT, 'print-reqs'], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=True)
    return proc.stdout.split()[0], proc.stderr


def fake_smi(*cards):
    """An nvidia-smi that lists ``cards`` ((name, compute capability) each) for -L and for the query."""
    listing = ''.join('echo "GPU %d: %s (UUID: GPU-%d)"; ' % (i, name, i) for i, (name, _) in enumerate(cards))
    query = ''.join('echo "%d, %s, %s"; ' % (i, name, cap) for i, (name, cap) in enumerate(cards))
    return 'case "$1" in -L) %s;; *) %s;; esac\n' % (listing or 'exit 6', query or 'exit 6')


OLD_DRIVER = ('case "$1" in -L) echo "GPU 0: Tesla V100-SXM2-16GB (UUID: GPU-0)";; '
              '*) echo \'Field "compute_cap" is not a valid field to query.\'; exit 2;; esac\n')


@pytest.mark.parametrize('nvidia_smi,expected', [
    (None, 'requirements.txt'),                                        # no nvidia-smi at all
    ('echo "No devices were found"; exit 6\n', 'requirements.txt'),    # driver, no GPU
    (fake_smi(('NVIDIA GeForce RTX 3090', '8.6')), 'requirements-gpu.txt'),
    (fake_smi(('NVIDIA L4', '8.9')), 'requirements-gpu.txt'),          # Ada runs the sm_86 code
    (fake_smi(('NVIDIA H100 80GB HBM3', '9.0'), ('NVIDIA A100-SXM4-40GB', '8.0')), 'requirements-gpu.txt'),
    (OLD_DRIVER, 'requirements-gpu.txt'),                               # no compute_cap field: as before
])
def test_make_picks_requirements_by_compute_capability(tmp_path, nvidia_smi, expected):
    reqs, err = make_reqs(tmp_path, nvidia_smi)
    assert reqs == expected and err == ''


@pytest.mark.parametrize('cards', [[('NVIDIA H100 80GB HBM3', '9.0')],
                                   [('NVIDIA H200', '9.0'), ('NVIDIA B200', '10.0')]])
def test_make_takes_the_cpu_build_when_every_card_is_too_new(tmp_path, cards):
    reqs, err = make_reqs(tmp_path, fake_smi(*cards))
    assert reqs == 'requirements.txt'
    lines = err.strip().splitlines()
    assert len(lines) == 1 and 'GPU 0 (%s, compute capability %s)' % cards[0] in lines[0]
    assert '5.0 to 8.9' in lines[0] and 'CPU environment' in lines[0]


CARDS_86 = [(0, 'NVIDIA GeForce RTX 3090', (8, 6))]
CARDS_90_80 = [(0, 'NVIDIA H100 80GB HBM3', (9, 0)), (1, 'NVIDIA A100-SXM4-40GB', (8, 0))]


@pytest.mark.parametrize('capability,runs', [((5, 0), True), ((5, 2), True), ((6, 1), True), ((7, 5), True),
                                             ((8, 0), True), ((8, 6), True), ((8, 9), True), ((3, 7), False),
                                             ((9, 0), False), ((10, 0), False), ((12, 0), False)])
def test_which_architectures_the_cuda_build_runs_on(capability, runs):
    assert compat.runs_cuda_build(capability) == runs


def test_the_trainer_picks_the_first_card_the_build_runs_on():
    assert runtime.get_contexts(True, None, CARDS_86) == ([mx.gpu(0)], '')
    assert runtime.get_contexts(True, None, CARDS_90_80) == ([mx.gpu(1)], '')   # the 8.0 card, not the first
    ctxs, note = runtime.get_contexts(True, None, CARDS_90_80[:1])              # Hopper alone: the CPU, said so
    assert ctxs == [mx.cpu()] and 'GPU 0 (NVIDIA H100 80GB HBM3) has compute capability 9.0' in note
    assert runtime.get_contexts(True, None, []) == ([mx.cpu()], '')
    assert runtime.get_contexts(True, '1', CARDS_90_80) == ([mx.gpu(1)], '')


def test_gpus_naming_a_card_the_build_cannot_run_exits_2(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(trainer, 'gpu_cards', lambda: CARDS_90_80)
    rc = trainer.main(['--train', '--gpus', '0', '--epochs', '1', '--train_samples', '600'] + dirs(tmp_path))
    out, err = capsys.readouterr()
    assert_clean_error((rc, out, err), '--gpus 0', 'NVIDIA H100 80GB HBM3', 'compute capability 9.0',
                       'sm_50, sm_60, sm_70, sm_80 and sm_86', 'CPU build', 'CUDA 11.8 or later for sm_90')
    assert not os.path.exists(str(tmp_path / 'ckpt'))


def test_capabilities_are_read_through_the_cuda_runtime_or_not_at_all():
    assert compat.gpu_cards('libcudart-that-is-not-there.so') == []


def test_gpu_variable_forces_the_choice(tmp_path):
    env = dict(os.environ, PATH='/usr/bin:/bin', GPU='1')
    out = subprocess.run(['make', '-s', '-C', ROOT, 'print-reqs'], env=env, stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    assert out.split() == ['requirements-gpu.txt', '.venv-gpu']


def test_requirements_gpu_provides_every_library():
    text = open(os.path.join(ROOT, 'requirements-gpu.txt')).read()
    pins = dict(re.findall(r'^([A-Za-z0-9_.-]+)==([0-9.]+)', text, re.M))
    assert pins.get('mxnet-cu112') == '1.9.1'
    for _, lib, wheel in compat.CUDA_LIBS:
        assert wheel in pins, '%s (for %s) is not in requirements-gpu.txt' % (wheel, lib)
    assert pins['nvidia-cudnn-cu11'].startswith('8.')  # libcudnn.so.8; 9.x ships libcudnn.so.9
    cpu = open(os.path.join(ROOT, 'requirements.txt')).read()
    numpy_pins = lambda t: sorted(l for l in t.splitlines() if l.startswith('numpy'))  # noqa: E731
    assert numpy_pins(text) == numpy_pins(cpu)


def test_another_system_is_one_line_and_exit_2(tmp_path):
    """On macOS or Windows (sys.platform faked) or an old Python, main.py's first command says so in one line."""
    import runpy  # noqa: F401  (the child's)
    from devices import compat
    with pytest.raises(ImportError, match='runs on Linux with Python 3.11 or 3.12.*this is darwin with Python 3.11'):
        compat.check_platform('darwin', (3, 11))
    with pytest.raises(ImportError, match='this is linux with Python 3.7'):
        compat.check_platform('linux', (3, 7))
    compat.check_platform('linux', (3, 12))
    for system in ('darwin', 'win32'):
        code = ('import sys, runpy; sys.platform = %r; sys.argv = ["main.py", "--train"]; sys.path.insert(0, %r); '
                'runpy.run_path("main.py", run_name="__main__")' % (system, ROOT))
        proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=120)
        assert proc.returncode == 2 and 'Traceback' not in proc.stderr, proc.stderr
        assert proc.stderr.strip() == 'error: this project runs on Linux with Python 3.11 or 3.12 (README.md); this ' \
                                      'is %s with Python %d.%d' % ((system,) + sys.version_info[:2])
    fake = tmp_path / 'bin'
    fake.mkdir()
    (fake / 'uname').write_text('#!/bin/sh\necho Darwin\n')
    (fake / 'uname').chmod(0o755)
    env = dict(os.environ, PATH='%s:%s' % (fake, os.environ['PATH']))
    proc = subprocess.run(['make', '-s', '-C', ROOT, '-f', os.path.join(ROOT, 'Makefile'), 'GPU=0',
                           'VENV=%s' % (tmp_path / 'venv'), 'setup'], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert proc.returncode != 0 and 'this project runs on Linux' in proc.stderr and 'this is Darwin' in proc.stderr
    assert not (tmp_path / 'venv').exists()
