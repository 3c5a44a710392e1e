"""`manage.py bench_ingest_memory`, written in bench/archive/bench_ingest_memory.py."""

from bench.archive.bench_ingest_memory import Command

__all__ = ["Command"]
