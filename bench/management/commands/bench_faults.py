"""`manage.py bench_faults`, written in bench/faults/bench_faults.py."""

from bench.faults.bench_faults import Command

__all__ = ["Command"]
