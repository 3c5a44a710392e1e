"""`manage.py bench_worklist`, written in bench/worklists/bench_worklist.py."""

from bench.worklists.bench_worklist import Command

__all__ = ["Command"]
