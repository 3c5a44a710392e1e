"""Messages kept as a code with parameters and put into words when read, in the reader's language.

Notifications, routing explanations and timeline notes are stored as `{"code", "params"}`,
never as a finished sentence in the language of whoever happened to write them. Each app
registers its codes when it is ready (its messages.py: `register_messages({...})`), the way
access rules are registered, so this module imports nothing above the foundation.

A parameter is a value, not a sentence: numbers and the words a person typed stay as they
are; a name keeps both its forms (`name`, `person`), a coded value keeps its code and is shown
through its label (`choice`), a DICOM person name is formatted for the reader (`pn`), a time
is kept as a time (`moment`), and a message may carry other messages (`message`, `steps`).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils import timezone, translation
from django.utils.formats import date_format
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from .models import Institution, Role, User, bilingual, person_name

logger = logging.getLogger(__name__)

Text = str | Promise
Step = dict[str, Any]  # {"code": ..., "params": {...}}, as stored


@dataclass(frozen=True)
class MessageTemplate:
    """The words of one code: `%(name)s` placeholders filled from the parameters.

    A plain (untranslated) `str` pattern is for bodies that are only a parameter, such as
    the words a person typed ("%(text)s"). A plural comes from `ngettext_lazy(..., "n")`.
    """

    title: Text
    body: Text = ""


_MESSAGES: dict[str, MessageTemplate] = {}
_CHOICES: dict[str, Mapping[str, Text]] = {}
_FORMATTERS: dict[str, Callable[[str], str]] = {}


def register_messages(messages: Mapping[str, MessageTemplate | Text]) -> None:
    """Add an app's message codes ("referral.assigned" → its words); once each."""
    for code, template in messages.items():
        if not isinstance(template, MessageTemplate):
            template = MessageTemplate(title=template)
        if code in _MESSAGES and _MESSAGES[code] != template:
            raise ImproperlyConfigured(f"two messages for {code}")
        _MESSAGES[code] = template


def register_choices(choices: Mapping[str, Any]) -> None:
    """Name sets of coded values for `choice(...)`: a TextChoices class or {code: label}."""
    for name, values in choices.items():
        labels = dict(values.choices) if hasattr(values, "choices") else dict(values)
        if name in _CHOICES and _CHOICES[name] != labels:
            raise ImproperlyConfigured(f"two choice sets named {name}")
        _CHOICES[name] = labels


def register_formatter(kind: str, formatter: Callable[[str], str]) -> None:
    """A way to show a stored value for reading (e.g. "pn": DICOM person names)."""
    if _FORMATTERS.get(kind, formatter) is not formatter:
        raise ImproperlyConfigured(f"two formatters for {kind}")
    _FORMATTERS[kind] = formatter


def registered_codes() -> frozenset[str]:
    return frozenset(_MESSAGES)


# --- Parameters ------------------------------------------------------------------------------


def name(native: str, english: str = "") -> dict[str, Any]:
    """A name in both forms (Chinese, English): the reader's form is shown."""
    return {"k": "name", "zh": native or "", "en": english or ""}


def institution_name(institution: Institution | None) -> dict[str, Any] | str:
    if institution is None:
        return ""
    return name(institution.name, institution.name_en)


def person(user: User | None) -> dict[str, Any] | str:
    """A user's name as User.display_name shows it, in the reader's language."""
    if user is None:
        return ""
    return {"k": "person", "zh": user.name, "en": user.name_en, "login": user.username}


def choice(of: str, value: str) -> dict[str, Any]:
    """A coded value (a tier, a reason, a role) shown through its label."""
    return {"k": "choice", "of": of, "v": value}


def pn(value: str) -> dict[str, Any]:
    """A DICOM person name (PN), shown in the reader's language."""
    return {"k": "pn", "v": value or ""}


def moment(value: dt.datetime) -> dict[str, Any]:
    """A point in time, shown in the hub's time zone in the reader's date format."""
    return {"k": "moment", "v": value.isoformat()}


def message(code: str, **params: Any) -> dict[str, Any]:
    """A message inside another (its title is used)."""
    return {"k": "msg", "code": code, "params": params}


def step(code: str, **params: Any) -> Step:
    """One stored line of an explanation."""
    return {"code": code, "params": params}


def steps(items: Iterable[Step], separator: str = "; ") -> dict[str, Any]:
    """Several stored lines, shown joined."""
    return {"k": "steps", "items": list(items), "sep": separator}


# --- Reading ---------------------------------------------------------------------------------


class _UnknownMessageError(Exception):
    pass


def _value(param: Any) -> Any:
    if not isinstance(param, dict):
        return param
    kind = param.get("k")
    if kind == "name":
        return bilingual(param.get("zh", ""), param.get("en", "")) or param.get("en", "")
    if kind == "person":
        return person_name(param.get("zh", ""), param.get("en", ""), param.get("login", ""))
    if kind == "choice":
        labels = _CHOICES.get(param.get("of", ""), {})
        value = param.get("v", "")
        return str(labels.get(value, value))
    if kind == "moment":
        at = dt.datetime.fromisoformat(str(param.get("v", "")))
        return date_format(timezone.localtime(at), "Y-m-d H:i")
    if kind == "msg":
        return _words(param.get("code", ""), param.get("params") or {}, "title")
    if kind == "steps":
        return str(param.get("sep", "; ")).join(
            _words(s.get("code", ""), s.get("params") or {}, "title")
            for s in param.get("items", [])
        )
    formatter = _FORMATTERS.get(str(kind))
    if formatter is not None:
        return formatter(str(param.get("v", "")))
    raise _UnknownMessageError(f"parameter kind {kind!r}")


def _words(code: str, params: Mapping[str, Any], part: str) -> str:
    template = _MESSAGES.get(code)
    if template is None:
        raise _UnknownMessageError(f"message code {code!r}")
    pattern = template.title if part == "title" else template.body
    if not pattern:
        return ""
    values = {key: _value(value) for key, value in params.items()}
    # `%` on the lazy text itself: an ngettext_lazy picks its form from the number given.
    return str(pattern % values).strip()


def message_text(
    code: str,
    params: Mapping[str, Any] | None = None,
    *,
    part: str = "title",
    fallback: str = "",
    language: str | None = None,
) -> str:
    """The words of `code` in the active language (or `language`); `fallback` when the code
    or a parameter is unknown (a row written by another release) or the words do not fit."""
    if not code:
        return fallback
    try:
        if language:
            with translation.override(language):
                return _words(code, params or {}, part)
        return _words(code, params or {}, part)
    except (_UnknownMessageError, KeyError, TypeError, ValueError) as exc:
        logger.warning("message %s not rendered: %s", code, exc)
        return fallback


def steps_text(items: Iterable[Step] | None, *, separator: str = "; ", fallback: str = "") -> str:
    """A stored explanation (a list of steps) in the active language."""
    lines = list(items or [])
    if not lines:
        return fallback
    try:
        return separator.join(
            _words(s.get("code", ""), s.get("params") or {}, "title") for s in lines
        )
    except (_UnknownMessageError, KeyError, TypeError, ValueError, AttributeError) as exc:
        logger.warning("explanation not rendered: %s", exc)
        return fallback


# --- The foundation's own codes --------------------------------------------------------------

register_choices({"role": Role})
register_messages(
    {
        "membership.granted": _("You are now %(role)s at %(institution)s"),
    }
)
