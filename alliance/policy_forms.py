"""The deadline policy's form: the model's own labels and help, the alliance's choices."""

from __future__ import annotations

from typing import Any

from django import forms

from tenants.access import Scope

from .models import Alliance, AlliancePolicy
from .policy_services import (
    POLICY_FIELDS,
    policy_duty_officer_choices,
    policy_pool_choices,
)


class AlliancePolicyForm(forms.Form):
    def __init__(self, *args: Any, scope: Scope, alliance: Alliance, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields.update(forms.fields_for_model(AlliancePolicy, fields=POLICY_FIELDS))
        pool = self.fields["fallback_pool"]
        officer = self.fields["duty_officer"]
        assert isinstance(pool, forms.ModelChoiceField)
        assert isinstance(officer, forms.ModelChoiceField)
        pool.queryset = policy_pool_choices(scope=scope, alliance=alliance)
        officer.queryset = policy_duty_officer_choices(scope=scope, alliance=alliance)
        for name in ("stat_minutes", "urgent_minutes", "routine_minutes"):
            self.fields[name].widget.attrs["min"] = 1
        self.fields["warn_fraction"].widget.attrs.update({"min": 0.05, "max": 0.95, "step": 0.05})
