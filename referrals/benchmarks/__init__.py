"""Shared code of the `manage.py bench_*` commands: corpus, timing, processes, profiles."""
