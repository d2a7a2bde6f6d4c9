"""Benchmarks and synthetic data for rerf (synthetic grid sequences, codec benchmark)."""
