"""`manage.py bench_report_delivery`, written in bench/reporting/bench_report_delivery.py."""

from bench.reporting.bench_report_delivery import Command

__all__ = ["Command"]
