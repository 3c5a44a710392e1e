"""`manage.py bench_room_restart`, written in bench/faults/bench_room_restart.py."""

from bench.faults.bench_room_restart import Command

__all__ = ["Command"]
