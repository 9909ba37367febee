"""Time to accuracy: the first epoch at which a stage reached this project's targets on MNIST."""

# This project's targets on MNIST (2-D features), as test accuracies: the first epoch at
# which a stage reaches each is its time to accuracy, in the metrics JSON and its last line.
FLOORS = {'softmax': {'softmax': 0.991},
          'softmax + center loss': {'softmax': 0.992, 'center': 0.989},
          'center loss only': {'center': 0.990}}
FLOOR_DATASETS = ('mnist',)


def time_to_floors(title, history, dataset, holdout=None):
    """{'softmax >= 0.992': {'epoch', 'images', 'seconds'} or None, ...}: the first epoch of the
    ``history`` (Epoch records) of a stage ``title`` (a key of FLOORS) at which each of its floors
    held; {} where none apply (another dataset, or classes held out)."""
    if dataset not in FLOOR_DATASETS or holdout:
        return {}
    reached = {}
    for method, floor in FLOORS[title].items():
        first = next((h for h in history if h.accuracy(method) >= floor), None)
        reached['%s >= %g' % (method, floor)] = None if first is None else dict(
            epoch=first.epoch, images=first.images, seconds=first.seconds)
    return reached
