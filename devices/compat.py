"""Runs before ``import mxnet`` everywhere in this project: makes mxnet 1.9.1
importable and fast on today's machines.

1. numpy: mxnet 1.9.1 still uses ``np.bool``, which numpy 1.24 removed. On Python
   <= 3.11 requirements.txt pins numpy<1.24; Python 3.12 has only numpy 1.26
   wheels, so the alias is restored here (it is exactly the builtin ``bool``).
2. Threads: one OpenMP thread per available core, which is faster for MXNet's CPU
   kernels than its default (docs/speed.md). A value the user set wins.
3. bfloat16: ``cpu_has_bf16`` tells whether this CPU computes in bfloat16 natively
   (AVX512-BF16 or AMX), where oneDNN's bfloat16 convolutions are fast.
4. CUDA: the ``mxnet-cu112`` wheel does not carry CUDA. Its libraries come from
   NVIDIA's ``nvidia-*-cu11`` wheels (requirements-gpu.txt), which unpack under
   ``site-packages/nvidia/*/lib`` where ``libmxnet.so`` does not look; they are
   loaded here, globally and in dependency order, so no LD_LIBRARY_PATH is needed.
   Nothing happens for the CPU build.
5. GPU architectures: the CUDA build carries machine code for a fixed list of
   architectures and no PTX; ``gpu_cards`` reads each card's compute capability
   through the CUDA runtime, and ``runs_cuda_build`` tells whether the build can
   run on it.
0. First of all, the platform: Linux (the locks, the cores a process may use,
   /proc/cpuinfo, the launcher's parent-death signal; mxnet 1.9.1's wheels) and
   Python 3.8 or later. Anything else stops the import with ImportError, which
   main.py says in one line (exit 2).
"""
import ctypes
import glob
import os
import sys

PLATFORM = 'this project runs on Linux with Python 3.11 or 3.12 (README.md)'


def check_platform(system=None, version=None):
    """ImportError naming what this machine is, where it is not Linux with Python 3.8 or later."""
    system = sys.platform if system is None else system
    version = sys.version_info[:2] if version is None else version
    if not system.startswith('linux') or tuple(version) < (3, 8):
        raise ImportError('%s; this is %s with Python %s' % (PLATFORM, system, '.'.join(map(str, version))))


check_platform()

import numpy as np  # noqa: E402

if 'bool' not in vars(np):  # deprecated (1.20-1.23) or removed (1.24+); asking would warn
    np.bool = bool

os.environ.setdefault('OMP_NUM_THREADS', str(len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
                                             else os.cpu_count() or 1))


def cpu_field(name, path='/proc/cpuinfo'):
    """The value of field ``name`` for the first CPU listed (Linux), or None."""
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(':')
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_name(path='/proc/cpuinfo'):
    """The CPU's model name with its family and model numbers (virtual machines often hide the
    name: 'Intel(R) Xeon(R) Processor'), e.g. '... (family 6, model 207)'; None off Linux."""
    name = cpu_field('model name', path)
    if name is None:
        return None
    family, model = cpu_field('cpu family', path), cpu_field('model', path)
    return '%s (family %s, model %s)' % (name, family, model) if family and model else name


def cpu_flags(path='/proc/cpuinfo'):
    """The instruction-set flags of the first CPU listed (Linux), or an empty set."""
    return set((cpu_field('flags', path) or '').split())


def cpu_has_bf16(flags=None):
    return bool({'avx512_bf16', 'amx_bf16'} & (cpu_flags() if flags is None else flags))


class CudaSetupError(ImportError):
    """The CUDA build of MXNet cannot load; the message says what is missing and what to do."""


CPU_HINT = 'or use the CPU build: `make setup GPU=0` (pip install -r requirements.txt)'
# What libmxnet.so of mxnet-cu112 needs (readelf -d), in an order where each
# library's own dependencies come first: (folder under nvidia/, file name, wheel).
# The cuDNN 8 parts are dlopen()ed by libcudnn.so.8 at run time, so they are preloaded too.
CUDA_LIBS = [
    ('cuda_runtime', 'libcudart.so.11.0', 'nvidia-cuda-runtime-cu11'),
    ('cuda_nvrtc', 'libnvrtc-builtins.so.11.*', 'nvidia-cuda-nvrtc-cu11'),
    ('cuda_nvrtc', 'libnvrtc.so.11.2', 'nvidia-cuda-nvrtc-cu11'),
    ('cublas', 'libcublasLt.so.11', 'nvidia-cublas-cu11'),
    ('cublas', 'libcublas.so.11', 'nvidia-cublas-cu11'),
    ('cufft', 'libcufft.so.10', 'nvidia-cufft-cu11'),
    ('curand', 'libcurand.so.10', 'nvidia-curand-cu11'),
    ('cusolver', 'libcusolver.so.11', 'nvidia-cusolver-cu11'),
    ('cudnn', 'libcudnn_ops_infer.so.8', 'nvidia-cudnn-cu11'),
    ('cudnn', 'libcudnn_ops_train.so.8', 'nvidia-cudnn-cu11'),
    ('cudnn', 'libcudnn_cnn_infer.so.8', 'nvidia-cudnn-cu11'),
    ('cudnn', 'libcudnn_cnn_train.so.8', 'nvidia-cudnn-cu11'),
    ('cudnn', 'libcudnn_adv_infer.so.8', 'nvidia-cudnn-cu11'),
    ('cudnn', 'libcudnn_adv_train.so.8', 'nvidia-cudnn-cu11'),
    ('cudnn', 'libcudnn.so.8', 'nvidia-cudnn-cu11'),
    ('nccl', 'libnccl.so.2', 'nvidia-nccl-cu11'),
    ('nvtx', 'libnvToolsExt.so.1', 'nvidia-nvtx-cu11'),
]


