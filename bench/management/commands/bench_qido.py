"""`manage.py bench_qido`, written in bench/archive/bench_qido.py."""

from bench.archive.bench_qido import Command

__all__ = ["Command"]
