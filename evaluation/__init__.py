"""What a run measures and draws: predictions and accuracies, open-set verification, feature maps and
GIFs, and the commands that read checkpoints and train nothing (--test, --verify, --compare, --export)."""
