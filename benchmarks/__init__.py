"""Benchmark scripts: each prints figures and ratios against peers run in the same run."""
