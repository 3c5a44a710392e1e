"""The referral core: request, route, claim, release, return, cancel, grants."""

from __future__ import annotations

import pytest
from django.utils import translation

from referrals.models import Referral, ReferralStatus, Study, StudyGrant
from referrals.workflow import services
from tenants import access

from .referral_support import reading_setup, study_at


@pytest.fixture
def reading(world):
    return reading_setup(world)


@pytest.fixture
def request_read(world, django_capture_on_commit_callbacks):
    """Send a study for reading as alice, running what is queued after commit (routing)."""

    def send(study, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return services.referral_request(
                scope=scope(world.alice, world.clinic), study=study, **kwargs
            )

    return send


def scope(user, institution):
    return access.scope_for_user(user, institution_id=institution.pk)


def test_a_request_is_routed_by_rule_and_grants_the_reader_the_study_and_priors(
    world, reading, request_read, settings
):
    settings.LANGUAGE_CODE = "en"  # the hub writes routing explanations in its language
    prior = study_at(world.clinic, study_date="2025-01-01")
    study = study_at(world.clinic)
    rita = scope(world.rita, world.reader)
    assert not access.visible(rita, Study).exists()
    referral, created = request_read(study, clinical_question="cough 3 weeks")
    assert created
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.ROUTED
    assert referral.pool == reading.thoracic
    assert referral.assigned_to == world.rita
    with translation.override("en"):
        assert "rule 10" in referral.routing_explanation_text
    assert set(access.visible(rita, Study)) == {study, prior}
    assert StudyGrant.objects.filter(source_id=referral.pk, is_prior=True).count() == 1
    again, created = request_read(study)
    assert again == referral
    assert not created
    assert Referral.objects.count() == 1


def test_claim_then_a_second_reader_is_refused(world, reading, request_read):
    study = study_at(world.clinic, modality="MR", body_part="BRAIN")
    referral, _ = request_read(study)
    referral = services.referral_claim(
        scope=scope(world.rita, world.reader), referral_id=referral.pk
    )
    assert referral.status == ReferralStatus.CLAIMED
    assert referral.claimed_by == world.rita
    with pytest.raises(services.ReferralConflictError):
        services.referral_claim(scope=scope(reading.rob, world.reader), referral_id=referral.pk)


def test_return_for_quality_revokes_access_and_tells_the_clinic(
    world, reading, request_read, mailoutbox, django_capture_on_commit_callbacks
):
    world.alice.email = "alice@example.org"
    world.alice.save()
    study = study_at(world.clinic)
    referral, _ = request_read(study)
    rita = scope(world.rita, world.reader)
    with django_capture_on_commit_callbacks(execute=True):
        services.referral_return(scope=rita, referral_id=referral.pk, reason="motion_artefact")
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.RETURNED
    assert not access.visible(rita, Study).exists()
    assert world.alice.notifications.filter(kind="referral.returned").count() == 1
    assert len(mailoutbox) == 1


def test_unmatched_study_goes_to_fallback_and_is_flagged(world, reading, request_read, settings):
    settings.LANGUAGE_CODE = "en"  # the hub writes routing explanations in its language
    study = study_at(world.clinic, modality="US", body_part="ABDOMEN")
    referral, _ = request_read(study)
    referral.refresh_from_db()
    assert referral.pool == reading.general
    assert referral.unroutable
    with translation.override("en"):
        assert "fallback" in referral.routing_explanation_text
