"""Factories for the small world the tests live in."""

from __future__ import annotations

import factory

from alliance.models import Alliance, AllianceMember, Tier
from tenants.models import Institution, InstitutionKind, Membership, User

PASSWORD = "correct-horse-battery"


class InstitutionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Institution

    code = factory.Sequence(lambda n: f"inst-{n}")
    name = factory.Sequence(lambda n: f"机构{n}")
    name_en = factory.Sequence(lambda n: f"Institution {n}")
    kind = InstitutionKind.GRASSROOTS_CLINIC
    region_code = "421000"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    name = factory.Sequence(lambda n: f"用户{n}")
    name_en = factory.Sequence(lambda n: f"User {n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):  # noqa: N805
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    institution = factory.SubFactory(InstitutionFactory)
    role = "clinic_technician"


class AllianceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Alliance

    code = factory.Sequence(lambda n: f"alliance-{n}")
    name = factory.Sequence(lambda n: f"医联体{n}")
    name_en = factory.Sequence(lambda n: f"Alliance {n}")
    region_code = "421000"
    lead_hospital = factory.SubFactory(InstitutionFactory, kind=InstitutionKind.CENTRAL_HOSPITAL)
    commission = factory.SubFactory(InstitutionFactory, kind=InstitutionKind.HEALTH_COMMISSION)


def join(alliance: Alliance, institution: Institution, tier: str = Tier.GRASSROOTS) -> None:
    AllianceMember.objects.create(alliance=alliance, institution=institution, tier=tier)
