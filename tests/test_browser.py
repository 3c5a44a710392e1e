"""The web shell in a real browser: Chinese by default, English on request, phones, 404s.

Drives Debian's Chromium through Playwright's sync API against pytest-django's live server.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tenants.audit import AuditCode, audit_record
from tenants.models import Institution, Role, User

from .factories import PASSWORD, MembershipFactory

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling Google's hosts, which this
# closed network refuses; the browser itself is Debian's, never a downloaded build.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


@pytest.fixture(scope="module")
def _orm_beside_playwright() -> Iterator[None]:
    """Let the test thread use the ORM while Playwright's sync API is open.

    Playwright's sync API runs an asyncio event loop on the test's own thread (in a
    greenlet), so Django's async-safety check sees a running loop and refuses ORM calls
    there (SynchronousOnlyOperation) -- in the `world` fixture, in the test bodies and in
    the database flush after each transactional test. Nothing here is actually async: the
    live server answers from its own thread with its own connection. The variable is set for
    this module only and restored afterwards, so the rest of the suite keeps the check.
    """
    before = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if before is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = before


@pytest.fixture(scope="module")
def browser(_orm_beside_playwright: None) -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """Open a page in a fresh context (own cookies); a Chinese browser unless told otherwise."""
    contexts: list[BrowserContext] = []

    def open_page(**options: Any) -> Page:
        options.setdefault("locale", "zh-CN")
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def sign_in(page: Page, base_url: str, user: User, *, tap: bool = False) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    submit = page.locator("main form button[type=submit]")
    if tap:
        submit.tap()
    else:
        submit.click()
    page.wait_for_url(f"{base_url}/")


def nav_labels(page: Page) -> list[str]:
    return [text.strip() for text in page.locator("nav.mainnav a").all_inner_texts()]


def no_horizontal_overflow(page: Page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_sign_in_speaks_chinese_by_default(world, live_server, new_page, tmp_path: Path):
    page = new_page()
    page.goto(f"{live_server.url}/accounts/login/")
    expect(page.locator("html")).to_have_attribute("lang", "zh-hans")
    expect(page).to_have_title("登录 · 医联体影像平台")
    expect(page.locator("main h1")).to_have_text("登录")
    expect(page.locator("label[for=id_username]")).to_have_text("用户名")
    expect(page.locator("label[for=id_password]")).to_have_text("密码")
    expect(page.locator("main form button[type=submit]")).to_have_text("登录")
    expect(page.locator("#language-switch button")).to_have_text("English")

    sign_in(page, live_server.url, world.alice)
    card = page.locator("#active-institution")
    expect(card.locator("h2")).to_have_text("北山镇卫生院")
    expect(card).to_contain_text("乡镇卫生院")
    expect(card.locator(".tag")).to_have_text("基层技师")
    # A clinic technician reads and sends images, so both image pages are offered.
    assert nav_labels(page) == [
        "首页",
        "检查登记",
        "检查",
        "上传检查",
        "暂存实例",
        "转诊",
        "MDT 会诊",
        "机构",
        "通知",
        "API 接口",
    ]
    # No unread notifications: the badge takes no room in the nav (the hidden attribute holds).
    assert page.eval_on_selector("#unread-badge", "e => getComputedStyle(e).display") == "none"
    expect(page.locator("main h1")).to_have_text("首页")
    expect(page.locator(".topbar")).to_contain_text("退出")
    expect(page.locator(".topbar .who")).to_have_text("艾丽斯")
    expect(page.locator("main table").first).to_contain_text("基层")
    expect(page.locator("footer")).to_have_text("基层检查、上级诊断。")
    page.screenshot(path=str(tmp_path / "home-zh.png"), full_page=True)


def test_language_switch_to_english_persists(world, live_server, new_page, tmp_path: Path):
    page = new_page()
    sign_in(page, live_server.url, world.alice)
    expect(page.locator("#active-institution h2")).to_have_text("北山镇卫生院")

    page.locator("#language-switch button[value=en]").click()
    page.wait_for_url(f"{live_server.url}/")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("main h1")).to_have_text("Home")
    expect(page.locator("#active-institution h2")).to_have_text("Beishan Township Health Centre")
    expect(page.locator("#active-institution .tag")).to_have_text("Clinic technician")
    assert nav_labels(page) == [
        "Home",
        "Registered exams",
        "Studies",
        "Send studies",
        "Held instances",
        "Referrals",
        "MDT",
        "Institutions",
        "Notifications",
        "API",
    ]
    expect(page.locator("#institution-select option:checked")).to_have_text(
        "Beishan Township Health Centre"
    )
    expect(page.locator("#language-switch button")).to_have_text("简体中文")
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert cookies.get("hub_language") == "en"

    # The next page keeps English although the browser still asks for Chinese.
    page.locator("nav.mainnav a", has_text="Institutions").click()
    page.wait_for_url(f"{live_server.url}/institutions/")
    expect(page.locator("main h1")).to_have_text("Institutions")
    expect(page.locator("main table thead")).to_contain_text("Region code")
    expect(page.locator("main table tbody")).to_contain_text("North Central Hospital")
    expect(page.locator("main table tbody")).not_to_contain_text("北城中心医院")
    page.screenshot(path=str(tmp_path / "institutions-en.png"), full_page=True)


def test_switching_the_active_institution(world, live_server, new_page):
    MembershipFactory(user=world.rita, institution=world.clinic, role=Role.REFERRING_PHYSICIAN)
    page = new_page()
    sign_in(page, live_server.url, world.rita)
    expect(page.locator("#active-institution h2")).to_have_text("北城中心医院")
    expect(page.locator("#active-institution .tag")).to_have_text("放射科医师")
    expect(page.locator("#institution-select option")).to_have_text(
        ["北城中心医院", "北山镇卫生院"]
    )

    page.select_option("#institution-select", str(world.clinic.pk))
    expect(page.locator("#active-institution h2")).to_have_text("北山镇卫生院")
    expect(page.locator("#active-institution .tag")).to_have_text("申请医师")
    expect(page.locator("main .message.success")).to_have_text("当前机构已切换为北山镇卫生院。")
    expect(page.locator("#institution-select option:checked")).to_have_text("北山镇卫生院")

    # The choice lives in the session: a fresh load still acts for the clinic.
    page.reload()
    expect(page.locator("#active-institution h2")).to_have_text("北山镇卫生院")


def test_phone_sign_in_and_menu(world, live_server, new_page, tmp_path: Path):
    for n in range(3):  # rows for the widest table a phone meets: the audit trail
        audit_record(
            event=AuditCode.STUDY_VIEWED,
            user=world.adam,
            institution=world.clinic,
            study_uid=f"1.2.840.113619.2.55.3.604688119.971.1700000000.{n}",
            object_type="study",
            object_id=f"1.2.840.113619.2.55.3.{n}",
        )
    page = new_page(**PHONE)
    page.goto(f"{live_server.url}/accounts/login/")
    assert no_horizontal_overflow(page)
    page.screenshot(path=str(tmp_path / "phone-login.png"), full_page=True)

    sign_in(page, live_server.url, world.adam, tap=True)
    nav = page.locator("nav.mainnav")
    expect(nav).to_be_hidden()
    toggle = page.locator("label.nav-toggle-label")
    expect(toggle).to_be_visible()
    toggle.tap()
    expect(nav).to_be_visible()
    # The menu is a real (if invisible) checkbox, so screen readers and keyboards reach it.
    expect(page.get_by_role("checkbox", name="菜单")).to_be_checked()
    for label in ["首页", "机构", "通知", "审计日志"]:
        expect(nav.get_by_role("link", name=label)).to_be_visible()
    box = nav.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["viewport"]["width"]
    page.screenshot(path=str(tmp_path / "phone-home-menu.png"), full_page=True)
    assert no_horizontal_overflow(page), page.evaluate(
        "[document.documentElement.scrollWidth, window.innerWidth]"
    )

    nav.get_by_role("link", name="审计日志").tap()
    page.wait_for_url(f"{live_server.url}/audit/")
    expect(page.locator("main h1")).to_have_text("审计日志")
    for n in range(3):
        # The object's kind in the reader's language ("Study": 检查), then its id.
        expect(page.locator("main table tbody")).to_contain_text(f"检查 1.2.840.113619.2.55.3.{n}")
    page.screenshot(path=str(tmp_path / "phone-audit.png"), full_page=True)
    assert no_horizontal_overflow(page)


def test_outsider_gets_the_same_404_as_for_a_missing_institution(
    world, live_server, new_page, tmp_path: Path
):
    page = new_page()
    sign_in(page, live_server.url, world.oscar)
    own = page.goto(f"{live_server.url}/institutions/{world.outsider.pk}/")
    assert own is not None
    assert own.status == 200
    expect(page.locator("main h1")).to_have_text("南岭村卫生室")

    not_yours = page.goto(f"{live_server.url}/institutions/{world.clinic.pk}/")
    assert not_yours is not None
    not_yours_body = page.locator("body").inner_text()
    not_yours_title = page.title()

    missing_pk = Institution.objects.order_by("-pk").values_list("pk", flat=True)[0] + 1000
    missing = page.goto(f"{live_server.url}/institutions/{missing_pk}/")
    assert missing is not None

    assert not_yours.status == missing.status == 404
    assert page.locator("body").inner_text() == not_yours_body
    assert page.title() == not_yours_title
    page.screenshot(path=str(tmp_path / "not-found.png"), full_page=True)
    for leak in ("北山镇卫生院", "Beishan", world.clinic.code):
        assert leak not in not_yours_body
