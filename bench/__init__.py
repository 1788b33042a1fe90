"""Benchmarks: speed, memory and scale, each comparison run side by side in one process run."""
