"""The images a run reads: MNIST-style IDX sets, your own image folders and RecordIO, pair lists for
verification; opened, checked, described, and held in memory or streamed from disk."""
