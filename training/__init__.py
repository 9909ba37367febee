"""Training a stage: the objective and one step, the schedule, an epoch, a stage from start to its
pictures, and the timed steps that --precision auto measures."""