def mxnet_is_cuda_build(paths=None):
    """True when the installed mxnet distribution is a CUDA one (mxnet-cu112, ...)."""
    from importlib import metadata
    for dist in metadata.distributions(path=paths or sys.path):
        name = (dist.metadata['Name'] or '').lower().replace('_', '-')
        if name.startswith('mxnet-cu'):
            return True
    return False


def nvidia_roots(paths=None):
    """The ``nvidia`` folders of the installed NVIDIA wheels, in sys.path order."""
    roots = [os.path.join(p, 'nvidia') for p in (paths or sys.path) if p]
    return [r for r in roots if os.path.isdir(r)]


def find_cuda_libs(roots):
    """[(path or bare soname, wheel)] in load order. A library no wheel provides
    is returned as its bare soname, for the dynamic linker to find on the
    system (a CUDA toolkit install); the wildcard entries are optional."""
    found = []
    for folder, pattern, wheel in CUDA_LIBS:
        hits = sorted(h for r in roots for h in glob.glob(os.path.join(r, folder, 'lib', pattern)))
        if hits:
            found.append((hits[0], wheel))
        elif '*' not in pattern:
            found.append((pattern, wheel))
    return found


def _load_global(path):
    ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)


def preload_cuda(roots=None, load=_load_global):
    """Load the CUDA libraries of the NVIDIA wheels with ``load`` (the tests pass
    a recorder). Raises CudaSetupError naming the library and its wheel."""
    try:
        load('libcuda.so.1')  # the driver: comes with the NVIDIA driver, never from pip
    except OSError:
        raise CudaSetupError('the CUDA build of MXNet is installed but the NVIDIA driver is not '
                             '(libcuda.so.1 not found): install the driver, %s' % CPU_HINT)
    loaded = []
    for path, wheel in find_cuda_libs(nvidia_roots() if roots is None else roots):
        try:
            load(path)
        except OSError as e:
            raise CudaSetupError('the CUDA build of MXNet needs %s, which failed to load (%s): '
                                 '`pip install -r requirements-gpu.txt` provides it in %s, %s'
                                 % (os.path.basename(path), str(e).split(':')[-1].strip(), wheel, CPU_HINT))
        loaded.append(path)
    return loaded


if 'mxnet' not in sys.modules and mxnet_is_cuda_build():
    preload_cuda()


# --------------------------------------------------------------------------- GPU architectures

# mxnet-cu112 1.9.1 (and its cu113-cu117 siblings) is built for these compute
# capabilities (MXNET_CUDA_ARCH "5.0;6.0;7.0;8.0;8.6"), as machine code only, with
# no PTX for the driver to compile for newer cards. Machine code runs on cards of
# the same major version and an equal or higher minor one, so 5.x to 8.x run it
# (Ada, 8.9, runs the 8.6 code); Hopper (9.0) and Blackwell (10.x, 12.x) cannot.
CUDA_BUILD_ARCHS = ((5, 0), (6, 0), (7, 0), (8, 0), (8, 6))
CUDA_ARCHS_TEXT = 'sm_50, sm_60, sm_70, sm_80 and sm_86 (compute capability 5.0 to 8.9), no PTX'
# cudaDeviceAttr values of the CUDA runtime API (driver_types.h).
_CC_MAJOR, _CC_MINOR = 75, 76


def runs_cuda_build(capability):
    """Whether a card of compute capability (major, minor) runs the CUDA build's machine code."""
    major, minor = capability
    return any(major == m and minor >= n for m, n in CUDA_BUILD_ARCHS)


def gpu_cards(cudart='libcudart.so.11.0'):
    """[(device number, name, (major, minor))] of the GPUs the CUDA runtime sees, numbered as MXNet
    numbers them (both ask the same runtime); [] when it cannot be asked."""
    try:
        lib = ctypes.CDLL(cudart)
    except OSError:
        return []
    count = ctypes.c_int(0)
    if lib.cudaGetDeviceCount(ctypes.byref(count)) != 0:
        return []
    cards = []
    for device in range(count.value):
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        lib.cudaDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device)
        lib.cudaDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device)
        props = ctypes.create_string_buffer(8192)  # cudaDeviceProp starts with char name[256]
        name = 'GPU %d' % device
        if lib.cudaGetDeviceProperties(props, device) == 0:
            name = props.raw[:256].split(b'\0', 1)[0].decode(errors='replace') or name
        cards.append((device, name, (major.value, minor.value)))
    return cards
