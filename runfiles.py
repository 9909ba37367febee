"""One run's files: the names of its checkpoints, feature-map frames, GIFs, curves and metrics, and
writing each of them whole."""
import glob
import json
import os
import tempfile

_UMASK = os.umask(0o022)
os.umask(_UMASK)
SECOND = '-second'  # the second stage of run P is the run P-second
SPLITS = ('train', 'test')


class RunFiles(object):
    """Every file a run of ``prefix`` writes: checkpoints in ``ckpt_dir``, pictures and metrics in ``out_dir``."""

    def __init__(self, ckpt_dir, out_dir, prefix):
        self.ckpt_dir, self.out_dir, self.prefix = ckpt_dir, out_dir, prefix

    def __repr__(self):
        return 'RunFiles(%r, %r, %r)' % (self.ckpt_dir, self.out_dir, self.prefix)

    # ------------------------------------------------------------ stages
    @property
    def is_second(self):
        return self.prefix.endswith(SECOND)

    def second(self):
        """The files of this run's second stage."""
        return RunFiles(self.ckpt_dir, self.out_dir, self.prefix + SECOND)

    def first(self):
        """The files of the first stage a second stage starts from (itself for a first stage)."""
        if not self.is_second:
            return self
        return RunFiles(self.ckpt_dir, self.out_dir, self.prefix[:-len(SECOND)])

    # ------------------------------------------------------------ names
    def checkpoint(self, tag):
        return os.path.join(self.ckpt_dir, '%s-%s.params' % (self.prefix, tag))

    @property
    def best(self):
        return self.checkpoint('best')

    @property
    def last(self):
        return self.checkpoint('last')

    def frame(self, split, epoch):
        """One feature-map frame per split and epoch."""
        return os.path.join(self.out_dir, self._frame_name(split, '%02d' % epoch))

    def frames(self, split, epochs):
        """The frames of ``split`` for epochs 1..epochs that exist, in order."""
        return [f for f in (self.frame(split, e) for e in range(1, epochs + 1)) if os.path.isfile(f)]

    def gif(self, split):
        return os.path.join(self.out_dir, '%s-%s.gif' % (self.prefix, split))

    def _output(self, suffix):
        """``<out_dir>/<prefix>-<suffix>``: every per-run file but the frames and GIFs."""
        return os.path.join(self.out_dir, '%s-%s' % (self.prefix, suffix))

    @property
    def curves(self):
        return self._output('curves.png')

    @property
    def metrics(self):
        return self._output('metrics.json')

    @property
    def verify_json(self):
        """--verify's figures of this run's best checkpoint."""
        return self._output('verify.json')

    @property
    def roc(self):
        return self._output('roc.png')

    def _frame_name(self, split, epoch):
        return '%s-%s-epoch-%s.png' % (self.prefix, split, epoch)

    # ------------------------------------------------------------ a new run
    def remove_outputs(self):
        """Delete the frames, GIFs, curves, metrics and verification an earlier run of this
        prefix left, so a new run's set is never mixed with an old one's."""
        escaped = RunFiles(glob.escape(self.ckpt_dir), glob.escape(self.out_dir), glob.escape(self.prefix))
        patterns = [os.path.join(escaped.out_dir, escaped._frame_name(split, '*')) for split in SPLITS]
        patterns += [escaped.gif(split) for split in SPLITS] + [escaped.curves, escaped.metrics, escaped.verify_json,
                                                            escaped.roc]
        for pattern in patterns:
            for path in glob.glob(pattern):
                os.remove(path)


def comparison_path(out_dir, dataset):
    """The figure of --compare: every compared run's feature maps, one row each."""
    return os.path.join(out_dir, 'comparison-%s.png' % dataset)


def verify_path(out_dir, dataset):
    """The ROC figure of --verify with several runs: a curve per run."""
    return os.path.join(out_dir, 'verify-%s.png' % dataset)


def atomic_write(path, data):
    """Write bytes next to ``path`` then rename over it: a crash, a full disk or a signal
    leaves the old file (or none) and no temporary file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json(path, obj):
    atomic_write(path, json.dumps(obj, indent=1).encode())
