"""`manage.py bench_mdt`, written in bench/mdt/bench_mdt.py."""

from bench.mdt.bench_mdt import Command

__all__ = ["Command"]
