"""training/floors.py: the first epoch at which a stage reached each of this project's MNIST targets."""
from runs.meta import Epoch
from training import floors


def epoch(n, softmax, center, images, seconds):
    record = Epoch(n, 0.01, 0.1, 0.1, 0.99, softmax, center)
    record.images, record.seconds = images, seconds
    return record


HISTORY = [epoch(1, 0.9900, 0.9850, 60000, 100.0), epoch(2, 0.9920, 0.9880, 120000, 210.0),
           epoch(3, 0.9915, 0.9895, 180000, 330.0), epoch(4, 0.9930, 0.9901, 240000, 450.0)]


def test_each_floor_is_reached_at_the_first_epoch_it_holds_even_if_it_falls_back_later():
    found = floors.time_to_floors('softmax + center loss', HISTORY, 'mnist')
    assert found == {'softmax >= 0.992': {'epoch': 2, 'images': 120000, 'seconds': 210.0},   # 0.9920 exactly
                     'center >= 0.989': {'epoch': 3, 'images': 180000, 'seconds': 330.0}}
    assert floors.time_to_floors('softmax', HISTORY, 'mnist') == {
        'softmax >= 0.991': {'epoch': 2, 'images': 120000, 'seconds': 210.0}}
    assert floors.time_to_floors('softmax', HISTORY[:1], 'mnist') == {'softmax >= 0.991': None}
    assert floors.time_to_floors('center loss only', HISTORY[:2], 'mnist') == {'center >= 0.99': None}


def test_the_floors_are_mnists_on_all_its_classes_only():
    assert floors.time_to_floors('softmax', HISTORY, 'fashion-mnist') == {}
    assert floors.time_to_floors('softmax', HISTORY, 'images') == {}
    assert floors.time_to_floors('softmax', HISTORY, 'mnist', holdout=(5, 6)) == {}
    assert floors.time_to_floors('softmax', HISTORY, 'mnist', holdout=()) != {}
