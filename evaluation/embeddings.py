"""Embeddings written out, to be looked at or used elsewhere: a run's test features with their labels
and class names, as a NumPy ``.npz`` and as the two files TensorBoard's Embedding Projector loads
(``tensors.tsv``, one feature vector a line; ``metadata.tsv``, a header line, then the label, the class
name and whether the class was held out of training, a line an image)."""
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


def _cell(text):
    """A class name as one TSV cell: no tab or line break in it."""
    return ' '.join(str(text).split()) or '?'
