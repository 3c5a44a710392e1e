"""Forms of the administration console: invitations, roles, gateway credentials, and the
"forgot your password" form (whose answer never tells whether the address is known)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import PasswordResetForm
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from ..models import ConnectedSystemKind, GatewayCredential, Role, User, ae_title_validator

MAX_AE_TITLES = 50


def _role_choices(role_values: list[str]) -> list[tuple[str, Any]]:
    return [(value, Role(value).label) for value in role_values]


class InviteForm(forms.Form):
    email = forms.EmailField(label=_("E-mail address"))
    username = forms.CharField(
        label=_("User name"),
        max_length=150,
        validators=[User.username_validator],
        help_text=_("Letters, digits and @ . + - _ only; the person signs in with it."),
    )
    name = forms.CharField(label=_("Name (Chinese)"), max_length=100, required=False)
    name_en = forms.CharField(label=_("Name (English)"), max_length=100, required=False)
    language = forms.ChoiceField(label=_("Language of the e-mail"), choices=settings.LANGUAGES)
    role = forms.ChoiceField(label=_("First role"))

    def __init__(self, *args: Any, grantable: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = _role_choices(grantable)  # type: ignore[attr-defined]


class GrantForm(forms.Form):
    role = forms.ChoiceField(label=_("Role"))

    def __init__(self, *args: Any, grantable: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["role"].choices = _role_choices(grantable)  # type: ignore[attr-defined]


class AddExistingForm(GrantForm):
    """Someone who already has an account (at another institution of the alliance)."""

    username = forms.CharField(label=_("User name"), max_length=150)
    field_order = ["username", "role"]


class GatewayCredentialForm(forms.Form):
    label = forms.CharField(
        label=_("Label"),
        max_length=GatewayCredential._meta.get_field("label").max_length,
        help_text=_("Where the gateway runs, e.g. “CT room PC”."),
    )
    calling_ae_titles = forms.CharField(
        label=_("Accepted calling AE titles"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "spellcheck": "false", "autocapitalize": "off"}),
        help_text=_("One per line: the AE titles of the modalities that send to this gateway."),
    )

    def clean_calling_ae_titles(self) -> list[str]:
        """DICOM AE titles (PS3.5 AE): 1-16 characters of printable ASCII, no backslash;
        leading and trailing spaces carry no meaning and are dropped."""
        titles: list[str] = []
        errors: list[ValidationError] = []
        for line in self.cleaned_data["calling_ae_titles"].splitlines():
            title = line.strip()
            if not title:
                continue
            try:
                ae_title_validator(title)
            except ValidationError:
                errors.append(
                    ValidationError(
                        _(
                            "“%(title)s” is not an AE title: 1-16 printable ASCII characters "
                            "without a backslash."
                        ),
                        params={"title": title[:40]},
                        code="ae_title",
                    )
                )
                continue
            if title not in titles:
                titles.append(title)
        if errors:
            raise ValidationError(errors)
        if len(titles) > MAX_AE_TITLES:
            raise ValidationError(
                _("At most %(count)d AE titles per gateway."), params={"count": MAX_AE_TITLES}
            )
        return titles


class ConnectedSystemForm(forms.Form):
    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        help_text=_("Which system reads with it, e.g. “Radiology PACS (Orthanc)”."),
    )
    kind = forms.ChoiceField(label=_("Kind"), choices=ConnectedSystemKind.choices)
    may_store = forms.BooleanField(
        label=_("May also store images (STOW-RS)"),
        required=False,
        help_text=_("Off: it may only search and retrieve the institution's studies."),
    )
    expires_on = forms.DateField(
        label=_("Expires on"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text=_("Leave empty for a credential that lasts until it is revoked."),
    )


class HubPasswordResetForm(PasswordResetForm):
    """Queues the hub's own reset e-mail (a fresh one-time link, in the person's language)
    for each active account with this address; says nothing about whether there was one."""

    def get_users(self, email: str) -> Any:
        # Also those invited who have not chosen a password yet: they get their invitation
        # again (Django's form leaves out every account without a usable password).
        return User.objects.filter(email__iexact=email, is_active=True)

    def save(self, *args: Any, **kwargs: Any) -> None:
        from .services import password_reset_request

        password_reset_request(users=list(self.get_users(self.cleaned_data["email"])))
