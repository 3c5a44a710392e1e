"""Worklist benchmarks: routing onto a worklist, claiming from it, reading it."""
