"""The clinic's side of referrals: sending from the study page, the list, one referral, e-mail."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone, translation
from django.utils.translation import gettext

from referrals.models import Referral, ReferralStatus, ReturnReason, StudyGrant
from referrals.workflow import services
from tenants import access
from tenants.models import Membership, Role

from .factories import MembershipFactory, UserFactory
from .referral_support import reading_setup, study_at

pytestmark = pytest.mark.django_db


@pytest.fixture
def reading(world):
    return reading_setup(world)


def scope(user, institution):
    return access.scope_for_user(user, institution_id=institution.pk)


def web(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


@pytest.fixture
def routed(world, reading):
    """An MR sent by alice and routed to the north general pool (rita and rob read there)."""

    def make(**kwargs):
        study = study_at(world.clinic, modality="MR", body_part="BRAIN", **kwargs)
        referral, _ = services.referral_request(
            scope=scope(world.alice, world.clinic), study=study, clinical_question="headache"
        )
        return services.referral_route(referral.pk)

    return make


# --- Sending from the study page ---------------------------------------------------------


def test_the_study_page_offers_sending_to_the_site_that_holds_the_study(world):
    study = study_at(world.clinic)
    page = web(world.alice).get(f"/studies/{study.pk}/").content.decode()
    assert 'id="referral-send-form"' in page
    assert f'action="/studies/{study.pk}/refer/"' in page
    assert "This study has not been sent" not in page  # the form is there instead


def test_sending_creates_one_referral_and_sending_again_shows_it(world, reading):
    study = study_at(world.clinic)
    client = web(world.alice)
    form = {"kind": "remote_read", "priority": "urgent", "clinical_question": "cough, fever"}
    first = client.post(f"/studies/{study.pk}/refer/", form, follow=True)
    referral = Referral.objects.get(study=study)
    assert first.redirect_chain == [(f"/referrals/{referral.pk}/", 302)]
    assert "Sent for reading." in first.content.decode()
    assert referral.priority == "urgent"
    assert referral.clinical_question == "cough, fever"
    assert referral.requested_by == world.alice
    again = client.post(f"/studies/{study.pk}/refer/", form, follow=True)
    assert again.redirect_chain == [(f"/referrals/{referral.pk}/", 302)]
    assert "already sent" in again.content.decode()
    assert Referral.objects.filter(study=study).count() == 1
    # The study page now shows the referral's status and a link to it.
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert f'href="/referrals/{referral.pk}/"' in page
    assert 'data-status="requested"' in page


def test_a_bad_form_is_a_400_with_the_field_errors_and_sends_nothing(world, reading):
    study = study_at(world.clinic)
    answer = web(world.alice).post(
        f"/studies/{study.pk}/refer/", {"kind": "remote_read", "priority": "whenever"}
    )
    assert answer.status_code == 400
    page = answer.content.decode()
    assert 'id="referral-form-errors"' in page
    assert "Select a valid choice" in page
    long_question = web(world.alice).post(
        f"/studies/{study.pk}/refer/",
        {"kind": "remote_read", "priority": "routine", "clinical_question": "x" * 2001},
    )
    assert long_question.status_code == 400
    assert not Referral.objects.exists()


def test_a_reader_who_sees_a_study_by_grant_cannot_send_it(world, routed):
    referral = routed()
    client = web(world.rita)
    page = client.get(f"/studies/{referral.study_id}/").content.decode()
    assert 'id="referral-send-form"' not in page
    assert f'href="/referrals/{referral.pk}/"' in page  # the reader sees the referral
    answer = client.post(
        f"/studies/{referral.study_id}/refer/", {"kind": "consultation", "priority": "stat"}
    )
    assert answer.status_code == 403
    assert "Only the site that holds a study can refer it." in answer.content.decode()
    assert client.get(f"/studies/{referral.study_id}/refer/").status_code == 403
    assert Referral.objects.count() == 1


def test_a_site_in_no_alliance_gets_a_clear_400(world):
    from tenants.models import Institution

    lonely = Institution.objects.create(
        code="lonely",
        name="孤",
        name_en="Lonely clinic",
        kind="grassroots_clinic",
        region_code="421000",
    )
    tech = UserFactory(username="lonely-tech")
    MembershipFactory(user=tech, institution=lonely, role=Role.CLINIC_TECHNICIAN)
    study = study_at(lonely)
    answer = web(tech).post(
        f"/studies/{study.pk}/refer/", {"kind": "remote_read", "priority": "routine"}
    )
    assert answer.status_code == 400
    assert "in no alliance" in answer.content.decode()


# --- The list --------------------------------------------------------------------------------


def test_the_list_shows_the_sites_requests_with_deadline_reader_and_returned_reason(
    world, reading, routed
):
    on_time = routed()
    late = routed()
    Referral.objects.filter(pk=late.pk).update(deadline_at=timezone.now() - dt.timedelta(minutes=5))
    returned = routed()
    services.referral_return(
        scope=scope(world.rita, world.reader),
        referral_id=returned.pk,
        reason=ReturnReason.MOTION,
        comment="patient moved",
    )
    page = web(world.alice).get("/referrals/").content.decode()
    for r in (on_time, late, returned):
        assert f'href="/referrals/{r.pk}/"' in page
    assert "North Central Hospital" in page
    assert "Motion artefact — patient moved" in page
    assert page.count('class="breached"') == 1
    assert "overdue by" in page
    assert " left" in page


def test_the_list_filters_by_status_and_refuses_an_unknown_filter(world, routed):
    kept = routed()
    gone = routed()
    services.referral_cancel(scope=scope(world.alice, world.clinic), referral_id=gone.pk)
    client = web(world.alice)
    open_page = client.get("/referrals/?status=open").content.decode()
    assert f"/referrals/{kept.pk}/" in open_page
    assert f"/referrals/{gone.pk}/" not in open_page
    cancelled = client.get("/referrals/?status=cancelled").content.decode()
    assert f"/referrals/{gone.pk}/" in cancelled
    assert f"/referrals/{kept.pk}/" not in cancelled
    bad = client.get("/referrals/?status=lost")
    assert bad.status_code == 400
    assert "Unknown status filter." in bad.content.decode()


def test_the_list_is_paginated_and_shows_only_requests_the_site_sent(world, reading):
    for n in range(27):
        study = study_at(world.clinic, patient_id=f"P{n}", patient_key=f"k{n}")
        services.referral_request(scope=scope(world.alice, world.clinic), study=study)
    client = web(world.alice)
    first = client.get("/referrals/").content.decode()
    second = client.get("/referrals/?page=2").content.decode()
    assert first.count("data-referral-id=") == 25
    assert second.count("data-referral-id=") == 2
    assert "Page 2 of 2" in second
    # The reading hospital is not the sender: its list is empty.
    assert "data-referral-id=" not in web(world.rita).get("/referrals/").content.decode()


def test_the_navigation_offers_referrals_to_clinic_roles_only(world):
    assert 'href="/referrals/"' in web(world.alice).get("/").content.decode()
    assert 'href="/referrals/"' not in web(world.rita).get("/").content.decode()
    assert 'href="/referrals/"' not in web(world.carl).get("/").content.decode()


# --- One referral ------------------------------------------------------------------------


def test_the_detail_page_shows_question_timeline_and_study_link_to_the_clinic(world, routed):
    referral = routed()
    page = web(world.alice).get(f"/referrals/{referral.pk}/").content.decode()
    assert f'href="/studies/{referral.study_id}/"' in page
    assert "headache" in page
    assert 'data-status="routed"' in page
    assert '<strong class="event-label">requested</strong>' in page
    assert '<strong class="event-label">routed</strong>' in page
    assert "Alice (Beishan Township Health Centre)" in page
    # Routing's explanation is for the reading side.
    assert 'id="routing-explanation"' not in page
    assert 'id="referral-cancel"' in page
    assert 'id="referral-acknowledge"' not in page


def test_the_reader_sees_the_routing_explanation_and_no_clinic_buttons(world, routed, settings):
    settings.LANGUAGE_CODE = "en"  # the hub writes routing explanations in its language
    referral = routed()
    page = web(world.rita).get(f"/referrals/{referral.pk}/").content.decode()
    assert 'id="routing-explanation"' in page
    assert "rule 20" in page
    assert 'id="referral-cancel"' not in page


def test_the_timeline_is_in_the_users_language(world, routed):
    referral = routed()
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    client.force_login(world.alice)
    page = client.get(f"/referrals/{referral.pk}/").content.decode()
    with translation.override("zh-hans"):
        requested = gettext("requested")
    assert f'<strong class="event-label">{requested}</strong>' in page
    assert "艾丽斯 (北山镇卫生院)" in page


def test_cancel_works_once_then_says_why_not(world, routed):
    referral = routed()
    client = web(world.alice)
    done = client.post(
        f"/referrals/{referral.pk}/cancel/", {"reason": "wrong patient"}, follow=True
    )
    assert "The referral was cancelled." in done.content.decode()
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.CANCELLED
    assert not StudyGrant.objects.active().filter(source_id=referral.pk).exists()
    assert referral.events.get(action="cancel").reason == "wrong patient"
    again = client.post(f"/referrals/{referral.pk}/cancel/")
    assert again.status_code == 409
    assert 'id="referral-error"' in again.content.decode()
    assert "cannot be cancelled now" in again.content.decode()
    assert client.get(f"/referrals/{referral.pk}/cancel/").status_code == 405


def test_the_reading_side_cannot_cancel_or_acknowledge(world, routed):
    referral = routed()
    for step in ("cancel", "acknowledge"):
        answer = web(world.rita).post(f"/referrals/{referral.pk}/{step}/")
        assert answer.status_code == 403
        assert "Only the site that sent this referral" in answer.content.decode()
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.ROUTED


def test_a_clinic_admin_sees_the_referral_but_may_not_cancel_it(world, routed):
    referral = routed()
    client = web(world.adam)
    page = client.get(f"/referrals/{referral.pk}/").content.decode()
    assert 'id="referral-cancel"' not in page
    answer = client.post(f"/referrals/{referral.pk}/cancel/")
    assert answer.status_code == 403
    assert "cannot change referrals" in answer.content.decode()


def _deliver(world, referral) -> Referral:
    rita = scope(world.rita, world.reader)
    services.referral_claim(scope=rita, referral_id=referral.pk)
    services.referral_report_started(referral=referral, user=world.rita)
    return services.referral_reported(referral=referral, user=world.rita)


def test_acknowledge_only_after_delivery(world, routed):
    referral = routed()
    client = web(world.alice)
    early = client.post(f"/referrals/{referral.pk}/acknowledge/")
    assert early.status_code == 409
    assert "cannot be acknowledged now" in early.content.decode()
    _deliver(world, referral)
    page = client.get(f"/referrals/{referral.pk}/").content.decode()
    assert 'id="referral-acknowledge"' in page
    assert 'id="referral-cancel"' not in page
    done = client.post(f"/referrals/{referral.pk}/acknowledge/", follow=True)
    assert "You acknowledged the report." in done.content.decode()
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.ACKNOWLEDGED


def test_a_returned_referral_shows_its_reason(world, routed):
    referral = routed()
    services.referral_return(
        scope=scope(world.rita, world.reader), referral_id=referral.pk, reason=ReturnReason.COVERAGE
    )
    page = web(world.alice).get(f"/referrals/{referral.pk}/").content.decode()
    assert 'id="return-reason"' in page
    assert "Incomplete coverage" in page
    assert '<strong class="event-label">returned for quality</strong>' in page
    # Returned, the study can be sent again: a new referral, the old one kept.
    client = web(world.alice)
    client.post(
        f"/studies/{referral.study_id}/refer/", {"kind": "remote_read", "priority": "routine"}
    )
    assert Referral.objects.filter(study_id=referral.study_id).count() == 2


# --- E-mail ----------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["en", "zh-hans"])
def test_a_return_is_mailed_to_the_requester_in_their_language(
    world, routed, mailoutbox, django_capture_on_commit_callbacks, language
):
    world.alice.email, world.alice.language = "alice@example.org", language
    world.alice.save()
    referral = routed()
    other = "zh-hans" if language == "en" else "en"
    # The reader works in the other language: the mail still follows the recipient's.
    with translation.override(other), django_capture_on_commit_callbacks(execute=True):
        services.referral_return(
            scope=scope(world.rita, world.reader),
            referral_id=referral.pk,
            reason=ReturnReason.MOTION,
            comment="moved",
        )
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["alice@example.org"]
    with translation.override(language):
        assert mail.subject == gettext("A study was returned for quality")
        assert mail.body.startswith(f"{ReturnReason.MOTION.label}. moved")
    site = "Beishan Township Health Centre" if language == "en" else "北山镇卫生院"
    reader = "North Central Hospital" if language == "en" else "北城中心医院"
    assert site in mail.body
    assert reader in mail.body
    assert mail.body.rstrip().endswith(f"/referrals/{referral.pk}/")


def test_a_delivered_report_is_mailed_to_the_requester(
    world, routed, mailoutbox, django_capture_on_commit_callbacks
):
    world.alice.email = "alice@example.org"
    world.alice.save()
    referral = routed()
    with django_capture_on_commit_callbacks(execute=True):
        _deliver(world, referral)
    assert [m.to for m in mailoutbox] == [["alice@example.org"]]
    with translation.override(world.alice.language):
        assert mailoutbox[0].subject == gettext("A report is ready")


def test_a_breach_is_mailed_to_the_pools_lead_in_their_language(
    world, reading, routed, mailoutbox, django_capture_on_commit_callbacks
):
    reading.sam.email, reading.sam.language = "sam@example.org", "en"
    reading.sam.save()
    referral = routed()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.deadline_breach(
            referral.pk, now=referral.deadline_at + dt.timedelta(seconds=1)
        )
        # Run twice (a redelivered sweep): no second mail.
        assert not services.deadline_breach(
            referral.pk, now=referral.deadline_at + dt.timedelta(seconds=2)
        )
    assert [m.to for m in mailoutbox] == [["sam@example.org"]]
    assert mailoutbox[0].subject == "A case is past its deadline"
    assert "North Central Hospital" in mailoutbox[0].body


def test_users_without_an_address_get_no_mail_but_the_notification(
    world, routed, mailoutbox, django_capture_on_commit_callbacks
):
    referral = routed()
    with django_capture_on_commit_callbacks(execute=True):
        services.referral_return(
            scope=scope(world.rita, world.reader),
            referral_id=referral.pk,
            reason=ReturnReason.MOTION,
        )
    assert mailoutbox == []
    assert world.alice.notifications.filter(kind="referral.returned").count() == 1
    assert Membership.objects.filter(user=world.alice).exists()
