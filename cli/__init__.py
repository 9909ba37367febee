"""The command line behind main.py: the flags, and what a command starts from (the records of a run,
built from the flags or read back from a checkpoint)."""
