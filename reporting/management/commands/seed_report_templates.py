"""manage.py seed_report_templates: the starter templates for every alliance (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from alliance.models import Alliance
from reporting.seed import templates_seed


class Command(BaseCommand):
    help = (
        "Add the starter report templates (CT chest, CT head, DR chest, US abdomen, "
        "MR knee) to every alliance that lacks them."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for alliance in Alliance.objects.order_by("code"):
            added = templates_seed(alliance=alliance)
            self.stdout.write(f"{alliance.code}: {added} template(s) added")
