"""`manage.py bench_claims`, written in bench/worklists/bench_claims.py."""

from bench.worklists.bench_claims import Command

__all__ = ["Command"]
