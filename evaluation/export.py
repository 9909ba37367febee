"""A trained network out of the trainer (--export_model DIR): its embedding network, without the class
layer (insightface keeps only the embedding too), written as MXNet's own symbol and parameters
(``gluon.SymbolBlock.imports`` loads them) and as ONNX (onnxruntime runs it, and insightface's model
loader), each checked against the trainer's features on a batch, with a JSON card of what it takes and
gives.

What the exported network takes is what an image file holds: float32 pixels 0..255, (N, C, H, W), RGB
(or grey, as the run trained), at the run's size; its first operations are the run's normalisation,
(x - 255 mean) * 1 / (255 std): (x - 127.5) / 128 for the face networks. insightface's loader reads a
model that begins with a Sub and a Mul as normalising itself and feeds it pixels as they are.

    DIR/<prefix>-symbol.json, DIR/<prefix>-0000.params   MXNet
    DIR/<prefix>.onnx                                    ONNX (opset 12, any batch size)
    DIR/<prefix>.json                                    the card: input, output, source, threshold
"""
from devices import compat  # noqa: F401  (before mxnet)

import json
import os
import shutil
import sys
import tempfile
import warnings

import numpy as np
import mxnet as mx
from mxnet import gluon, nd

from evaluation import embed
from faults.atomic import atomic_write
from faults.errors import UserError
from models import normalises

CHECK_IMAGES = 8    # the batch each exported file is checked on
TOLERANCE = 1e-4    # the largest difference allowed, relative to the features' largest magnitude


class Deployed(gluon.HybridBlock):
    """Pixels 0..255 -> the run's normalisation -> its embedding network -> features."""

    def __init__(self, embedder, normalisation, **kwargs):
        super(Deployed, self).__init__(prefix='', **kwargs)
        mean, std = normalisation
        self._shift, self._scale = 255.0 * mean, 1.0 / (255.0 * std)
        self.embedder = embedder

    def hybrid_forward(self, F, x):
        return self.embedder((x - self._shift) * self._scale)


def export_model(ckpt, files, net, folder):
    """Write checkpoint ``ckpt``'s embedding network (``net``, its restored network) into ``folder`` as
    <prefix>-symbol.json and -0000.params, <prefix>.onnx and <prefix>.json; each file checked on a batch of
    random pixels against the trainer's own forward pass. Returns the paths written."""
    with warnings.catch_warnings():  # Gluon's on the class layer, which the export leaves out; mx.onnx's
        warnings.simplefilter('ignore')
        return _export(ckpt, files, net, folder)


