"""What can stop a run, and the exit status each gives (main.py catches them)."""


class UserError(Exception):
    """A problem the user can fix (a flag, a missing file): main prints it on one line and exits 2."""


class SaveError(Exception):
    """A write that failed mid-run (disk full, permission, folder removed): the stage stops, exit 74."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, docker stop, Slurm, Kubernetes): handled like Ctrl-C, exit 143."""


# Exit statuses: 0 done, 2 bad input (one line), 74 a write failed mid-run (EX_IOERR),
# 130 Ctrl-C and 143 SIGTERM (the last completed epoch is kept; the message says how to resume).
EXIT_USAGE, EXIT_IO, EXIT_INT, EXIT_TERM = 2, 74, 130, 143
