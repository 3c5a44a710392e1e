"""WADO-RS pixel resources: frames, rendered frames and thumbnails (PS3.18 8.7.3, 9.5, 10.4.4).

Every lookup goes through the access layer; every answer carries an ETag (the instance's
SHA-256 and the rendering asked for) so a viewer scrolling back gets 304s, and the first
look at a study's images by a user is audited (then at most once per few minutes).
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from django.core.cache import cache
from django.db.models import F
from django.http import Http404, HttpResponse
from django.utils.translation import gettext as _
from rest_framework.request import Request

from referrals.archive import rendering, selectors
from referrals.archive.dicomweb.base import DicomWebView
from referrals.archive.rendering import RenderError, RenderOptions, RenderParamError
from referrals.models import Instance, Series, Study
from tenants import access
from tenants.audit import AuditCode, audit_record
from tenants.models import AuditEvent

# Private: another user of the same browser profile must not get a cached image; short,
# because a grant can end. The ETag makes revalidation cheap after that.
CACHE_CONTROL = "private, max-age=600"
AUDIT_THROTTLE_SECONDS = 300
MAX_FRAMES_PER_REQUEST = 1000
UNCOMPRESSED_TS = "1.2.840.10008.1.2.1"


# --- Lookups through the access layer --------------------------------------------------------


def _first_or_404(queryset: Any) -> Any:
    # A grant may one day show two institutions' copies of one UID: the first stored wins,
    # as in WADO-RS retrieve, and never a 500 for "more than one".
    found = queryset.order_by("pk").first()
    if found is None:
        raise Http404
    return found


def study_for_uid(scope: access.Scope, study_uid: str) -> Study:
    return _first_or_404(selectors.study_list(scope=scope).filter(study_uid=study_uid))


def series_for_uids(scope: access.Scope, study_uid: str, series_uid: str) -> Series:
    return _first_or_404(
        selectors.series_list(scope=scope, study_uid=study_uid)
        .filter(series_uid=series_uid)
        .select_related("study")
    )


def instance_for_uids(
    scope: access.Scope, study_uid: str, series_uid: str, sop_uid: str
) -> Instance:
    return _first_or_404(
        selectors.instance_list(
            scope=scope, study_uid=study_uid, series_uid=series_uid, sop_uid=sop_uid
        )
        .select_related("study", "series")
        .defer("metadata")
    )


# --- Request parsing ---------------------------------------------------------------------------


def _media_ranges(header: str) -> list[tuple[str, dict[str, str], float]]:
    """An Accept header as (type, params, q), best first (stable for equal q)."""
    ranges = []
    for position, item in enumerate(header.split(",")):
        pieces = [p.strip() for p in item.split(";")]
        media_type = pieces[0].lower()
        if not media_type:
            continue
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            name, _sep, value = piece.partition("=")
            params[name.strip().lower()] = value.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        ranges.append((media_type, params, q, position))
    ranges.sort(key=lambda r: (-r[2], r[3]))
    return [(t, p, q) for t, p, q, _pos in ranges if q > 0]


def _accept(request: Request) -> str:
    # PS3.18 8.3.3.1: an `accept` query parameter overrides the header (for <img> links).
    return request.query_params.get("accept") or request.META.get("HTTP_ACCEPT", "")


def rendered_media_type(request: Request) -> str:
    header = _accept(request)
    if not header.strip():
        return rendering.JPEG
    for media_type, _params, _q in _media_ranges(header):
        if media_type in (rendering.JPEG, rendering.PNG):
            return media_type
        if media_type in ("*/*", "image/*"):
            return rendering.JPEG
    raise RenderError(406, _("Rendered images are offered as image/jpeg or image/png."))


DECODED = "decoded"  # uncompressed little-endian octets (PS3.18 8.7.3.5's default)
AS_STORED = "stored"  # the frames' bytes as kept: image/jp2, image/jpeg... or octets
WILDCARD_PART_TYPES = ("*/*", "image/*")


def _frame_options_of(
    media_type: str, params: dict[str, str], instance: Instance, stored_type: str
) -> list[str]:
    """What one media range of an Accept header lets the frames be, best first."""
    if media_type in ("*/*", "multipart/*"):
        # Anything goes: uncompressed as a viewer expects, the stored bytes if that fails.
        return [DECODED, AS_STORED]
    if media_type not in ("multipart/related", rendering.OCTET_STREAM):
        return []
    part_type = (
        params.get("type", rendering.OCTET_STREAM).lower()
        if media_type == "multipart/related"
        else rendering.OCTET_STREAM
    )
    syntax = params.get("transfer-syntax", "")
    if part_type == "image/*" and stored_type == rendering.OCTET_STREAM:
        return []  # uncompressed frames are octets, not an image type
    if part_type in WILDCARD_PART_TYPES and syntax in ("", "*", instance.transfer_syntax_uid):
        # dicomweb-client's default (type="*/*"): the frames as kept need no decoding.
        return [AS_STORED]
    if part_type in (rendering.OCTET_STREAM, "application/*"):
        if syntax == "*":
            return [AS_STORED] if part_type == rendering.OCTET_STREAM else [DECODED]
        if syntax in ("", UNCOMPRESSED_TS):
            return [DECODED]
        if syntax == instance.transfer_syntax_uid and stored_type == rendering.OCTET_STREAM:
            return [AS_STORED]
    elif part_type == stored_type and syntax in ("", "*", instance.transfer_syntax_uid):
        return [AS_STORED]
    return []


def frame_options(request: Request, instance: Instance) -> list[str]:
    """PS3.18 8.7.3.5: how the frames may be sent, in the client's order of preference.

    Uncompressed octets by default; the stored bytes when asked for (transfer-syntax=*, the
    stored syntax or its image/* type, or a wildcard part type). A 406 names both offers.
    """
    header = _accept(request)
    if not header.strip():
        return [DECODED, AS_STORED]
    stored_type = rendering.stored_frame_media_type(instance)
    options: list[str] = []
    for media_type, params, _q in _media_ranges(header):
        for option in _frame_options_of(media_type, params, instance, stored_type):
            if option not in options:
                options.append(option)
    if options:
        return options
    raise RenderError(406, _frames_offer(instance, stored_type))


def _frames_offer(instance: Instance, stored_type: str) -> str:
    return _(
        "Frames of this instance are offered as "
        'multipart/related; type="application/octet-stream" '
        "(uncompressed, or transfer-syntax=* as stored) or as %(type)s "
        "(transfer-syntax=%(ts)s)."
    ) % {"type": stored_type, "ts": instance.transfer_syntax_uid}


def frames_in_offer(
    instance: Instance, numbers: list[int], options: list[str]
) -> list[rendering.FramePart]:
    """The frames in the first option that works: decoding is done before any answer, so a
    frame the hub cannot decode falls back to the stored bytes when the client takes them,
    and is otherwise refused (406/422) with what is on offer, never a broken answer."""
    failure: RenderError | None = None
    for option in options:
        try:
            return rendering.frames_retrieve(instance, numbers, as_stored=option == AS_STORED)
        except RenderError as exc:
            if exc.status not in (406, 422):
                raise
            failure = exc
    assert failure is not None
    offer = _frames_offer(instance, rendering.stored_frame_media_type(instance))
    raise RenderError(failure.status, f"{failure.message} {offer}")


def frame_numbers(text: str) -> list[int]:
    numbers = []
    for piece in text.split(","):
        piece = piece.strip()
        # isascii: isdigit() also takes digits such as "²", which int() refuses.
        if not (piece.isascii() and piece.isdigit()) or int(piece) < 1:
            raise RenderParamError(
                "frames",
                _("%(value)s is not a frame number (frames count from 1).")
                % {"value": piece[:20] or "''"},
            )
        numbers.append(int(piece))
    if len(numbers) > MAX_FRAMES_PER_REQUEST:
        raise RenderParamError(
            "frames", _("at most %(n)d frames per request.") % {"n": MAX_FRAMES_PER_REQUEST}
        )
    return numbers


def one_frame(text: str) -> int:
    numbers = frame_numbers(text)
    if len(numbers) != 1:
        raise RenderParamError("frames", _("a rendered frame is one frame number."))
    return numbers[0]


# --- Responses ---------------------------------------------------------------------------------


def _plain(status: int, message: str) -> HttpResponse:
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


def _quoted(etag: str) -> str:
    return f'"{etag}"'


def _not_modified(request: Request, etag: str) -> HttpResponse | None:
    wanted = request.META.get("HTTP_IF_NONE_MATCH", "")
    tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
    if _quoted(etag) in tags or "*" in tags:
        response = HttpResponse(status=304)
        _cache_headers(response, etag)
        return response
    return None


def _cache_headers(response: HttpResponse, etag: str) -> HttpResponse:
    response["ETag"] = _quoted(etag)
    response["Cache-Control"] = CACHE_CONTROL
    response["Vary"] = "Accept"
    return response


def _image(data: bytes, media_type: str, etag: str) -> HttpResponse:
    return _cache_headers(HttpResponse(data, content_type=media_type), etag)


def images_viewed_audit(request: Request, scope: access.Scope, study: Study) -> None:
    """IMAGES_VIEWED once per user, institution and study per few minutes.

    The cache only thins out repeats: if it is down, every view is recorded.
    """
    who = (
        scope.user.pk
        if scope.user
        else f"gw{scope.gateway_credential.pk}"
        if scope.gateway_credential
        else f"cs{scope.connected_system.pk}"
        if scope.connected_system
        else "anon"
    )
    key = f"audit:images-viewed:{who}:{scope.institution.pk if scope.institution else 0}:{study.pk}"
    try:
        first = cache.add(key, 1, timeout=AUDIT_THROTTLE_SECONDS)
    except Exception:  # a cache outage must not cost an audit row
        first = True
    if first:
        audit_record(
            event=AuditCode.IMAGES_VIEWED,
            action=AuditEvent.Action.READ,
            scope=scope,
            request=request._request if hasattr(request, "_request") else request,
            patient_id=study.pid,
            study_uid=study.study_uid,
            object_type="study",
            object_id=study.study_uid,
        )


class _PixelView(DicomWebView):
    """Turns RenderError into its 4xx with the reason in words."""

    def handle_exception(self, exc: Exception) -> Any:
        if isinstance(exc, RenderError):
            return _plain(exc.status, exc.message)
        return super().handle_exception(exc)

    def _rendered(
        self, request: Request, instance: Instance, frame: int, options: RenderOptions
    ) -> HttpResponse:
        etag = rendering.render_etag(instance, frame, options)
        response = _not_modified(request, etag)
        if response is None:
            data = rendering.frame_render(instance, frame, options)
            response = _image(data, options.media_type, etag)
        images_viewed_audit(request, self.scope, instance.study)
        return response


# --- Frames ------------------------------------------------------------------------------------


class FramesView(_PixelView):
    """GET .../instances/{i}/frames/{list}: multipart/related frames (PS3.18 8.7.3.5)."""

    def get(
        self, request: Request, study_uid: str, series_uid: str, sop_uid: str, frames: str
    ) -> HttpResponse:
        instance = instance_for_uids(self.scope, study_uid, series_uid, sop_uid)
        numbers = frame_numbers(frames)
        options = frame_options(request, instance)
        etag = hashlib.sha256(f"{instance.sha256}/{frames}/{options}".encode()).hexdigest()[:40]
        response = _not_modified(request, etag)
        if response is None:
            parts = frames_in_offer(instance, numbers, options)
            base = request.build_absolute_uri(request.path).rsplit("/frames/", 1)[0]
            boundary = uuid.uuid4().hex
            chunks = []
            for number, part in zip(numbers, parts, strict=True):
                chunks.append(
                    f"--{boundary}\r\nContent-Type: {rendering.frame_media_type_param(part)}"
                    f"\r\nContent-Location: {base}/frames/{number}\r\n\r\n".encode()
                )
                chunks.append(part.data)
                chunks.append(b"\r\n")
            chunks.append(f"--{boundary}--\r\n".encode())
            part_type = parts[0].media_type
            response = HttpResponse(
                b"".join(chunks),
                content_type=f'multipart/related; type="{part_type}"; boundary={boundary}',
            )
            _cache_headers(response, etag)
        images_viewed_audit(request, self.scope, instance.study)
        return response


# --- Rendered ----------------------------------------------------------------------------------


class InstanceRenderedView(_PixelView):
    """GET .../instances/{i}/rendered: the first frame (a multi-frame instance's too)."""

    def get(self, request: Request, study_uid: str, series_uid: str, sop_uid: str) -> HttpResponse:
        instance = instance_for_uids(self.scope, study_uid, series_uid, sop_uid)
        options = rendering.render_options(request.query_params, rendered_media_type(request))
        return self._rendered(request, instance, 1, options)


class FrameRenderedView(_PixelView):
    """GET .../instances/{i}/frames/{n}/rendered."""

    def get(
        self, request: Request, study_uid: str, series_uid: str, sop_uid: str, frames: str
    ) -> HttpResponse:
        instance = instance_for_uids(self.scope, study_uid, series_uid, sop_uid)
        frame = one_frame(frames)
        options = rendering.render_options(request.query_params, rendered_media_type(request))
        return self._rendered(request, instance, frame, options)


# --- Thumbnails --------------------------------------------------------------------------------


def _thumbnail_options(request: Request) -> RenderOptions:
    return rendering.render_options(
        request.query_params,
        rendered_media_type(request),
        default_viewport=rendering.THUMBNAIL_OPTIONS.viewport,
        default_quality=rendering.THUMBNAIL_QUALITY,
    )


def _thumbnail_etag(key: str) -> str:
    # The key names the series and its middle instance: a new middle image, a new tag.
    return hashlib.sha256(f"{rendering.RENDER_VERSION}/{key}".encode()).hexdigest()[:40]


class _ThumbnailView(_PixelView):
    def _series_thumbnail(self, request: Request, series: Series) -> HttpResponse:
        options = _thumbnail_options(request)
        if options != rendering.THUMBNAIL_OPTIONS:
            # Only the standard size is kept in storage; other asks are rendered each time.
            instance = rendering.series_middle_instance(series)
            if instance is None:
                raise RenderError(404, _("The series holds no image."))
            return self._rendered(request, instance, rendering.middle_frame(instance), options)
        if series.thumbnail_key:
            etag = _thumbnail_etag(series.thumbnail_key)
            response = _not_modified(request, etag)
            if response is not None:
                images_viewed_audit(request, self.scope, series.study)
                return response
        data, key = rendering.series_thumbnail(series)
        images_viewed_audit(request, self.scope, series.study)
        return _image(data, rendering.JPEG, _thumbnail_etag(key))


class StudyThumbnailView(_ThumbnailView):
    """GET /studies/{s}/thumbnail: the thumbnail of the study's first series with images."""

    def get(self, request: Request, study_uid: str) -> HttpResponse:
        study = study_for_uid(self.scope, study_uid)
        series = (
            access.visible(self.scope, Series)
            .filter(study=study, instances__rows__isnull=False)
            .order_by(F("series_number").asc(nulls_last=True), "pk")
            .select_related("study")
            .first()
        )
        if series is None:
            raise RenderError(404, _("The study holds no image."))
        return self._series_thumbnail(request, series)


class SeriesThumbnailView(_ThumbnailView):
    """GET /studies/{s}/series/{se}/thumbnail: the middle image of the series, small."""

    def get(self, request: Request, study_uid: str, series_uid: str) -> HttpResponse:
        series = series_for_uids(self.scope, study_uid, series_uid)
        return self._series_thumbnail(request, series)


class InstanceThumbnailView(_ThumbnailView):
    """GET .../instances/{i}/thumbnail: the instance's middle frame, small."""

    def get(self, request: Request, study_uid: str, series_uid: str, sop_uid: str) -> HttpResponse:
        instance = instance_for_uids(self.scope, study_uid, series_uid, sop_uid)
        return self._rendered(
            request, instance, rendering.middle_frame(instance), _thumbnail_options(request)
        )


class FrameThumbnailView(_ThumbnailView):
    """GET .../instances/{i}/frames/{n}/thumbnail."""

    def get(
        self, request: Request, study_uid: str, series_uid: str, sop_uid: str, frames: str
    ) -> HttpResponse:
        instance = instance_for_uids(self.scope, study_uid, series_uid, sop_uid)
        return self._rendered(request, instance, one_frame(frames), _thumbnail_options(request))
