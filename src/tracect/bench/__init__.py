"""Benchmarks: data loading throughput (more join with the model)."""
