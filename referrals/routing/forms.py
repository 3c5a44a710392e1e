"""Forms of the routing console: real choices (referral kinds, DICOM modalities, the
alliance's sites, pools and eligible readers) instead of free text."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from alliance.models import Alliance, ReaderPool, Tier
from referrals.models import Priority, ReferralKind
from tenants.models import Institution, User

from .services import MAX_WEEKS

# DICOM Modality (0008,0060) defined terms an imaging alliance routes by (PS3.3 C.7.3.1.1.1).
MODALITIES = [
    ("CT", _("CT — computed tomography")),
    ("MR", _("MR — magnetic resonance")),
    ("CR", _("CR — computed radiography")),
    ("DX", _("DX — digital radiography")),
    ("MG", _("MG — mammography")),
    ("US", _("US — ultrasound")),
    ("XA", _("XA — X-ray angiography")),
    ("RF", _("RF — radio fluoroscopy")),
    ("NM", _("NM — nuclear medicine")),
    ("PT", _("PT — PET")),
    ("IO", _("IO — intra-oral radiography")),
    ("PX", _("PX — panoramic X-ray")),
    ("ES", _("ES — endoscopy")),
    ("OP", _("OP — ophthalmic photography")),
]
# DICOM Body Part Examined (0018,0015) defined terms (PS3.16 Annex L), offered as suggestions.
BODY_PARTS = [
    ("HEAD", _("Head")),
    ("BRAIN", _("Brain (neuro)")),
    ("NECK", _("Neck")),
    ("CHEST", _("Chest")),
    ("BREAST", _("Breast")),
    ("HEART", _("Heart")),
    ("ABDOMEN", _("Abdomen")),
    ("PELVIS", _("Pelvis")),
    ("CSPINE", _("Cervical spine")),
    ("TSPINE", _("Thoracic spine")),
    ("LSPINE", _("Lumbar spine")),
    ("SHOULDER", _("Shoulder")),
    ("HIP", _("Hip")),
    ("KNEE", _("Knee")),
    ("EXTREMITY", _("Extremity")),
]
ANY = [("", _("Any"))]
WEEKDAY_CHOICES = [
    ("0", _("Mon")),
    ("1", _("Tue")),
    ("2", _("Wed")),
    ("3", _("Thu")),
    ("4", _("Fri")),
    ("5", _("Sat")),
    ("6", _("Sun")),
]


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%Y-%m-%d", **kwargs)  # what <input type=date> reads


class TimeInput(forms.TimeInput):
    input_type = "time"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="%H:%M", **kwargs)


class ReaderChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.display_name)


class PoolChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.display_name} · {obj.institution.display_name}"


class InstitutionChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.display_name)


class PoolForm(forms.Form):
    alliance = forms.ModelChoiceField(label=_("Alliance"), queryset=Alliance.objects.none())
    institution = InstitutionChoiceField(
        label=_("Reading institution"), queryset=Institution.objects.none()
    )
    name = forms.CharField(label=_("Pool name (Chinese)"), max_length=120)
    name_en = forms.CharField(label=_("Pool name (English)"), max_length=120, required=False)
    subspecialty = forms.CharField(
        label=_("Subspecialty"),
        max_length=40,
        required=False,
        help_text=_("e.g. thoracic, neuro; blank for a general pool."),
    )
    cap = forms.IntegerField(
        label=_("Open-case cap"),
        min_value=1,
        initial=200,
        help_text=_("Above this many open cases, new cases overflow to the next pool."),
    )
    roster_required = forms.BooleanField(
        label=_("Only readers on shift"),
        required=False,
        help_text=_("When set, only readers with a roster shift now are chosen."),
    )
    lead = ReaderChoiceField(label=_("Lead"), queryset=User.objects.none(), required=False)
    overflow_to = PoolChoiceField(
        label=_("Overflow to"), queryset=ReaderPool.objects.none(), required=False
    )

    def __init__(
        self,
        *args: Any,
        alliances: QuerySet[Alliance] | None,
        institutions: QuerySet[Institution] | None,
        leads: QuerySet[User],
        overflow: QuerySet[ReaderPool] | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if alliances is None:  # editing: the pool's place does not change
            del self.fields["alliance"]
        else:
            self.fields["alliance"].queryset = alliances  # type: ignore[attr-defined]
            if alliances.count() == 1:
                self.fields["alliance"].initial = alliances.first()
                self.fields["alliance"].widget = forms.HiddenInput()
        if institutions is None:
            del self.fields["institution"]
        else:
            self.fields["institution"].queryset = institutions  # type: ignore[attr-defined]
        self.fields["lead"].queryset = leads  # type: ignore[attr-defined]
        if overflow is None:  # only the alliance's administrator sends cases elsewhere
            del self.fields["overflow_to"]
        else:
            self.fields["overflow_to"].queryset = overflow  # type: ignore[attr-defined]

    def pool_fields(self) -> dict[str, Any]:
        names = ("name", "name_en", "subspecialty", "cap", "roster_required", "lead")
        fields = {name: self.cleaned_data[name] for name in names}
        if "overflow_to" in self.fields:
            fields["overflow_to"] = self.cleaned_data["overflow_to"]
        return fields


class MemberAddForm(forms.Form):
    user = ReaderChoiceField(label=_("Reader"), queryset=User.objects.none())
    capacity = forms.IntegerField(
        label=_("Capacity (open cases)"), min_value=1, max_value=1000, initial=10
    )

    def __init__(self, *args: Any, candidates: QuerySet[User], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = candidates  # type: ignore[attr-defined]


class MemberCapacityForm(forms.Form):
    capacity = forms.IntegerField(label=_("Capacity (open cases)"), min_value=1, max_value=1000)


class ShiftForm(forms.Form):
    user = ReaderChoiceField(label=_("Reader"), queryset=User.objects.none())
    first_day = forms.DateField(label=_("First day"), widget=DateInput())
    starts = forms.TimeField(label=_("From"), widget=TimeInput())
    ends = forms.TimeField(
        label=_("To"),
        widget=TimeInput(),
        help_text=_("A shift that ends at or before its start ends the next day."),
    )
    weekdays = forms.MultipleChoiceField(
        label=_("Repeat on"),
        choices=WEEKDAY_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text=_("Leave empty for the one day only."),
    )
    weeks = forms.IntegerField(
        label=_("For how many weeks"), min_value=1, max_value=MAX_WEEKS, initial=1
    )

    def __init__(self, *args: Any, members: QuerySet[User], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = members  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("starts") is not None and data.get("starts") == data.get("ends"):
            self.add_error("ends", _("A shift ends after it starts."))
        return data

    def weekday_set(self) -> frozenset[int]:
        return frozenset(int(day) for day in self.cleaned_data["weekdays"])


def _with_current(choices: list[tuple[str, Any]], current: str) -> list[tuple[str, Any]]:
    """Keep a value saved before the list existed choosable, so an edit does not lose it."""
    if current and current.upper() not in {value for value, _label in choices}:
        return [*choices, (current.upper(), current.upper())]
    return choices


class RuleForm(forms.Form):
    alliance = forms.ModelChoiceField(label=_("Alliance"), queryset=Alliance.objects.none())
    name = forms.CharField(label=_("Name"), max_length=120)
    source_institution = InstitutionChoiceField(
        label=_("From site"),
        queryset=Institution.objects.none(),
        required=False,
        empty_label=_("Any"),
    )
    source_tier = forms.ChoiceField(
        label=_("From tier"), choices=ANY + Tier.choices, required=False
    )
    kind = forms.ChoiceField(
        label=_("Referral kind"), choices=ANY + ReferralKind.choices, required=False
    )
    modality = forms.ChoiceField(label=_("Modality"), choices=ANY + MODALITIES, required=False)
    body_part = forms.CharField(
        label=_("Body part"),
        max_length=64,
        required=False,
        help_text=_("A DICOM body part, e.g. CHEST; blank for any."),
        widget=forms.TextInput(attrs={"list": "body-parts", "autocomplete": "off"}),
    )
    priority = forms.ChoiceField(
        label=_("Priority"), choices=ANY + Priority.choices, required=False
    )
    time_from = forms.TimeField(label=_("From time of day"), required=False, widget=TimeInput())
    time_to = forms.TimeField(
        label=_("To time of day"),
        required=False,
        widget=TimeInput(),
        help_text=_("Local time; a window may pass midnight (22:00 to 08:00)."),
    )
    pool = PoolChoiceField(label=_("To pool"), queryset=ReaderPool.objects.none())

    def __init__(
        self,
        *args: Any,
        alliances: QuerySet[Alliance] | None,
        sources: QuerySet[Institution],
        pools: QuerySet[ReaderPool],
        current_modality: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if alliances is None:
            del self.fields["alliance"]
        else:
            self.fields["alliance"].queryset = alliances  # type: ignore[attr-defined]
            if alliances.count() == 1:
                self.fields["alliance"].initial = alliances.first()
                self.fields["alliance"].widget = forms.HiddenInput()
        self.fields["source_institution"].queryset = sources  # type: ignore[attr-defined]
        self.fields["pool"].queryset = pools  # type: ignore[attr-defined]
        modality = self.fields["modality"]
        modality.choices = _with_current(ANY + MODALITIES, current_modality)  # type: ignore[attr-defined]

    def clean_body_part(self) -> str:
        return str(self.cleaned_data["body_part"]).strip().upper()

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if (data.get("time_from") is None) != (data.get("time_to") is None):
            self.add_error("time_to", _("Give both ends of the time window, or neither."))
        return data

    def rule_fields(self) -> dict[str, Any]:
        names = (
            "name",
            "source_institution",
            "source_tier",
            "kind",
            "modality",
            "body_part",
            "priority",
            "time_from",
            "time_to",
            "pool",
        )
        return {name: self.cleaned_data[name] for name in names}
