"""The API's page parameters: DRF's limit and offset, refusing numbers no database can use."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

# PostgreSQL's LIMIT and OFFSET are 64-bit; a bigger number failed in the database (a 500).
# No page of any list comes near this, so anything above it is a mistake worth saying.
MAX_PAGE_NUMBER = 2**31 - 1


def _refuse_out_of_range(request: Request, name: str) -> None:
    raw = request.query_params.get(name)
    if raw is None:
        return
    try:
        value = int(raw)
    except ValueError:
        return  # DRF falls back to its default for what is not a number at all
    if value > MAX_PAGE_NUMBER:
        raise ValidationError(
            {
                name: [
                    _("%(name)s must be at most %(max)d.") % {"name": name, "max": MAX_PAGE_NUMBER}
                ]
            }
        )


class HubLimitOffsetPagination(LimitOffsetPagination):
    """LimitOffsetPagination with a 400 for a limit or offset beyond any real list."""

    def get_limit(self, request: Request) -> Any:
        if self.limit_query_param:
            _refuse_out_of_range(request, self.limit_query_param)
        return super().get_limit(request)

    def get_offset(self, request: Request) -> Any:
        _refuse_out_of_range(request, self.offset_query_param)
        return super().get_offset(request)