def _export(ckpt, files, net, folder):
    arch = ckpt.meta.run.arch
    block = Deployed(net.embedder(), ckpt.meta.normalisation)
    block.hybridize()
    shape = (CHECK_IMAGES, arch.channels) + tuple(arch.image_size)
    pixels = np.random.RandomState(0).uniform(0, 255, shape).astype(np.float32)
    ctx = net.collect_params().list_ctx()[0]
    expected = block(nd.array(pixels, ctx=ctx)).asnumpy()
    mean, std = ckpt.meta.normalisation
    trained = net(nd.array((pixels / 255.0 - mean) / std, ctx=ctx))[1].asnumpy()
    check('the exported graph', expected, trained)
    name = files.prefix
    staging = tempfile.mkdtemp(prefix='.export-', dir=folder)  # written whole there, then moved in place
    try:
        block.export(os.path.join(staging, name), epoch=0)
        symbol, params = (os.path.join(staging, name + suffix) for suffix in ('-symbol.json', '-0000.params'))
        loaded = gluon.SymbolBlock.imports(symbol, ['data'], params)
        check('MXNet\'s %s' % os.path.basename(symbol), loaded(nd.array(pixels)).asnumpy(), expected)
        onnx_path = os.path.join(staging, name + '.onnx')
        try:
            to_onnx(symbol, params, shape, onnx_path)
            from_onnx = run_onnx(onnx_path, pixels)
        except UserError:
            raise
        except Exception as e:  # the exporter or the runtime on a network they do not handle: nothing exported
            raise UserError('--export_model: the ONNX export failed (%s: %s): nothing was exported'
                            % (type(e).__name__, ' '.join(str(e).split())[:300]))
        onnx_error = check('ONNX (onnxruntime)', from_onnx, expected)
        card = dict(input=dict(name='data', shape=[None, arch.channels] + list(arch.image_size), dtype='float32',
                               pixels='0..255, %s, as decoded from the image file' % ('RGB' if arch.channels == 3
                                                                                    else 'grey'),
                               normalisation='inside the network: (x - %.4f) * %.6f' % (block._shift, block._scale)),
                    output=dict(features=arch.feature_size, normalised=normalises(net.output)),
                    model=arch.model, head=arch.head, checkpoint=ckpt.path, epoch=ckpt.meta.epoch,
                    onnx_max_difference=float(onnx_error), thresholds=embed.recorded_thresholds(files, ckpt))
        atomic_write(os.path.join(staging, name + '.json'), json.dumps(card, indent=1).encode())
        paths = []
        for suffix in ('-symbol.json', '-0000.params', '.onnx', '.json'):
            target = os.path.join(folder, name + suffix)
            os.replace(os.path.join(staging, name + suffix), target)
            paths.append(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print('export %s (epoch %d): %s; ONNX checked: onnxruntime\'s features of %d images within %.1e of the '
          'trainer\'s' % (name, ckpt.meta.epoch, ', '.join(paths), CHECK_IMAGES, onnx_error))
    return paths


def check(what, found, expected):
    """The largest difference of ``found`` from ``expected``, relative to the features' size; UserError
    where it is over TOLERANCE (an exporter that changed the network)."""
    scale = max(float(np.abs(expected).max()), 1e-12)
    error = float(np.abs(found - expected).max()) / scale
    if not np.isfinite(error) or error > TOLERANCE:
        raise UserError('--export_model: %s gives features %.2g away from the trainer\'s (relative), over %g: '
                        'nothing was exported' % (what, error, TOLERANCE))
    return error


def onnx_for_mxnet():
    """The onnx module, with the ``onnx.mapping`` MXNet 1.9.1's exporter imports: onnx 1.16 removed it
    (requirements.txt takes 1.15.0 where it has wheels, Python 3.11; 1.16.2 on 3.12, which gets these tables,
    as onnx 1.15 defined them)."""
    try:
        import onnx
    except ImportError:
        raise UserError('--export_model: the onnx package is missing: pip install -r requirements.txt')
    if not hasattr(onnx, 'mapping'):
        import types
        from onnx import TensorProto as T
        pairs = [(T.FLOAT, 'float32'), (T.UINT8, 'uint8'), (T.INT8, 'int8'), (T.UINT16, 'uint16'),
                 (T.INT16, 'int16'), (T.INT32, 'int32'), (T.INT64, 'int64'), (T.BOOL, 'bool'), (T.FLOAT16, 'float16'),
                 (T.DOUBLE, 'float64'), (T.COMPLEX64, 'complex64'), (T.COMPLEX128, 'complex128'),
                 (T.UINT32, 'uint32'), (T.UINT64, 'uint64'), (T.STRING, 'object')]
        mapping = types.ModuleType('onnx.mapping')
        mapping.TENSOR_TYPE_TO_NP_TYPE = {t: np.dtype(n) for t, n in pairs}
        mapping.NP_TYPE_TO_TENSOR_TYPE = {np.dtype(n): t for t, n in pairs}
        sys.modules['onnx.mapping'] = onnx.mapping = mapping
    return onnx


def to_onnx(symbol, params, shape, path):
    """MXNet's exporter (mx.onnx), any batch size; the parameters left as the graph's constants only (the
    exporter also lists them as inputs, which keeps onnxruntime from folding them)."""
    onnx = onnx_for_mxnet()
    mx.onnx.export_model(symbol, params, in_shapes=[shape], in_types=[np.float32], onnx_file_path=path,
                         dynamic=True, dynamic_input_shapes=[(None,) + tuple(shape[1:])])
    model = onnx.load(path)
    used = {name for node in model.graph.node for name in node.input}
    constants = [i for i in model.graph.initializer if i.name in used]  # (the exporter's folded-away ones out)
    names = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in names]
    for field, kept in ((model.graph.initializer, constants), (model.graph.input, inputs)):
        del field[:]
        field.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def run_onnx(path, pixels):
    """The features onnxruntime computes for ``pixels`` with the model at ``path``."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError('--export_model: onnxruntime is missing, to check the ONNX file: pip install -r '
                        'requirements.txt')
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    session = onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    return session.run(None, {session.get_inputs()[0].name: pixels})[0]
