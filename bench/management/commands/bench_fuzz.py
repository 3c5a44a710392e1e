"""`manage.py bench_fuzz`, written in bench/archive/bench_fuzz.py."""

from bench.archive.bench_fuzz import Command

__all__ = ["Command"]
