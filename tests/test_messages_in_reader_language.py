"""What the hub writes down itself (notifications, routing explanations, timeline notes, audit
objects, person names) is kept as codes and read in the reader's language, whoever wrote it
and in whatever language the recipient reads."""

from __future__ import annotations

import datetime as dt
import io

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import Client
from django.utils import timezone, translation
from knox.models import AuthToken
from pypdf import PdfReader
from rest_framework.test import APIClient

from referrals.models import Referral, ReferralEvent
from referrals.routing.decision import routing_decide
from referrals.workflow import services as referral_services
from tenants import messages
from tenants.access import scope_for_user
from tenants.audit import audit_record
from tenants.models import Membership, Notification, Role
from tenants.services import notification_send
from tenants.tasks import membership_notice_send

from .conftest import api_client_for
from .ingest_support import media  # noqa: F401  (a fixture)
from .referral_support import reading_setup, study_at

EN_ASSIGNED = "A new case is on your worklist"
ZH_ASSIGNED = "您的工作列表中有新病例"
EN_RULE = "rule 10 (CT chest): CT CHEST from tier Grassroots → North thoracic"
ZH_RULE = "规则 10（CT chest）：CT CHEST（来源层级：基层） → 北城胸部"  # noqa: RUF001


def web(user, language: str) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


@pytest.fixture
def routed(world, django_capture_on_commit_callbacks):
    """A CT chest routed by rule 10 to the thoracic pool and proposed to rita, who reads
    Chinese (User.language); the hub runs in Chinese."""
    reading = reading_setup(world)
    world.rita.language = "zh-hans"
    world.rita.save()
    with django_capture_on_commit_callbacks(execute=True):
        scope = scope_for_user(world.alice, institution_id=world.clinic.pk)
        referral, _created = referral_services.referral_request(
            scope=scope, study=study_at(world.clinic)
        )
    referral.refresh_from_db()
    assert referral.assigned_to == world.rita
    return reading, referral


# --- Notifications ------------------------------------------------------------------------------


def test_a_notification_is_stored_as_a_code_and_read_in_each_language(world, routed):
    note = Notification.objects.get(user=world.rita, kind="referral.assigned")
    assert note.code == "referral.assigned"
    # The parameters are values (codes, names in both forms), never a finished sentence.
    assert "grassroots" not in note.title + note.body
    assert note.title == ZH_ASSIGNED  # the words kept for rows read by an older release
    with translation.override("en"):
        assert note.display_title == EN_ASSIGNED
        assert note.display_body.startswith(EN_RULE)
        assert "chose Rita with 0 open of 10" in note.display_body
    with translation.override("zh-hans"):
        assert note.display_title == ZH_ASSIGNED
        assert note.display_body.startswith(ZH_RULE)
        assert "丽塔" in note.display_body


