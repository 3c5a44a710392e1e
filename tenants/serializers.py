"""Request bodies the API reads: strict about their field names.

A JSON (or form) body naming a field the operation does not take is refused with 400 and a
sentence naming it, before any other check of the body: a misspelt `priorty` must not be
dropped silently while the request succeeds with the default. Every serializer that reads a
request body derives from `StrictSerializer` (or mixes in `StrictFieldsMixin`), nested ones
included; an action that takes no body at all is decorated with `takes_no_body`.

A field the object has but the client may not write (`id`, `created_at`: read-only) is
ignored as before, so a client may send back an object it fetched. Serializers that read
query parameters (`?format=`, `?limit=`, filters) are not strict: an unknown query
parameter is ignored, as the web expects.

tests/test_api_unknown_fields.py walks every write operation of the OpenAPI document and
fails on one that is not strict; the schema says `additionalProperties: false` for these
bodies (tenants/openapi.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from rest_framework import serializers
from rest_framework.fields import Field
from rest_framework.settings import api_settings

UNKNOWN_FIELD = "unknown_field"
# An unknown name is echoed back: at most this many, each cut to this length, so a body of
# ten thousand invented keys does not come back as a ten-thousand-line refusal.
NAMES_SHOWN = 10
NAME_SHOWN_LENGTH = 64

Handler = TypeVar("Handler", bound=Callable[..., Any])


def _shown(name: str) -> str:
    return name if len(name) <= NAME_SHOWN_LENGTH else name[: NAME_SHOWN_LENGTH - 1] + "…"


def unknown_fields_message(unknown: list[str], writable: list[str]) -> str:
    """One sentence naming the unknown fields and the ones the request takes."""
    names = ", ".join(f'"{_shown(name)}"' for name in unknown[:NAMES_SHOWN])
    if len(unknown) > NAMES_SHOWN:
        names += ", …"
    if not writable:
        return ngettext(
            "Unknown field %(names)s: this request takes no fields.",
            "Unknown fields %(names)s: this request takes no fields.",
            len(unknown),
        ) % {"names": names}
    return ngettext(
        "Unknown field %(names)s: this request takes %(fields)s.",
        "Unknown fields %(names)s: this request takes %(fields)s.",
        len(unknown),
    ) % {"names": names, "fields": ", ".join(writable)}


def unknown_fields_refuse(data: object, *, fields: Mapping[str, Field]) -> None:
    """Raise a 400 (code `unknown_field`) if the body `data` names a key not in `fields`.

    `detail` names them all in one sentence (with the fields the request does take) and
    `fields` lists each under its own name. Bodies that are not objects are left to the
    serializer, which refuses them in its own words.
    """
    if not isinstance(data, Mapping):
        return
    unknown = [str(key) for key in data if key not in fields]
    if not unknown:
        return
    writable = [name for name, field in fields.items() if not field.read_only]
    reason = _("Not a field of this request.")
    general = api_settings.NON_FIELD_ERRORS_KEY
    refusal: dict[str, list[str]] = {general: [unknown_fields_message(unknown, writable)]}
    # A key named like the refusal's own keys is named by the sentence only.
    for name in unknown[:NAMES_SHOWN]:
        if name not in (general, "detail"):
            refusal[_shown(name)] = [reason]
    raise serializers.ValidationError(refusal, code=UNKNOWN_FIELD)


# No docstrings on these classes: drf-spectacular would give every request body in the
# OpenAPI document the base class's docstring as its description.


class StrictFieldsMixin:
    # Refuses body keys that are not fields of the serializer (see the module); mixed into a
    # `serializers.Serializer`, before it, so this runs first.

    def to_internal_value(self, data: Any) -> Any:
        assert isinstance(self, serializers.Serializer), "mix into a Serializer"
        unknown_fields_refuse(data, fields=self.fields)
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictSerializer(StrictFieldsMixin, serializers.Serializer):
    pass  # the base of every serializer that reads a request body


class StrictModelSerializer(StrictFieldsMixin, serializers.ModelSerializer):
    pass  # a ModelSerializer that also reads a request body


def takes_no_body(handler: Handler) -> Handler:
    """For an action whose request has no body (claim, revoke...): a body naming any field
    is refused like an unknown field of a serializer. An empty body or `{}` is fine."""

    @functools.wraps(handler)
    def checked(view: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        unknown_fields_refuse(request.data, fields={})
        return handler(view, request, *args, **kwargs)

    return checked  # type: ignore[return-value]
