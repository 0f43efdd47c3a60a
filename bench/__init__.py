"""Benchmarks: `make bench` runs `python -m bench.sweep_throughput`."""
