"""Benchmarks: one script per figure, each writing JSON to bench/results/ (run all: python -m bench)."""
