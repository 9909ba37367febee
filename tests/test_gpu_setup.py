"""The CUDA set-up, tested on CPU: library discovery and load order on a fake
nvidia/*/lib tree, the requirements file `make` picks, and the pins."""
import os
import re
import subprocess

import pytest

import compat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    assert not compat.mxnet_is_cuda_build()


def test_cuda_build_is_recognised(tmp_path):
    info = tmp_path / 'mxnet_cu112-1.9.1.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text('Metadata-Version: 2.1\nName: mxnet-cu112\nVersion: 1.9.1\n')
    assert compat.mxnet_is_cuda_build([str(tmp_path)])


def make_reqs(tmp_path, nvidia_smi):
    env = dict(os.environ)
    env.pop('GPU', None)
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    if nvidia_smi is not None:
        tool = bin_dir / 'nvidia-smi'
        tool.write_text('#!/bin/sh\n' + nvidia_smi)
        tool.chmod(0o755)
    env['PATH'] = '%s:/usr/bin:/bin' % bin_dir
    out = subprocess.run(['make', '-s', '-C', ROOT, 'print-reqs'], env=env, stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    return out.split()[0]


@pytest.mark.parametrize('nvidia_smi,expected', [
    (None, 'requirements.txt'),                                        # no nvidia-smi at all
    ('echo "No devices were found"; exit 6\n', 'requirements.txt'),    # driver, no GPU
    ('echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1234)"\n', 'requirements-gpu.txt'),
])
def test_make_picks_requirements_by_nvidia_smi(tmp_path, nvidia_smi, expected):
    assert make_reqs(tmp_path, nvidia_smi) == expected


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
