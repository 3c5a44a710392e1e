"""`manage.py bench_routing`, written in bench/worklists/bench_routing.py."""

from bench.worklists.bench_routing import Command

__all__ = ["Command"]
