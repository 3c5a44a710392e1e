"""What a client may say in a room: each message type, its checks, and the service it calls.

A message is a JSON object with a "type" from HANDLERS. Anything else, a field of the
wrong shape or a right the sender lacks, raises RoomError, which the consumer turns into
an error frame on that socket alone; the room goes on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext as _

from . import services
from .models import ENDED_STATUSES, Invitation, MdtSession, SessionRole, VoteChoice
from .selectors import Admission

MAX_FRAME_CHARS = 16 * 1024
MAX_CHAT_CHARS = 2000
MAX_TEXT_CHARS = 10000
MAX_ANNOTATIONS = 50
MAX_POINTS = 64
ANNOTATION_KINDS = ("arrow", "length", "region")
_UID = re.compile(r"^[0-9.]{1,64}$")
# A page's own id for a message it sent (room.js): kept with the stored event, so the page
# knows from the log which of its messages were stored and sends the others again.
_CID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class RoomError(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _bad(field: str) -> RoomError:
    return RoomError("invalid", _("Invalid or missing field: %s") % field)


def _int(
    msg: dict[str, Any], key: str, *, low: int = 0, high: int = 2**31 - 1, optional: bool = False
) -> int | None:
    value = msg.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(key)
    return value


def _num(msg: dict[str, Any], key: str, *, low: float, high: float) -> float:
    value = msg.get(key)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise _bad(key)
    return float(value)


def _text(msg: dict[str, Any], key: str, *, limit: int, required: bool = True) -> str:
    value = msg.get(key, "" if not required else None)
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        raise _bad(key)
    return value.strip()


def _bool(msg: dict[str, Any], key: str) -> bool:
    value = msg.get(key)
    if not isinstance(value, bool):
        raise _bad(key)
    return value


def _object(msg: dict[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise _bad(key)
    return value


def _cid(msg: dict[str, Any]) -> dict[str, str]:
    """The sender's id for this message, to store with it ({} when the page sent none)."""
    cid = msg.get("cid")
    if cid is None:
        return {}
    if not isinstance(cid, str) or not _CID.match(cid):
        raise _bad("cid")
    return {"cid": cid}


