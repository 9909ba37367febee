"""What can stop a run, and how the project keeps a stop from costing more than it must: the errors a
user can cause and their exit statuses, Ctrl-C and SIGTERM, files written whole, pickles read without
running their code."""
