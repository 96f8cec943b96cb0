"""Benchmarks: each module prints a table comparing quietsync with a raw baseline."""
