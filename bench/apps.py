"""The bench app: registers the `manage.py bench_*` and `seed_scale` commands, nothing else."""

from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "bench"
    verbose_name = "Benchmarks"
