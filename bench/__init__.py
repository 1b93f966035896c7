"""Benchmarks: speed and memory targets, run with `make bench` (never timing asserts in tests)."""
