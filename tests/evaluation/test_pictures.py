"""evaluation/pictures.py: frames, GIFs, projection and colours, checked on the files and artists, not by eye."""
import os

import imageio.v2 as imageio
import numpy as np
import pytest

from evaluation import pictures


def test_projection_is_identity_in_2d_and_pca_once_otherwise():
    rng = np.random.RandomState(0)
    f2 = rng.randn(50, 2)
    p = pictures.Projection().fit(f2)
    assert p(f2) is f2 and p.state() == {}
    # 5-D features lying mostly in the plane of the first two axes
    f5 = np.hstack([rng.randn(200, 2) * [10, 5], rng.randn(200, 3) * 0.01])
    p = pictures.Projection().fit(f5)
    out = p(f5)
    assert out.shape == (200, 2)
    np.testing.assert_allclose(np.abs(p.components[:2]), np.eye(2), atol=0.01)
    first = p.components.copy()
    p.fit(rng.randn(200, 5))  # later frames reuse the first plane
    np.testing.assert_array_equal(p.components, first)
    q = pictures.Projection(**p.state())
    np.testing.assert_allclose(q(f5), out)


def test_colours_fixed_per_class_whatever_classes_a_frame_holds():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    colors = pictures.class_colors(10)
    assert np.array_equal(colors, pictures.class_colors(10)) and len(set(map(tuple, colors))) == 10
    fig, ax = plt.subplots()
    labels = np.array([3, 3, 7, 7, 7])
    pictures.draw_features(ax, np.random.RandomState(0).randn(5, 2), labels, 10, 't')
    drawn = {c.get_label(): c for c in ax.collections}
    assert sorted(drawn) == ['3', '7']  # absent classes get no legend entry
    for k in (3, 7):  # class k's colour, even with classes 0-2 absent
        np.testing.assert_allclose(drawn[str(k)].get_facecolor()[0][:3], colors[k][:3])
        assert len(drawn[str(k)].get_offsets()) == (labels == k).sum()
    plt.close(fig)


def test_held_out_classes_are_crosses_and_centers_take_their_class_colour():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    colors = pictures.class_colors(10)
    fig, ax = plt.subplots()
    rng = np.random.RandomState(0)
    pictures.draw_features(ax, rng.randn(4, 2), np.array([0, 2, 2, 0]), 10, 't', centers=rng.randn(2, 2),
                           center_labels=[0, 2], held=(rng.randn(3, 2), np.array([5, 5, 9])))
    drawn = {c.get_label(): c for c in ax.collections}
    assert len(drawn['5 (held out)'].get_offsets()) == 2 and len(drawn['9 (held out)'].get_offsets()) == 1
    np.testing.assert_allclose(drawn['9 (held out)'].get_facecolor()[0][:3], colors[9][:3])
    stars = ax.collections[-1].get_facecolor()
    np.testing.assert_allclose(stars[1][:3], colors[2][:3])  # the second center is class 2's
    plt.close(fig)


def test_many_classes_are_one_scatter_in_their_colours_with_the_centers_of_those_drawn():
    """50,000 classes: one scatter call, not one a class, no legend, and stars only for the classes drawn."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    colors = pictures.class_colors(50000)
    assert colors.shape == (50000, 4) and len(set(map(tuple, colors[::5000]))) == 10
    fig, ax = plt.subplots()
    rng = np.random.RandomState(0)
    labels = np.array([7, 49999, 7, 123])
    pictures.draw_features(ax, rng.randn(4, 2), labels, 50000, 't', centers=rng.randn(50000, 2))
    points, stars = ax.collections
    np.testing.assert_allclose(points.get_facecolor()[:, :3], colors[labels][:, :3])
    assert len(stars.get_offsets()) == 3 and ax.get_legend() is None  # classes 7, 123, 49999
    plt.close(fig)


@pytest.mark.parametrize('num_frames', [1, 4])
def test_gif_has_every_frame_and_loops(tmp_path, num_frames):
    frames = []
    for e in range(num_frames):
        path = str(tmp_path / ('f%d.png' % e))
        pictures.plot_features(path, np.random.RandomState(e).randn(30, 2), np.arange(30) % 10, 10, 'epoch %d' % e)
        frames.append(path)
    gif = str(tmp_path / 'a.gif')
    pictures.make_gif(gif, frames)
    assert len(imageio.mimread(gif)) == num_frames
    reader = imageio.get_reader(gif)
    assert reader.get_meta_data().get('loop') == 0
    assert os.path.getsize(gif) < 1e6


def test_comparison_figure(tmp_path):
    rng = np.random.RandomState(0)
    row = lambda t: (t, {s: (rng.randn(40, 2), np.arange(40) % 10) for s in ('train', 'test')},  # noqa
                     rng.randn(10, 2), None)
    path = str(tmp_path / 'c.png')
    pictures.plot_comparison(path, [row('a'), row('b'), row('c')], 10)
    h, w = imageio.imread(path).shape[:2]
    assert h > w  # three rows of two maps
