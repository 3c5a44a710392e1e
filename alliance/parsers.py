"""The API's JSON body parser: DRF's own, refusing documents no view can safely walk."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

# Far deeper than any body the hub's serializers read, far shallower than the Python
# recursion limit that serializers, the database adapter and the audit trail would hit
# while walking the document.
MAX_JSON_DEPTH = 64


def _too_deep() -> str:
    return _("The JSON body is nested deeper than %(limit)d levels.") % {"limit": MAX_JSON_DEPTH}


def json_body_problem(document: Any) -> str | None:
    """Why `document` must be refused (too deep, or a NUL character), or None if it is fine.

    Walked with an explicit stack: the point is to survive documents that are too deep
    for recursion.
    """
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return _(
                    "The JSON body holds a NUL character (code point 0), which no "
                    "text field can store."
                )
            continue
        if isinstance(node, dict):
            children = [*node.keys(), *node.values()]
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            return _too_deep()
        pending.extend((child, depth + 1) for child in children)
    return None


class HubJSONParser(JSONParser):
    """JSONParser that answers 400 for bodies nested too deep or holding NUL characters.

    DRF's parser turns only ValueError into a 400: a document deeper than the
    interpreter's recursion limit escaped as RecursionError, a 500.
    """

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        try:
            document = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(_too_deep()) from None
        problem = json_body_problem(document)
        if problem is not None:
            raise ParseError(problem)
        return document