def _annotation(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or raw.get("kind") not in ANNOTATION_KINDS:
        raise _bad("annotations")
    points = raw.get("points")
    if not isinstance(points, list) or not 2 <= len(points) <= MAX_POINTS:
        raise _bad("annotations")
    clean = []
    for point in points:
        if not isinstance(point, list) or len(point) != 2:
            raise _bad("annotations")
        xy = {"x": point[0], "y": point[1]}
        clean.append([_num(xy, "x", low=-1e5, high=1e5), _num(xy, "y", low=-1e5, high=1e5)])
    out: dict[str, Any] = {
        "kind": raw["kind"],
        "points": clean,
        "slice": _int(raw, "slice", high=100000, optional=True),
    }
    return out


def viewer_state_clean(msg: dict[str, Any]) -> dict[str, Any]:
    """The shared viewer state: what the presenter shows, checked field by field."""
    series = msg.get("series")
    if not isinstance(series, str) or not _UID.match(series):
        raise _bad("series")
    window = msg.get("window")
    if window is not None:
        if not isinstance(window, dict):
            raise _bad("window")
        window = {
            "center": _num(window, "center", low=-1e6, high=1e6),
            "width": _num(window, "width", low=1e-3, high=1e6),
        }
    pan = _object(msg, "pan") if "pan" in msg else {"x": 0, "y": 0}
    annotations = msg.get("annotations", [])
    if not isinstance(annotations, list) or len(annotations) > MAX_ANNOTATIONS:
        raise _bad("annotations")
    return {
        "case": _int(msg, "case", optional=True),
        "series": series,
        "slice": _int(msg, "slice", high=100000),
        "window": window,
        "zoom": _num(msg, "zoom", low=0.05, high=50) if "zoom" in msg else 1.0,
        "pan": {"x": _num(pan, "x", low=-1e5, high=1e5), "y": _num(pan, "y", low=-1e5, high=1e5)},
        "annotations": [_annotation(a) for a in annotations],
    }


# --- Handlers: (admission, message) -> the frame to broadcast, or None -------------------------
#
# chat, viewer and hand are the room's traffic: each is one statement (room_event_store, its
# checks in the statement's WHERE) and the consumer broadcasts the frame it returns. The rest
# are rare; their services run in a transaction and broadcast after commit themselves.

Handler = Callable[[Admission, dict[str, Any]], dict[str, Any] | None]


def _chair_only(who: Admission) -> None:
    if who.role != SessionRole.CHAIR:
        raise RoomError("forbidden", _("Only the chair may do this."))


def _speaker(who: Admission) -> None:
    if who.role == SessionRole.OBSERVER:
        raise RoomError("forbidden", _("Observers follow the session without taking part."))


def _session_refusal(session: MdtSession | None, now: datetime) -> RoomError | None:
    if session is None or session.status in ENDED_STATUSES:
        return RoomError("closed", _("The session is closed."))
    if not session.starts_at <= now <= session.ends_at:
        return RoomError("ended", _("The session's time window is over."))
    return None


def _refused(who: Admission, guard: services.Guard) -> RoomError:
    """Why a guarded event was not stored (asked only after it was not)."""
    session = MdtSession.objects.filter(pk=who.session_id).first()
    refusal = _session_refusal(session, timezone.now())
    if refusal is not None:
        return refusal
    if guard.presenter_id is not None:
        return RoomError("forbidden", _("Only the presenter drives the shared viewer."))
    return RoomError("muted", _("The chair has muted your chat."))


def _live(
    who: Admission,
    type: str,
    data: dict[str, Any],
    guard: services.Guard,
    viewer_state: dict[str, Any] | None = None,
    *,
    once: bool,
) -> dict[str, Any]:
    frame = services.room_event_store(
        session_id=who.session_id,
        type=type,
        data=data,
        actor=who.actor,
        viewer_state=viewer_state,
        guard=guard,
        once=once,
    )
    if frame is None:
        raise _refused(who, guard)
    return frame


def _chat(who: Admission, msg: dict[str, Any]) -> dict[str, Any]:
    text = _text(msg, "text", limit=MAX_CHAT_CHARS)
    case = _int(msg, "case", optional=True)
    cid = _cid(msg)
    return _live(
        who,
        "chat",
        {"text": text, "case": case, **cid},
        services.Guard(unmuted_id=who.user_id),
        once=bool(cid),
    )


def _viewer(who: Admission, msg: dict[str, Any]) -> dict[str, Any]:
    state = viewer_state_clean(_object(msg, "state"))
    cid = _cid(msg)
    return _live(
        who,
        "viewer",
        {"state": state, **cid},
        services.Guard(presenter_id=who.user_id),
        viewer_state=state,
        # The presenter's stream is the room's busiest: only a copy sent again is looked up
        # (a state stored twice would do no harm, but is not wanted either).
        once=bool(cid) and msg.get("resent") is True,
    )


def _hand(who: Admission, msg: dict[str, Any]) -> dict[str, Any]:
    cid = _cid(msg)
    return _live(
        who, "hand", {"raised": _bool(msg, "raised"), **cid}, services.Guard(), once=bool(cid)
    )


def _presenter(who: Admission, msg: dict[str, Any]) -> None:
    _chair_only(who)
    services.presenter_handover(
        session_id=who.session_id, chair=who.actor, user_id=_int(msg, "user") or 0
    )
    return None


def _mute(who: Admission, msg: dict[str, Any]) -> None:
    _chair_only(who)
    services.chat_mute(
        session_id=who.session_id,
        chair=who.actor,
        user_id=_int(msg, "user") or 0,
        muted=_bool(msg, "muted"),
    )
    return None


def _remove(who: Admission, msg: dict[str, Any]) -> None:
    _chair_only(who)
    invitation = (
        Invitation.objects.active()
        .select_related("session")
        .filter(session_id=who.session_id, user_id=_int(msg, "user") or 0)
        .first()
    )
    if invitation is None:
        raise RoomError("invalid", _("No such participant."))
    services.invitation_revoke(scope=None, invitation=invitation, actor=who.actor)
    return None


def _conclusion(who: Admission, msg: dict[str, Any]) -> None:
    if (
        who.role != SessionRole.CHAIR
        and not MdtSession.objects.filter(pk=who.session_id, presenter_id=who.user_id).exists()
    ):
        raise RoomError("forbidden", _("The chair or the presenter records the conclusion."))
    services.case_conclude(
        session_id=who.session_id,
        actor=who.actor,
        case_id=_int(msg, "case") or 0,
        conclusion=_text(msg, "conclusion", limit=MAX_TEXT_CHARS),
        recommendations=_text(msg, "recommendations", limit=MAX_TEXT_CHARS, required=False),
    )
    return None


def _vote(who: Admission, msg: dict[str, Any]) -> None:
    _speaker(who)
    choice = msg.get("choice")
    if choice not in VoteChoice.values:
        raise _bad("choice")
    services.vote_cast(
        session_id=who.session_id,
        actor=who.actor,
        case_id=_int(msg, "case") or 0,
        choice=str(choice),
        comment=_text(msg, "comment", limit=500, required=False),
    )
    return None


def _case_close(who: Admission, msg: dict[str, Any]) -> None:
    _chair_only(who)
    services.case_close(session_id=who.session_id, chair=who.actor, case_id=_int(msg, "case") or 0)
    return None


def _session_close(who: Admission, msg: dict[str, Any]) -> None:
    _chair_only(who)
    services.session_close(session_id=who.session_id, chair=who.actor)
    return None


HANDLERS: dict[str, Handler] = {
    "chat": _chat,
    "viewer": _viewer,
    "hand": _hand,
    "presenter": _presenter,
    "mute": _mute,
    "remove": _remove,
    "conclusion": _conclusion,
    "vote": _vote,
    "case.close": _case_close,
    "session.close": _session_close,
}
# Answered by the consumer itself (no write): keep-alive, replay, and a clean goodbye.
CONSUMER_TYPES = ("ping", "sync", "leave")


LIVE_TYPES = ("chat", "viewer", "hand")


def handle(who: Admission, msg: dict[str, Any]) -> dict[str, Any] | None:
    """Run one client message: the frame for the consumer to broadcast, or None when the
    service broadcasts after its own commit. A closed or ended session takes no writes."""
    handler = HANDLERS[msg["type"]]
    if msg["type"] not in LIVE_TYPES:  # the live types check this in their statement
        refusal = _session_refusal(
            MdtSession.objects.filter(pk=who.session_id).first(), timezone.now()
        )
        if refusal is not None:
            raise refusal
    try:
        return handler(who, msg)
    except services.AlreadyStoredError:
        # Sent again after a reconnect, but the first copy was stored after all (its socket
        # dropped while the server was storing it): the room has it, and heard of it.
        return None
    except ValidationError as exc:
        raise RoomError("invalid", " ".join(exc.messages)) from exc
