"""A run as it is kept: the records that describe it, its checkpoints, the names of its files, and the
lock that keeps two runs of one prefix apart."""
