"""One run's files: the names of its checkpoints, feature-map frames, GIFs, curves and metrics,
and the removal of an earlier run's set."""
import glob
import os

SECOND = '-second'  # the second stage of run P is the run P-second
SPLITS = ('train', 'test')
NOTHING_TO_RESUME = ': nothing to resume; drop --resume to start the stage'


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

    def second_start(self, tag, resume):
        """(path, hint) of the checkpoint this run's second stage starts from: with ``resume``, the second
        stage's own last one; else the first stage's ``tag`` (best or last)."""
        if resume:
            return self.second().last, NOTHING_TO_RESUME
        return self.checkpoint(tag), self.hint()

    def hint(self):
        """': run `python main.py ...` first', the command that makes this run's checkpoints."""
        if self.is_second:
            base = self.first().prefix
            cmd = '--second_train' + ('' if base == 'center-loss' else ' --prefix ' + base)
        elif self.prefix == 'softmax':
            cmd = '--train'
        else:
            cmd = '--train --center_loss' + ('' if self.prefix == 'center-loss' else ' --prefix ' + self.prefix)
        return ': run `python main.py %s` first' % cmd

    # ------------------------------------------------------------ names
    def checkpoint(self, tag):
        return os.path.join(self.ckpt_dir, '%s-%s.params' % (self.prefix, tag))

    @property
    def best(self):
        return self.checkpoint('best')

    @property
    def last(self):
        return self.checkpoint('last')

    def frame(self, split, position, decimals=2):
        """The feature-map frame of ``split`` after ``position`` epochs: epoch-NN.png at an epoch's end,
        epoch-NN.FF.png within one (epoch-02.25.png: a quarter into the third epoch; ``decimals`` 3 for
        more than 100 frames an epoch)."""
        if position == int(position):
            when = '%02d' % position
        else:
            whole, fraction = ('%.*f' % (decimals, position)).split('.')
            when = '%02d.%s' % (int(whole), fraction)
        return os.path.join(self.out_dir, self._frame_name(split, when))

    def frames(self, split, epochs):
        """The frames of ``split`` up to ``epochs`` epochs that exist, in order."""
        start = os.path.join(self.out_dir, '%s-%s-epoch-' % (self.prefix, split))
        found = []
        for path in glob.glob(glob.escape(start) + '*.png'):
            try:
                position = float(path[len(start):-len('.png')])
            except ValueError:
                continue
            if 0 < position <= epochs:
                found.append((position, path))
        return [path for _, path in sorted(found)]

    def gif(self, split):
        return os.path.join(self.out_dir, '%s-%s.gif' % (self.prefix, split))

    def output(self, suffix):
        """``<out_dir>/<prefix>-<suffix>``: every per-run file but the frames and GIFs."""
        return os.path.join(self.out_dir, '%s-%s' % (self.prefix, suffix))

    @property
    def curves(self):
        return self.output('curves.png')

    @property
    def metrics(self):
        return self.output('metrics.json')

    @property
    def verify_json(self):
        """--verify's figures of this run's best checkpoint."""
        return self.output('verify.json')

    @property
    def roc(self):
        return self.output('roc.png')

    def _frame_name(self, split, epoch):
        return '%s-%s-epoch-%s.png' % (self.prefix, split, epoch)

    # ------------------------------------------------------------ a new run
    def pictures_made(self):
        """Whether the GIFs and curves a complete stage ends with are there."""
        return all(os.path.isfile(p) for p in (self.gif('train'), self.gif('test'), self.curves))

    def _output_patterns(self):
        """Glob patterns of every output this run writes in out_dir (those of no other prefix)."""
        escaped = RunFiles(glob.escape(self.ckpt_dir), glob.escape(self.out_dir), glob.escape(self.prefix))
        patterns = [os.path.join(escaped.out_dir, escaped._frame_name(split, '*')) for split in SPLITS]
        return patterns + [escaped.gif(split) for split in SPLITS] + [
            escaped.curves, escaped.metrics, escaped.verify_json, escaped.roc, escaped.output('pairs*.json'),
            escaped.output('pairs*-roc.png')]

    def remove_outputs(self):
        """Delete the frames, GIFs, curves, metrics and verification an earlier run of this
        prefix left, so a new run's set is never mixed with an old one's."""
        for pattern in self._output_patterns():
            for path in glob.glob(pattern):
                os.remove(path)

    def leftovers(self):
        """The temporary files a write of this run left when it was killed mid-way (faults.atomic writes
        ``.<name>.<random>.tmp`` beside ``<name>``): of its checkpoints and its outputs, none of another run's."""
        names = [os.path.join(glob.escape(self.ckpt_dir), glob.escape(os.path.basename(self.checkpoint(tag))))
                 for tag in ('best', 'last')] + self._output_patterns()
        return sorted(p for name in names for p in glob.glob(os.path.join(
            os.path.dirname(name), '.%s.*.tmp' % os.path.basename(name))))


def comparison_path(out_dir, dataset):
    """The figure of --compare: every compared run's feature maps, one row each."""
    return os.path.join(out_dir, 'comparison-%s.png' % dataset)


def verify_path(out_dir, dataset):
    """The ROC figure of --verify with several runs: a curve per run."""
    return os.path.join(out_dir, 'verify-%s.png' % dataset)


def last_checkpoints(ckpt_dir, out_dir, prefix=None):
    """The RunFiles of every stage with a last checkpoint in ``ckpt_dir`` (of the run ``prefix``: its first
    and its second stage), the one written last first."""
    if prefix is not None:
        first = RunFiles(ckpt_dir, out_dir, prefix)
        found = [f.last for f in (first, first.second()) if os.path.isfile(f.last)]
    else:
        found = glob.glob(os.path.join(glob.escape(ckpt_dir), '*-last.params'))
    return [RunFiles(ckpt_dir, out_dir, os.path.basename(path)[:-len('-last.params')])
            for path in sorted(found, key=os.path.getmtime, reverse=True)]
