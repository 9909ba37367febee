"""Embeddings written out, to be looked at or used elsewhere, as a NumPy ``.npz`` and as the two files
TensorBoard's Embedding Projector loads (``tensors.tsv``, one feature vector a line; ``metadata.tsv``, a
header line, then a line an image): a run's test features with their labels, class names and whether
the class was held out of training (``export``), or the features of any image files with their paths
and folders' names (``export_images``)."""
import io
import os

import numpy as np

from faults.atomic import atomic_write


def export(folder, features, labels, class_names, held_out):
    """Write ``features`` (n, d), their dataset ``labels`` (n,), the dataset's ``class_names`` and
    ``held_out`` (n,) flags into ``folder``: embeddings.npz, tensors.tsv, metadata.tsv. Returns the paths."""
    os.makedirs(folder, exist_ok=True)
    features, labels = np.asarray(features, np.float32), np.asarray(labels, np.int64)
    names = np.array([_cell(class_names[int(c)]) for c in labels])
    buf = io.BytesIO()
    np.savez(buf, features=features, labels=labels, class_names=np.array([_cell(c) for c in class_names]),
             held_out=np.asarray(held_out, bool))
    paths = [os.path.join(folder, f) for f in ('embeddings.npz', 'tensors.tsv', 'metadata.tsv')]
    atomic_write(paths[0], buf.getvalue())
    atomic_write(paths[1], ''.join('\t'.join('%.7g' % v for v in row) + '\n' for row in features).encode())
    rows = ['label\tclass\theld_out'] + ['%d\t%s\t%s' % (lbl, name, 'yes' if held else 'no')
                                         for lbl, name, held in zip(labels, names, held_out)]
    atomic_write(paths[2], ('\n'.join(rows) + '\n').encode('utf-8', 'backslashreplace'))
    return paths


def export_images(folder, features, paths, classes, normalised):
    """Write the ``features`` (n, d) of the image files ``paths`` (each of class ``classes``, its folder's
    name) into ``folder``: embeddings.npz (features, paths, classes, normalised), tensors.tsv and
    metadata.tsv (a header line, then the path and the class, a line an image). Returns the paths."""
    os.makedirs(folder, exist_ok=True)
    features = np.asarray(features, np.float32)
    buf = io.BytesIO()
    np.savez(buf, features=features, paths=np.array(paths), classes=np.array(classes), normalised=bool(normalised))
    written = [os.path.join(folder, f) for f in ('embeddings.npz', 'tensors.tsv', 'metadata.tsv')]
    atomic_write(written[0], buf.getvalue())
    atomic_write(written[1], ''.join('\t'.join('%.7g' % v for v in row) + '\n' for row in features).encode())
    rows = ['path\tclass'] + ['%s\t%s' % (_cell(p), _cell(c)) for p, c in zip(paths, classes)]
    atomic_write(written[2], ('\n'.join(rows) + '\n').encode('utf-8', 'backslashreplace'))
    return written


def _cell(text):
    """A class name as one TSV cell: no tab or line break in it."""
    return ' '.join(str(text).split()) or '?'
