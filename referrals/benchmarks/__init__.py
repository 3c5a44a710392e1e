"""Shared code of the `manage.py bench_*` commands (docs/benchmarks.md): corpus, timing, processes."""
