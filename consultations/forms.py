"""Forms of the MDT scheduling pages. Times are typed in the user's time zone (the active
one) and leave here as aware datetimes; the rules of a window live in services.py."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from alliance.models import Alliance
from tenants.models import Role

from .models import InvitationAnswer, SessionCase, SessionKind, SessionRole

DATE_INPUT = forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
TIME_INPUT = forms.TimeInput(attrs={"type": "time"}, format="%H:%M")


def aware(day: date, at: time) -> datetime:
    """A wall-clock time of the active time zone as an aware datetime."""
    return timezone.make_aware(datetime.combine(day, at), timezone.get_current_timezone())


class WindowForm(forms.Form):
    """A day and a start and end time (the session ends the same day)."""

    date = forms.DateField(label=_("Date"), widget=DATE_INPUT)
    start = forms.TimeField(label=_("Starts at"), widget=TIME_INPUT)
    end = forms.TimeField(label=_("Ends at"), widget=TIME_INPUT)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        day, start, end = data.get("date"), data.get("start"), data.get("end")
        if day is not None and start is not None and end is not None:
            data["starts_at"], data["ends_at"] = aware(day, start), aware(day, end)
            if end <= start:
                self.add_error("end", _("The session must end after it starts."))
        return data


def _alliance_label(alliance: Alliance) -> str:
    return alliance.display_name


class ScheduleForm(WindowForm):
    title = forms.CharField(label=_("Title"), max_length=200)
    kind = forms.ChoiceField(label=_("Kind"), choices=SessionKind.choices)
    alliance = forms.ModelChoiceField(
        label=_("Alliance"), queryset=Alliance.objects.none(), empty_label=None
    )
    field_order = ["title", "kind", "alliance", "date", "start", "end"]

    def __init__(self, *args: Any, alliances: QuerySet[Alliance], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        alliance_field = self.fields["alliance"]
        assert isinstance(alliance_field, forms.ModelChoiceField)
        alliance_field.queryset = alliances
        alliance_field.label_from_instance = _alliance_label  # type: ignore[method-assign,assignment]


class CaseSearchForm(forms.Form):
    q = forms.CharField(label=_("Patient, ID, study or question"), max_length=100, required=False)


class CaseAddForm(forms.Form):
    study = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    clinical_summary = forms.CharField(
        label=_("Clinical summary"),
        max_length=10000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class CaseEditForm(forms.Form):
    ACTIONS = ("save", "up", "down", "remove")
    action = forms.ChoiceField(choices=[(a, a) for a in ACTIONS])
    clinical_summary = forms.CharField(
        max_length=SessionCase._meta.get_field("clinical_summary").max_length or 10000,
        required=False,
    )


class DirectoryForm(forms.Form):
    q = forms.CharField(
        label=_("Name, institution, role or subspecialty"), max_length=100, required=False
    )
    role = forms.ChoiceField(
        label=_("Role"),
        required=False,
        choices=[("", _("Any role")), *Role.choices],
    )


INVITABLE_ROLES = [r for r in SessionRole.choices if r[0] != SessionRole.CHAIR]


class InviteForm(forms.Form):
    user = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    institution = forms.IntegerField(min_value=1, widget=forms.HiddenInput)
    role = forms.ChoiceField(
        label=_("Role in the session"), choices=INVITABLE_ROLES, initial=SessionRole.PARTICIPANT
    )


class AnswerForm(forms.Form):
    answer = forms.ChoiceField(
        choices=[
            (InvitationAnswer.ACCEPTED, InvitationAnswer.ACCEPTED.label),
            (InvitationAnswer.DECLINED, InvitationAnswer.DECLINED.label),
        ]
    )
    next = forms.ChoiceField(choices=[("list", "list"), ("session", "session")], required=False)
