"""evaluation/frames.py: where the frames of an epoch fall, and a frame drawing what it is handed."""
import os

import numpy as np
import pytest

from evaluation import frames, pictures
from runs.files import RunFiles


def frames_of(folder, wanted, epochs, steps):
    return frames.Frames(RunFiles(folder, folder, 'u'), wanted, epochs, steps, 'softmax (first stage)', np.arange(3), 3,
                         ['a', 'b', 'c'], pictures.Projection())


@pytest.mark.parametrize('frames_wanted,epochs,steps,after', [
    (20, 6, 938, {234: 1, 469: 2, 704: 3}),   # 4 an epoch: three within, the epoch's end the fourth
    (6, 6, 100, {}),                          # one an epoch: its end
    (20, 2, 5, {1: 2, 2: 3, 3: 6, 4: 7}),     # more frames than steps: each step draws the earliest it stands for
])
def test_where_the_frames_of_an_epoch_fall(frames_wanted, epochs, steps, after, tmp_path):
    f = frames_of(str(tmp_path), frames_wanted, epochs, steps)
    assert f.after == after and all(f.due(s) for s in after) and not f.due(steps)


def test_a_frame_draws_what_it_is_handed_and_leaves_out_images_not_yet_trained_on(tmp_path):
    f = frames_of(str(tmp_path), 4, 1, 10)
    train = np.array([[0, 0], [np.nan, np.nan], [1, 1]], np.float32)
    f.draw(f.position(1, 5), (train, np.array([0, 1, 2]), 0.5), (np.zeros((2, 2)), np.array([0, 1]), 0.5),
           np.zeros((3, 2)))
    assert sorted(os.listdir(str(tmp_path))) == ['u-test-epoch-00.50.png', 'u-train-epoch-00.50.png']
    f.draw(1, (np.full((3, 2), np.nan), np.array([0, 1, 2]), 0.5), (np.zeros((2, 2)), np.array([0, 1]), 0.5),
           np.zeros((3, 2)))
    assert len(os.listdir(str(tmp_path))) == 2  # nothing trained on yet: no frame
