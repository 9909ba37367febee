"""Ctrl-C and SIGTERM: the first one decides a stop, which unwinds, saves and says how to resume
(exit 130 or 143); the stretches of a run where a stop must wait for a save; Ctrl-C while a script
is still loading its modules."""
import contextlib
import os
import signal
import sys
import threading

from faults.errors import EXIT_INT, EXIT_TERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, docker stop, Slurm, Kubernetes): handled like Ctrl-C, exit 143."""


def on_stop(signum, frame):
    """Ctrl-C (KeyboardInterrupt) or SIGTERM (Terminated) stops the run; both are ignored from then on.

    The stop unwinds, saves and says how to resume. A second signal would break into that with a
    traceback: Ctrl-C pressed twice, or a supervisor's SIGTERM that follows the terminal's SIGINT (Ctrl-C
    in a terminal reaches bench/heads.py and its main.py alike, and heads.py then stops main.py). The first
    signal decides the stop. A handler that does nothing, rather than SIG_IGN, so that a signal already
    caught and waiting for the interpreter is dropped quietly (SIG_IGN makes Python warn of a race).
    """
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _stopping)
    _asked.append(signum)
    raise _stop_of(signum)


def _stop_of(signum):
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


_asked = []  # the signal on_stop took, kept: the exception it raises may land in a library's bare except


def raise_if_stopped():
    """Raise the stop on_stop was asked for, if the exception it raised never came out (library code that
    swallows everything, such as a bare ``except:``, was running when the signal came, and from then on
    signals are ignored): long loops call it between their steps."""
    if _asked:
        raise _stop_of(_asked[0])


def stopped(e):
    """(word, exit status) of a stop: ('terminated', 143) for SIGTERM, ('interrupted', 130) for Ctrl-C."""
    return ('terminated', EXIT_TERM) if isinstance(e, Terminated) else ('interrupted', EXIT_INT)


def _stopping(signum, frame):
    """A second Ctrl-C or SIGTERM while a stop is being handled: the first one's stop goes on."""


def quiet_ctrl_c_while_loading():
    """Ctrl-C while a script loads its modules (mxnet takes a second or two): one line and exit 130, not the
    traceback of the import it broke into. Called first thing by a script run as a script (not on import:
    tests import main.py); ``stops_handled`` takes over once the script runs. SIGINT ignored from the start
    (nohup, a background job) stays ignored."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_while_loading)


def _interrupted_while_loading(signum, frame):
    # nothing has been read or written yet; os._exit, so that no import half done runs any more code
    sys.stderr.write('\ninterrupted while starting: nothing was done\n')
    sys.stderr.flush()
    os._exit(EXIT_INT)


@contextlib.contextmanager
def stops_handled():
    """Ctrl-C and SIGTERM stop through on_stop within the block, and the handlers of before are back after
    it (main() is also called in-process, by tests and other programs). A signal ignored from the start
    (SIGINT under nohup or in a background job) stays ignored."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread sets handlers
        yield
        return
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    del _asked[:]  # a stop of an earlier block of this process is not this one's
    for s, handler in before.items():
        if handler is not signal.SIG_IGN:
            signal.signal(s, on_stop)
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def signals_deferred():
    """Hold Ctrl-C and SIGTERM until the block is done, then act on the first that came.

    An epoch's report, pictures and checkpoint are one step for the user: a signal
    arriving between the report line and the save would lose an epoch the user
    saw finish. A signal the process ignores (SIGINT under nohup) stays ignored.
    The block gets the list of the signals held so far: a loop of training steps
    looks at it between steps, saves where it is, and ends the block, which stops.
    """
    held, handlers = [], {}
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield held
        return

    def hold(signum, frame):
        held.append(signum)
    for signum in (signal.SIGINT, signal.SIGTERM):
        before = signal.getsignal(signum)
        if before in (signal.SIG_IGN, None):
            continue
        handlers[signum] = before
        signal.signal(signum, hold)
    try:
        yield held
    finally:
        for signum, before in handlers.items():
            signal.signal(signum, before)
    if held:  # after the block, as if the signal had come now
        handler = handlers[held[0]]
        if callable(handler):  # on_stop (it ignores the next ones), Python's own Ctrl-C handler, ...
            handler(held[0], None)
            return
        raise Terminated() if held[0] == signal.SIGTERM else KeyboardInterrupt()  # SIG_DFL: stop, saved
