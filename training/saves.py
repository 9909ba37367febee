"""What a stage saves: at each epoch's end its last checkpoint (with the optimizers' states), its best one
when it improved, and its metrics; within an epoch (a stop, --save_minutes) its last checkpoint as it stands,
with what the epoch has kept so far, so that --resume goes on from that step."""
from devices import compat  # noqa: F401  (before mxnet)

from mxnet import nd

from faults.atomic import write_json
from faults.errors import saved
from runs import checkpoints
from runs.meta import Meta
from training import floors


def meta_of(stage, rt, data, epoch, within=None):
    """The Meta of the stage's checkpoint after ``epoch`` epochs (``within`` the next one, where it stands)."""
    return Meta(stage.run, stage.kind, stage.files.prefix, tuple(data.classes.tolist()), tuple(data.normalisation),
                rt.precision, epoch, stage.best, stage.history, stage.projection.state(), within=within)


def trainers_of(stage):
    """{name: Trainer} whose states a last checkpoint keeps."""
    trainers = {'net': stage.trainer}
    if stage.center_trainer is not None:
        trainers['centers'] = stage.center_trainer
    return trainers


def save_epoch(stage, rt, data, record, centers, dataset):
    """The last checkpoint (with optimizer states, to resume), the best one when it improved, the metrics."""
    improved = record.accuracy(stage.metric) > stage.best
    stage.best = max(stage.best, record.accuracy(stage.metric))
    meta = meta_of(stage, rt, data, record.epoch)
    checkpoints.save_checkpoint(stage.files.last, stage.net, centers, meta, trainers_of(stage))
    if improved:
        checkpoints.save_checkpoint(stage.files.best, stage.net, centers, meta)
    write_json(stage.files.metrics, dict(
        prefix=stage.files.prefix, stage=stage.kind, loss=stage.title, cpu=compat.cpu_name(),
        precision=rt.precision, images_per_epoch=data.train_x.shape[0] * stage.passes,
        floors=floors.time_to_floors(stage.title, stage.history, dataset, stage.arch.holdout),
        epochs=[h.to_json() for h in stage.history]))


def saver_within(stage, rt, data):
    """save(Within, Gathered): the stage as it stands within an epoch, in its last checkpoint (the best is
    an epoch's); a stop's line, or the interval's, says so."""
    def save(within, gathered):
        centers = stage.center_loss.centers.weight.data() if stage.center_loss is not None else \
            nd.zeros((stage.arch.num_classes, stage.arch.feature_size))  # (softmax: class means at epochs' ends)
        with saved(stage.files.out_dir):
            meta = meta_of(stage, rt, data, len(stage.history), within)
            checkpoints.save_checkpoint(stage.files.last, stage.net, centers, meta, trainers_of(stage),
                                        {'within.' + k: v for k, v in gathered.arrays().items()})
        print('[%s] saved within epoch %d at step %d of %d: %s' % (stage.files.prefix, within.epoch, within.step,
                                                                   stage.schedule.steps, stage.files.last), flush=True)
    return save
