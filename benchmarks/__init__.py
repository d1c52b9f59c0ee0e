"""Benchmarks: ``python -m benchmarks`` (the peers, side by side) and
``python -m benchmarks.scale_out`` (100,000 points on an 8 GB cube)."""