def test_the_notification_page_and_api_speak_the_readers_language(world, routed):
    en_page = web(world.rita, "en").get("/notifications/").content.decode()
    assert EN_ASSIGNED in en_page
    assert EN_RULE in en_page
    assert ZH_ASSIGNED not in en_page
    zh_page = web(world.rita, "zh-hans").get("/notifications/").content.decode()
    assert ZH_ASSIGNED in zh_page
    assert EN_ASSIGNED not in zh_page

    client = api_client_for(world.rita)  # Accept-Language: en
    row = next(n for n in client.get("/api/v1/notifications/").json()["results"] if n["code"])
    assert (row["code"], row["title"]) == ("referral.assigned", EN_ASSIGNED)
    assert row["body"].startswith(EN_RULE)
    _token, key = AuthToken.objects.create(user=world.rita)
    chinese = APIClient()
    chinese.credentials(HTTP_AUTHORIZATION=f"Token {key}", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert chinese.get(f"/api/v1/notifications/{row['id']}/").json()["title"] == ZH_ASSIGNED


def test_an_english_readers_notification_reads_in_chinese_for_a_chinese_page(world):
    world.alice.language = "en"
    world.alice.save()
    membership = Membership.objects.get(user=world.alice)
    membership_notice_send(membership.pk)
    note = Notification.objects.get(user=world.alice, kind="membership_granted")
    assert note.title == "You are now Clinic technician at Beishan Township Health Centre"
    zh_page = web(world.alice, "zh-hans").get("/notifications/").content.decode()
    assert "您已成为北山镇卫生院的基层技师" in zh_page
    assert "You are now" not in zh_page
    home = web(world.alice, "zh-hans").get("/").content.decode()
    assert "您已成为北山镇卫生院的基层技师" in home


def test_rows_from_before_codes_and_unknown_codes_show_their_stored_words(world):
    Notification.objects.create(user=world.rita, kind="old", title="旧通知", body="旧正文")
    Notification.objects.create(
        user=world.rita, kind="new", code="from.a.newer.release", title="存储的标题"
    )
    page = web(world.rita, "en").get("/notifications/").content.decode()
    assert "旧通知" in page
    assert "旧正文" in page
    assert "存储的标题" in page
    rows = api_client_for(world.rita).get("/api/v1/notifications/").json()["results"]
    assert {r["title"] for r in rows} == {"旧通知", "存储的标题"}


def test_callers_without_a_code_still_send_text(world):
    from django.utils.translation import gettext_lazy as _

    world.rita.language = "en"
    world.rita.save()
    note = notification_send(user=world.rita, kind="k", title=_("Notifications"), body="plain")
    assert (note.code, note.title, note.body) == ("", "Notifications", "plain")


def test_a_parameter_that_is_a_choice_or_a_name_follows_the_reader():
    params = {
        "role": messages.choice("role", Role.RADIOLOGIST),
        "institution": messages.name("北城中心医院", "North Central Hospital"),
    }
    assert (
        messages.message_text("membership.granted", params, language="en")
        == "You are now Radiologist at North Central Hospital"
    )
    assert (
        messages.message_text("membership.granted", params, language="zh-hans")
        == "您已成为北城中心医院的放射科医师"
    )
    # A DICOM person name, both forms, the reader's first.
    pn = {"x": messages.pn("Wang^Jianguo=王^建国")}
    messages.register_messages({"test.pn": "%(x)s"})
    assert messages.message_text("test.pn", pn, language="en") == "Wang Jianguo (王建国)"
    assert messages.message_text("test.pn", pn, language="zh-hans") == "王建国 (Wang Jianguo)"
    # A time, in the hub's time zone.
    at = dt.datetime(2026, 12, 7, 1, 30, tzinfo=dt.UTC)
    local = timezone.localtime(at).strftime("%Y-%m-%d %H:%M")
    assert messages.message_text("test.pn", {"x": messages.moment(at)}, language="en") == local


# --- The live push ------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_live_push_speaks_the_language_of_each_page(world):
    from .test_live import SAME_ORIGIN, connected, run, session_cookie

    world.rita.language = "zh-hans"
    world.rita.save()
    name, value = session_cookie(world.rita)
    english_page = (name, value + b"; hub_language=en")
    params = {
        "role": messages.choice("role", Role.RADIOLOGIST),
        "institution": messages.institution_name(world.reader),
    }

    def send() -> None:
        with transaction.atomic():
            notification_send(
                user=world.rita, kind="membership_granted", code="membership.granted", params=params
            )

    async def scenario() -> None:
        async with (
            connected(SAME_ORIGIN, english_page) as (en_cookie, _h1),
            connected(SAME_ORIGIN, (name, value)) as (own_language, _h2),
        ):
            await sync_to_async(send)()
            en = await en_cookie.receive_json_from(timeout=10)
            zh = await own_language.receive_json_from(timeout=10)
        assert en["payload"]["title"] == "You are now Radiologist at North Central Hospital"
        assert en["payload"]["code"] == "membership.granted"
        assert zh["payload"]["title"] == "您已成为北城中心医院的放射科医师"

    run(scenario)


@pytest.mark.django_db(transaction=True)
def test_a_page_names_its_language_to_the_socket(world):
    from channels.testing import WebsocketCommunicator

    from alliance.asgi import application

    from .test_live import SAME_ORIGIN, run, session_cookie

    world.rita.language = "zh-hans"
    world.rita.save()

    def send() -> None:
        with transaction.atomic():
            notification_send(
                user=world.rita,
                kind="membership_granted",
                code="membership.granted",
                params={
                    "role": messages.choice("role", Role.RADIOLOGIST),
                    "institution": messages.institution_name(world.reader),
                },
            )

    cookie = session_cookie(world.rita)

    async def scenario() -> None:
        ws = WebsocketCommunicator(
            application, "/ws/notifications/?lang=en", headers=[SAME_ORIGIN, cookie]
        )
        try:
            accepted, _detail = await ws.connect(timeout=10)
            assert accepted
            await ws.receive_json_from(timeout=10)  # hello
            await sync_to_async(send)()
            frame = await ws.receive_json_from(timeout=10)
        finally:
            await ws.disconnect(timeout=3)
        assert frame["payload"]["title"] == "You are now Radiologist at North Central Hospital"

    run(scenario)


# --- Routing explanations and the timeline ------------------------------------------------------


def test_the_routing_explanation_reads_in_both_languages_without_raw_codes(world, routed):
    _reading, referral = routed
    assert referral.routing_explanation == ""  # nothing stored in words
    assert referral.routing_steps[0]["code"] == "routing.rule"
    with translation.override("en"):
        english = referral.routing_explanation_text
    with translation.override("zh-hans"):
        chinese = referral.routing_explanation_text
    assert english.startswith(EN_RULE)
    assert chinese.startswith(ZH_RULE)
    for text in (english, chinese):
        assert "grassroots" not in text
        assert "routing." not in text
    case = f"/worklist/{referral.pk}/"
    detail = f"/referrals/{referral.pk}/"
    for path in (detail, case):
        en_page = web(world.rita, "en").get(path).content.decode()
        assert EN_RULE in en_page, path
        zh_page = web(world.rita, "zh-hans").get(path).content.decode()
        assert ZH_RULE in zh_page, path
        assert "grassroots" not in zh_page.split('id="routing-explanation"')[1][:400]
    body = api_client_for(world.rita, world.reader).get(f"/api/v1/referrals/{referral.pk}/")
    assert body.json()["routing_explanation"].startswith(EN_RULE)
    # The route event's note on the timeline, in the reader's language too.
    events = api_client_for(world.rita, world.reader).get(
        f"/api/v1/referrals/{referral.pk}/events/"
    )
    route = next(e for e in events.json() if e["action"] == "route")
    assert route["reason"].startswith(EN_RULE)


def test_the_decision_explains_itself_in_the_active_language(world, routed):
    _reading, referral = routed
    decision = routing_decide(Referral.objects.get(pk=referral.pk))
    with translation.override("en"):
        assert decision.explanation.startswith(EN_RULE)
    with translation.override("zh-hans"):
        assert decision.explanation.startswith(ZH_RULE)


def test_a_hub_note_on_the_timeline_reads_in_each_language(world, routed):
    _reading, referral = routed
    with transaction.atomic():
        ReferralEvent.objects.create(
            referral=referral,
            action="escalate",
            reason_steps=[
                messages.step("routing.moved_to", pool=messages.name("北城综合", "North general"))
            ],
        )
    en_page = web(world.rita, "en").get(f"/referrals/{referral.pk}/").content.decode()
    assert "moved to North general" in en_page
    zh_page = web(world.rita, "zh-hans").get(f"/referrals/{referral.pk}/").content.decode()
    assert "已转至北城综合" in zh_page


def test_old_rows_keep_their_words(world, routed):
    _reading, referral = routed
    Referral.objects.filter(pk=referral.pk).update(
        routing_steps=[],
        routing_explanation="规则 1：旧的说明",  # noqa: RUF001
    )
    ReferralEvent.objects.filter(referral=referral, action="route").update(
        reason_steps=[], reason="旧的理由"
    )
    page = web(world.rita, "en").get(f"/referrals/{referral.pk}/").content.decode()
    assert "规则 1：旧的说明" in page  # noqa: RUF001
    assert "旧的理由" in page


# --- The audit page -----------------------------------------------------------------------------


def test_the_audit_page_names_objects_in_the_readers_language(world):
    audit_record(
        event="export", user=world.adam, institution=world.clinic, object_type="share_link"
    )
    audit_record(event="export", user=world.adam, institution=world.clinic, object_type="referral")
    en_page = web(world.adam, "en").get("/audit/").content.decode()
    assert "Share link" in en_page
    assert "Referral" in en_page
    assert "share_link" not in en_page
    zh_page = web(world.adam, "zh-hans").get("/audit/").content.decode()
    assert "转诊" in zh_page
    assert "share_link" not in zh_page


# --- Person names: the MDT minutes and the report PDF -------------------------------------------


def _pdf_text(pdf: bytes) -> str:
    return "".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).replace("\n", "")


