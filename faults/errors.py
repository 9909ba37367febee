"""What a user can cause that stops a command, one family with the exit status of each (main.py
prints the message on one line and exits with it), and the stretches of a run where a failed write
must name its file. Signals are faults/signals.py's."""
import contextlib
import os
import sys

# Exit statuses, one meaning each: 0 done, 2 bad input (one line; nothing was trained or changed), 3 the loss
# became NaN or infinite (the epochs before are kept), 74 a write failed mid-run (EX_IOERR), 130 Ctrl-C and
# 143 SIGTERM (the last completed epoch is kept; the message says how to resume), 141 standard output closed.
EXIT_USAGE, EXIT_DIVERGED, EXIT_IO, EXIT_INT, EXIT_TERM = 2, 3, 74, 130, 143
EXIT_PIPE = 141  # 128 + SIGPIPE, what a shell shows for a program whose output's reader went away (`| head`)


class UserError(Exception):
    """A problem the user can fix (a flag, a missing or broken file): one line, exit 2, nothing changed."""
    status = EXIT_USAGE


class DataError(UserError):
    """Images, labels or pair lists that are missing, corrupt, or not what their files announce: the
    message names the file or folder."""


class CheckpointError(UserError):
    """A checkpoint that is missing, truncated, foreign or does not fit the network."""


class CheckpointNotFound(CheckpointError):
    pass


class SaveError(UserError):
    """A write that failed mid-run (disk full, permission, folder removed): the stage stops, exit 74."""
    status = EXIT_IO


class Diverged(UserError):
    """The loss became NaN or infinite: the stage stops, the checkpoints of its earlier epochs are kept (exit 3).
    ``retry``: the flags (and values) that may let it train, for the command line the message ends with."""
    status = EXIT_DIVERGED

    def __init__(self, message, retry=()):
        super(Diverged, self).__init__(message)
        self.retry = list(retry)


TRAINING_STOPPED = 'the stage stopped; the checkpoints and pictures of the epochs before are kept'
NO_CHECKPOINT_CHANGED = 'no checkpoint changed'  # --verify, --compare: they only read checkpoints


@contextlib.contextmanager
def saved(what, consequence=TRAINING_STOPPED):
    """Turn a failed write into SaveError naming the file that failed (``what`` when the error
    names none); what was saved before stays."""
    try:
        yield
    except BrokenPipeError:
        raise  # stdout's reader went away (a report line within the block): not a failed save
    except OSError as error:
        raise SaveError('could not write %s (%s): %s' % (error.filename or what, error.strerror or error,
                                                         consequence))


def stdout_closed(message):
    """Standard output's reader went away (`python main.py ... | head`): what is still printed goes nowhere
    (no second error at exit), and ``message`` goes to stderr if that is still open."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    try:
        print(message, file=sys.stderr, flush=True)
    except OSError:
        pass
