"""`manage.py bench_wado`, written in bench/archive/bench_wado.py."""

from bench.archive.bench_wado import Command

__all__ = ["Command"]
