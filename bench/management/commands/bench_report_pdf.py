"""`manage.py bench_report_pdf`, written in bench/reporting/bench_report_pdf.py."""

from bench.reporting.bench_report_pdf import Command

__all__ = ["Command"]
