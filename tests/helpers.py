"""What several test files share: IDX files written on the fly, and main.py run as a user runs it."""
import gzip
import os
import signal
import struct
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import utils  # noqa: E402

# The flags of a quick run: a slice of MNIST, the CPU, no pictures (add the mode and --epochs); batch 128,
# so that the tests that name a batch count 5 batches of the 600 images.
QUICK = ['--batch_size', '128', '--train_samples', '600', '--test_samples', '200', '--use_gpu', 'False',
         '--min_epoch_steps', '0', '--no_plotting']


def write_idx(path, array, magic=None):
    header = struct.pack('>I', magic if magic is not None else utils.IDX_MAGIC[array.ndim])
    header += struct.pack('>%dI' % array.ndim, *array.shape)
    blob = header + array.astype(np.uint8).tobytes()
    with (gzip.open if path.endswith('.gz') else open)(path, 'wb') as f:
        f.write(blob)
    return path


def make_dataset(directory, n_train=6, n_test=4, drop=None, label_len=None, top_label=9):
    """A tiny dataset of random IDX files; ``drop`` leaves one file out, ``label_len`` mismatches a length."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.RandomState(0)
    for split, n in (('train', n_train), ('test', n_test)):
        img, lbl = utils.FILES[split]
        if img != drop:
            write_idx(os.path.join(directory, img + '.gz'), rng.randint(0, 256, (n, 28, 28)))
        if lbl != drop:
            write_idx(os.path.join(directory, lbl + '.gz'), rng.randint(0, top_label + 1, label_len or n))
    return directory


def a_meta(epoch=1, arch=None, **fields):
    """A checkpoint's description (runs.meta.Meta) of ``epoch`` for a network of ``arch`` (a small LeNet's by
    default), the rest at plain values or as ``fields`` give them (``run``: the records beside the Arch)."""
    from runs.meta import Meta, Run
    from runs.records import Arch
    run = Run(arch or Arch('lenet', 'relu', 2, 10), **fields.pop('run', {}))
    values = dict(stage='first', prefix='test', classes=tuple(range(run.arch.num_classes)), normalisation=(0.0, 1.0),
                  precision='float32', epoch=epoch, best=-1.0, history=[])
    values.update(fields)
    return Meta(run, **values)


def load_bench(name):
    """The module bench/<name>.py (a script, not a package), to call its functions."""
    import importlib.util
    if os.path.join(ROOT, 'bench') not in sys.path:  # as Python runs a script: its folder first on the path
        sys.path.insert(0, os.path.join(ROOT, 'bench'))
    spec = importlib.util.spec_from_file_location('bench_' + name, os.path.join(ROOT, 'bench', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(*args, timeout=600, env=None):
    """Run main.py as a user would; (exit status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'main.py')] + list(args), cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    return proc.returncode, proc.stdout, proc.stderr


def dirs(tmp_path):
    """--ckpt_dir and --out_dir inside ``tmp_path``."""
    return ['--ckpt_dir', str(tmp_path / 'ckpt'), '--out_dir', str(tmp_path / 'out')]


def assert_clean_error(result, *fragments, status=2):
    """One line on stderr holding every fragment, no traceback, exit ``status``."""
    rc, out, err = result
    assert rc == status, (rc, out, err)
    assert 'Traceback' not in err and 'Traceback' not in out, err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


class Touch(object):
    """Pickles to a call of os.system that creates ``path``: what a crafted checkpoint or .bin would carry."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return os.system, ('touch %s' % self.path,)


def ctrl_c_on():
    """In a child (preexec_fn): SIGINT back to its default. A suite started in the background (`make
    test &`, nohup, some CI runners) inherits SIGINT ignored, as shells do for background jobs, and
    Python then never turns Ctrl-C into KeyboardInterrupt: the child would train on."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
