"""Where and how a run computes: MXNet made importable and fast (``compat``, imported before mxnet
everywhere), the devices and precision of a run, several workers and their launcher."""
