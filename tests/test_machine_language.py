"""Programs that name no language read the hub's refusals in English; people get theirs.

The site's default language is Chinese (its pages are for the alliance's staff); a PACS,
a script or dicomweb-client sends no Accept-Language and gets English on /api/ and
/dicomweb/, while a request that asks for Chinese gets Chinese there too.
"""

from __future__ import annotations

import pytest
from django.test import Client
from knox.models import AuthToken

from .test_wado import study  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

PNG_ONLY = "Rendered images are offered as image/jpeg or image/png."


def token_client(user, **headers: str) -> Client:
    _instance, key = AuthToken.objects.create(user=user)
    return Client(HTTP_AUTHORIZATION=f"Token {key}", **headers)


def test_the_api_answers_a_program_in_english():
    refused = Client().get("/api/v1/me/")
    assert refused.status_code == 401
    assert refused.json()["detail"] == "Authentication credentials were not provided."
    chinese = Client(HTTP_ACCEPT_LANGUAGE="zh").get("/api/v1/me/")
    assert chinese.json()["detail"] == "身份认证信息未提供。"


def test_dicomweb_answers_a_program_in_english(world, study):  # noqa: F811
    rendered = (
        f"/dicomweb/studies/{study['study']}/series/{study['series']}"
        f"/instances/{study['sops'][0]}/rendered"
    )
    plain = token_client(world.alice, HTTP_ACCEPT="image/gif").get(rendered)
    assert plain.status_code == 406
    assert plain.content.decode() == PNG_ONLY
    anonymous = Client().get("/dicomweb/studies")
    assert anonymous.status_code == 401
    assert anonymous.json()["detail"] == "Authentication credentials were not provided."
    chinese = Client(HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9").get("/dicomweb/studies")
    assert chinese.json()["detail"] == "身份认证信息未提供。"
    # The language the site's own switcher chose counts as asking for it.
    cookie = Client()
    cookie.cookies["hub_language"] = "zh-hans"
    assert cookie.get("/dicomweb/studies").json()["detail"] == "身份认证信息未提供。"


def test_pages_keep_the_sites_default_language():
    page = Client().get("/accounts/login/")
    assert page.status_code == 200
    assert 'lang="zh-hans"' in page.content.decode()
