"""Reading a pickle from a file without running its code.

``pickle.load`` calls whatever callable a pickle names: a file shared by someone
else (a checkpoint, an insightface ``.bin``) could run any command. Here a pickle
may name only the few classes the caller allows; plain data (numbers, strings,
bytes, lists, tuples, dicts, booleans, None) needs none. Anything else is refused
before it is called.
"""
import io
import pickle

# Python 3 writes bytes at protocol 2 as _codecs.encode(text, 'latin1'): a pure function.
BYTES_AT_PROTOCOL_2 = {('_codecs', 'encode')}


class UnsafePickle(pickle.UnpicklingError):
    """The pickle names a callable the caller did not allow (or is not a pickle at all)."""


class _Restricted(pickle.Unpickler):
    def __init__(self, stream, allowed, **kwargs):
        super(_Restricted, self).__init__(stream, **kwargs)
        self._allowed = set(allowed) | BYTES_AT_PROTOCOL_2

    def find_class(self, module, name):
        if (module, name) not in self._allowed:
            raise UnsafePickle('it names %s.%s, which a data file has no need of: refused, nothing was run'
                               % (module, name))
        return super(_Restricted, self).find_class(module, name)


def loads(blob, allowed=(), encoding='ASCII'):
    """The object pickled in ``blob``, built only from plain data and the ``allowed``
    (module, name) classes; UnsafePickle otherwise (also for bytes that are no pickle).
    ``encoding='bytes'`` reads Python 2 pickles' strings as bytes."""
    try:
        return _Restricted(io.BytesIO(blob), allowed, encoding=encoding).load()
    except UnsafePickle:
        raise
    except Exception as e:  # truncated or not a pickle: also one message
        raise UnsafePickle('not a readable pickle (%s: %s)' % (type(e).__name__, e))
