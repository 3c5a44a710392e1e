"""Template tag: the watermark layer of a staff page's image viewer (`{% viewer_watermark %}`,
placed inside `.viewer-stage` right after its canvas). Renders nothing unless
HUB_VIEWER_WATERMARK is on; the patient's share page does not use it."""

from __future__ import annotations

from typing import Any

from django import template

from referrals.archive.viewer import viewer_watermark as watermark_text
from tenants import access

register = template.Library()


@register.inclusion_tag("referrals/viewer_watermark.html", takes_context=True)
def viewer_watermark(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    text = watermark_text(access.scope_for_request(request)) if request is not None else ""
    return {"watermark": text}
