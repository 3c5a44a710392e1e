"""`manage.py bench_gateway`, written in bench/archive/bench_gateway.py."""

from bench.archive.bench_gateway import Command

__all__ = ["Command"]
