"""Datasets: readers for the on-disk formats of the SAM 2 benchmarks, their tfds builders, and a synthetic source."""
