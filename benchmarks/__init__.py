"""Reproducible performance harness of the service (`uv run python -m benchmarks [--smoke]`).

Every figure is a ratio to a floor measured in the same run on the same machine: the machines
this runs on are small and shared, so absolute numbers travel badly and ratios travel well.
Results go to `benchmarks/RESULTS.md` and `benchmarks/results.json`.
"""
