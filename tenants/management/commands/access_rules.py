"""Print the access layer's table: every model of the hub and the rule that scopes it."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand

from tenants.access import access_rules

APPS = ("tenants", "alliance", "referrals", "reporting", "consultations", "knox")


class Command(BaseCommand):
    help = "List each model with the access rule that decides who sees its rows."

    def handle(self, *args: Any, **options: Any) -> None:
        rules = access_rules()
        for model in apps.get_models():
            if model._meta.app_label not in APPS:
                continue
            label = model._meta.label_lower
            rule = rules.get(label)
            if rule is None:
                where = "no rule: refused by the access layer (fail closed)"
            else:
                where = f"{rule.__module__}.{getattr(rule, '__qualname__', repr(rule))}"
            self.stdout.write(f"{label:<32} {where}")