def test_the_minutes_and_their_pdf_name_the_patient_in_the_readers_language(world):
    from .mdt_support import mdt_setup

    mdt = mdt_setup(world)  # patient Li^Lei=李^雷
    path = f"/mdt/{mdt.session.pk}/minutes/"
    en_page = web(world.alice, "en").get(path).content.decode()
    assert "Li Lei (李雷)" in en_page
    assert "Li^Lei" not in en_page
    zh_page = web(world.alice, "zh-hans").get(path).content.decode()
    assert "李雷 (Li Lei)" in zh_page
    en_pdf = _pdf_text(web(world.alice, "en").get(path.replace("minutes/", "minutes.pdf")).content)
    zh_pdf = _pdf_text(
        web(world.alice, "zh-hans").get(path.replace("minutes/", "minutes.pdf")).content
    )
    assert "Li Lei (李雷)" in en_pdf
    assert "李雷 (Li Lei)" in zh_pdf
    assert "^" not in en_pdf + zh_pdf


def test_the_report_pdf_names_the_patient_in_the_readers_language(
    world,
    media,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    from reporting.pdf import report_pdf_bytes

    from .share_support import signed_report

    signed = signed_report(world, django_capture_on_commit_callbacks)
    study = signed.report.study
    study.patient_name = "Wang^Jianguo=王^建国"
    study.save(update_fields=["patient_name"])
    with translation.override("en"):
        english = _pdf_text(report_pdf_bytes(signed.report, key_images=[]))
    with translation.override("zh-hans"):
        chinese = _pdf_text(report_pdf_bytes(signed.report, key_images=[]))
    assert "Wang Jianguo (王建国)" in english
    assert "王建国 (Wang Jianguo)" in chinese
    assert "Wang^Jianguo" not in english + chinese
    # The senior was asked for the second read with a code: it reads in either language.
    ask = Notification.objects.get(user__username="sam", kind="report.second_read")
    with translation.override("en"):
        assert ask.display_title == "A preliminary report waits for your second read"
        assert "from Beishan Township Health Centre" in ask.display_body
    with translation.override("zh-hans"):
        assert "北山镇卫生院" in ask.display_body


def test_rows_written_by_sql_have_no_steps(world, routed):
    """Seeders write events by SQL without the steps column: the database fills it in."""
    from django.db import connection

    _reading, referral = routed
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO referrals_referralevent (action, from_status, to_status, at, reason,"
            " data, referral_id) VALUES ('warn', 'routed', 'routed', now(), 'by sql', '{}', %s)"
            " RETURNING id",
            [referral.pk],
        )
        pk = cursor.fetchone()[0]
    event = ReferralEvent.objects.get(pk=pk)
    assert event.reason_steps == []
    assert event.reason_text == "by sql"


def test_notifications_written_by_sql_show_their_words(world):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tenants_notification (user_id, kind, title, body, link, dedup_key,"
            " created_at) VALUES (%s, 'old', '用 SQL 写的', '', '', '', now())",
            [world.rita.pk],
        )
    assert Notification.objects.get(user=world.rita).display_title == "用 SQL 写的"
