"""Each role's journey through the demo hub in Chromium, every page action timed.

A journey is a list of steps (`STEPS`); each is a function of the `Day`, which holds the
browser, the signed-in pages by user and what earlier steps left (the referral's id...).
To add a step: write `def step_x(day: Day) -> None`, use `day.act(...)` for each timed page
action and `day.watch(...)` + `day.seen(...)` for another user's page that should follow
live, and put it in STEPS where it belongs in the day.

`act` times a user's action from the click to the answer shown on the page (the awaited
selector or URL). `watch` installs a MutationObserver on another user's open page before the
action; `seen` waits for it and takes its timestamp (the page's clock) minus the moment the
action's request was answered (Chromium's resource timing, the same clock): the delay from
the commit to the other user seeing it.
"""

from __future__ import annotations

import datetime as dt
import functools
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .client import DEMO_PASSWORD, Client, synthetic_study
from .figures import Figures
from .mdt import mdt_session_create

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 30_000
LIVE_TIMEOUT_MS = 20_000

# The selectors the day leans on, in one place (pages change; tests/test_*browser.py use the
# same ones).
S = {
    "login_user": "#id_username",
    "login_password": "#id_password",
    "login_submit": "main form button[type=submit]",
    "upload_folder": "#upload-folder",
    "upload_box": "#upload",
    "upload_send": "#upload-send",
    "study_link": ".study-link",
    "send_form": "#referral-send-form",
    "worklist_live": "body[data-worklist-live=open]",
    "worklist_pool_rows": "#worklist-pool [data-referral-id]",
    "worklist_pool_row": '#worklist-pool [data-referral-id="{id}"]',
    "worklist_mine_row": '#worklist-mine [data-referral-id="{id}"]',
    "worklist_claim": ".wl-claim button",
    "referral_live": "[data-referrals-live][data-live=open]",
    "template_select": "#template-select",
    "report_start": "#report-start button[type=submit]",
    "report_form": "#report-form",
    "critical_text": "#critical-text",
    "critical_flag": "#critical-flag",
    "critical_items": "#critical-findings li",
    "second_read_submit": "#second-read button.primary",
    "clinic_critical_open": ".critical-finding.critical-open",
    "chat_text": "#chat-text",
    "chat_log": "#chat-log",
}

OBSERVE = """([key, test]) => {
  window.__day = window.__day || {};
  const check = new Function("return (" + test + ")();");
  if (check()) { return false; }
  const observer = new MutationObserver(() => {
    if (!window.__day[key] && check()) { window.__day[key] = Date.now(); observer.disconnect(); }
  });
  observer.observe(document.documentElement,
                   {subtree: true, childList: true, attributes: true, characterData: true});
  return true;
}"""


def selector_test(selector: str, text: str = "") -> str:
    """A page-side test: an element matching `selector` exists (and holds `text`)."""
    return (
        f"() => Array.from(document.querySelectorAll({selector!r}))"
        f".some(e => e.textContent.includes({text!r}))"
    )


@dataclass
class Day:
    base: str
    browser: Any  # playwright.sync_api.Browser
    figures: Figures
    pages: dict[str, Any] = field(default_factory=dict)  # username -> Page
    state: dict[str, Any] = field(default_factory=dict)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hub-day-")))

    def page(self, username: str) -> Any:
        """`username`'s page, signed in through the login form on first use."""
        if username not in self.pages:
            context = self.browser.new_context(locale="en-US")
            context.set_default_timeout(TIMEOUT_MS)
            page = context.new_page()
            page.on("dialog", lambda dialog: dialog.accept())
            page.on("response", lambda r, who=username: self._answer(who, r))
            page.on("pageerror", lambda e, who=username: self.figures.failure(f"{who} js: {e}"))
            page.goto(f"{self.base}/accounts/login/")
            page.fill(S["login_user"], username)
            page.fill(S["login_password"], DEMO_PASSWORD)
            self.act(
                f"{username}: sign in",
                page,
                lambda: page.click(S["login_submit"]),
                lambda: page.wait_for_url(f"{self.base}/"),
            )
            self.pages[username] = page
        return self.pages[username]

    def _answer(self, who: str, response: Any) -> None:
        if response.status >= 500:
            self.figures.server_error(f"{who} browser {response.request.method} {response.url}")

    def act(
        self,
        name: str,
        page: Any,
        action: Callable[[], Any],
        done: Callable[[], Any],
        *,
        request: tuple[str, str] | None = None,
    ) -> float | None:
        """Time `action` until `done`; with `request` (method, URL part), return the epoch ms
        at which that request was answered (the commit is before it)."""
        start = time.perf_counter()
        answered = None
        if request is None:
            action()
        else:
            method, part = request
            with page.expect_response(
                lambda r: r.request.method == method and part in r.url
            ) as info:
                action()
            timing = info.value.request.timing
            answered = timing["startTime"] + timing["responseStart"]
        done()
        self.figures.action(name, time.perf_counter() - start)
        return answered

    def watch(self, username: str, key: str, test: str) -> None:
        """Start watching `username`'s page for `test` (page-side JS) to become true."""
        if not self.page(username).evaluate(OBSERVE, [key, test]):
            self.figures.failure(f"{key}: already shown on {username}'s page before the action")

    def seen(self, username: str, key: str, since_ms: float | None, *, figure: str = "") -> None:
        """Wait for the watched change; its delay after `since_ms` is a live-update figure
        (named `figure`, else `key`)."""
        page = self.page(username)
        self.figures.live_expected += 1
        try:
            handle = page.wait_for_function(
                "key => window.__day && window.__day[key]", arg=key, timeout=LIVE_TIMEOUT_MS
            )
        except Exception:
            self.figures.live_lost.append(f"{key} on {username}'s page")
            return
        if since_ms is not None:
            delay = max(0.0, (handle.json_value() - since_ms) / 1000)
            self.figures.live_delay(figure or key, delay)


# --- The steps -----------------------------------------------------------------------------------


def step_clinic_uploads(day: Day) -> None:
    """The clinic technician uploads a new patient's CT chest from a folder."""
    stamp = f"{dt.datetime.now():%H%M%S}{random.randint(100, 999)}"  # noqa: S311
    patient_id = f"DAY{stamp}"
    folder = day.workdir / patient_id
    folder.mkdir(parents=True)
    for index, data in enumerate(
        synthetic_study(patient_id, "Zhou^Ming=周^明", slices=8, size=256)
    ):
        (folder / f"IM{index + 1:04d}").write_bytes(data)
    day.state["patient_id"] = patient_id
    tech = day.page("tech")
    day.act(
        "tech: open the upload page",
        tech,
        lambda: tech.goto(f"{day.base}/studies/upload/"),
        lambda: tech.wait_for_selector(S["upload_folder"]),
    )
    day.act(
        "tech: choose the folder (parsed in the page)",
        tech,
        lambda: tech.set_input_files(S["upload_folder"], str(folder)),
        lambda: tech.wait_for_selector(f"{S['upload_box']}[data-phase=ready]"),
    )
    day.act(
        "tech: send 8 images (STOW-RS from the page)",
        tech,
        lambda: tech.click(S["upload_send"]),
        lambda: tech.wait_for_selector(f"{S['upload_box']}[data-phase=done]", timeout=60_000),
    )


def step_clinic_sends_for_reading(day: Day) -> None:
    """The technician finds the study and sends it for reading; the radiologist's open
    worklist shows it once the worker has routed it."""
    patient_id = day.state["patient_id"]
    reader = day.page("radiologist")
    reader.goto(f"{day.base}/worklist/")
    reader.wait_for_selector(S["worklist_live"])
    tech = day.page("tech")
    day.act(
        "tech: search the studies",
        tech,
        lambda: tech.goto(f"{day.base}/studies/?q={patient_id}"),
        lambda: tech.wait_for_selector(S["study_link"]),
    )
    day.act(
        "tech: open the study",
        tech,
        lambda: tech.click(S["study_link"]),
        lambda: tech.wait_for_selector(S["send_form"]),
    )
    form = tech.locator(S["send_form"])
    form.locator("select[name=priority]").select_option("urgent")
    form.locator("textarea[name=clinical_question]").fill("Cough for 6 weeks, smoker.")
    day.watch(
        "radiologist",
        "send -> reader's worklist",
        selector_test(S["worklist_pool_rows"], patient_id),
    )
    answered = day.act(
        "tech: send for reading",
        tech,
        lambda: form.locator("button[type=submit]").click(),
        lambda: tech.wait_for_url(re.compile(r".*/referrals/\d+/$")),
        request=("POST", "/refer/"),
    )
    day.state["referral"] = int(re.search(r"/referrals/(\d+)/", tech.url).group(1))  # type: ignore[union-attr]
    day.seen("radiologist", "send -> reader's worklist", answered)


def step_radiologist_claims(day: Day) -> None:
    """The radiologist claims the case from the live worklist; the clinic's page follows."""
    referral = day.state["referral"]
    clinic = day.page("referrer")
    clinic.goto(f"{day.base}/referrals/{referral}/")
    clinic.wait_for_selector(S["referral_live"])
    reader = day.page("radiologist")
    row = reader.locator(S["worklist_pool_row"].format(id=referral))
    day.watch(
        "referrer",
        "claim -> clinic's page",
        selector_test('#referral-status[data-status="claimed"]'),
    )
    answered = day.act(
        "radiologist: claim from the worklist",
        reader,
        lambda: row.locator(S["worklist_claim"]).click(),
        lambda: reader.wait_for_selector(S["worklist_mine_row"].format(id=referral)),
        request=("POST", "/claim/"),
    )
    day.seen("referrer", "claim -> clinic's page", answered)


def step_radiologist_reports(day: Day) -> None:
    """Start the report from the CT chest template, fill it, alert the clinic to a critical
    finding, sign preliminary (a radiologist's report goes to a senior)."""
    referral = day.state["referral"]
    reader = day.page("radiologist")
    day.act(
        "radiologist: open the drafting page",
        reader,
        lambda: reader.goto(f"{day.base}/reports/{referral}/edit/"),
        lambda: reader.wait_for_selector(S["template_select"]),
    )
    chest = reader.locator(f"{S['template_select']} option", has_text="CT chest").first
    reader.select_option(S["template_select"], chest.get_attribute("value"))
    day.act(
        "radiologist: start the report",
        reader,
        lambda: reader.click(S["report_start"]),
        lambda: reader.wait_for_selector(S["report_form"]),
    )
    reader.fill("#field-findings", "右上肺见 8 mm 实性结节, 边缘毛刺。")
    reader.select_option("#field-lung_rads", "4B")
    # Timed until the autosave that holds the impression is answered. A slow machine may
    # save the first fields on their own before it; signing while that last save is still
    # in flight is refused (409, stale version): the page's sign waits for a pending save
    # only when more text is still unsaved.
    impression = "右上肺结节 (Lung-RADS 4B), 考虑恶性可能。"

    def saved_impression(response: Any) -> bool:
        return response.request.method == "PATCH" and "Lung-RADS 4B" in (
            response.request.post_data or ""
        )

    start = time.perf_counter()
    with reader.expect_response(saved_impression):
        reader.fill("#field-impression", impression)
    day.figures.action("radiologist: type the impression (autosaved)", time.perf_counter() - start)
    reader.fill(S["critical_text"], "Suspicious nodule: urgent referral to thoracic surgery")
    day.watch(
        "referrer", "critical alert -> clinic's page", selector_test(S["clinic_critical_open"])
    )
    answered = day.act(
        "radiologist: alert the clinic (critical)",
        reader,
        lambda: reader.click(S["critical_flag"]),
        lambda: reader.wait_for_selector(S["critical_items"]),
        request=("POST", "/critical"),
    )
    day.seen("referrer", "critical alert -> clinic's page", answered)
    day.act(
        "radiologist: sign preliminary",
        reader,
        lambda: reader.click("[data-sign=preliminary]"),
        lambda: reader.wait_for_selector('#report-status[data-status="preliminary"]'),
    )


def step_senior_co_signs(day: Day) -> None:
    """The senior opens the second-read queue, agrees and co-signs: the clinic's open page
    shows the final report."""
    referral = day.state["referral"]
    senior = day.page("senior")
    day.act(
        "senior: open the second-read queue",
        senior,
        lambda: senior.goto(f"{day.base}/reports/second-reads/"),
        lambda: senior.wait_for_selector(f'[data-referral-id="{referral}"] a'),
    )
    day.act(
        "senior: open the report",
        senior,
        lambda: senior.click(f'[data-referral-id="{referral}"] a'),
        lambda: senior.wait_for_selector(S["second_read_submit"]),
    )
    day.watch(
        "referrer",
        "co-sign -> clinic's page",
        selector_test('#referral-report[data-report-status="final"]'),
    )
    answered = day.act(
        "senior: agree and co-sign",
        senior,
        lambda: senior.click(S["second_read_submit"]),
        lambda: senior.wait_for_selector('#report-status[data-status="final"]'),
        request=("POST", "/second-read/"),
    )
    day.seen("referrer", "co-sign -> clinic's page", answered)


def step_clinic_acknowledges(day: Day) -> None:
    """The clinic, on the page it kept open, acknowledges the critical result, then the report."""
    clinic = day.page("referrer")
    day.act(
        "referrer: acknowledge the critical result",
        clinic,
        lambda: clinic.locator(S["clinic_critical_open"]).locator("[data-critical-ack]").click(),
        lambda: clinic.wait_for_selector(S["clinic_critical_open"], state="detached"),
    )
    day.act(
        "referrer: acknowledge the report",
        clinic,
        lambda: clinic.click("#referral-acknowledge"),
        lambda: clinic.wait_for_selector('#referral-status[data-status="acknowledged"]'),
    )


def step_mdt_room(day: Day) -> None:
    """An MDT member opens today's session from the list and chats; a radiologist in the room
    sees each message."""
    session = day.state["mdt_session"]
    reader = day.page("radiologist")
    reader.goto(f"{day.base}/mdt/{session}/")
    reader.wait_for_selector(f"{S['chat_text']}:enabled")
    member = day.page("mdt")
    day.act(
        "mdt: open the session list",
        member,
        lambda: member.goto(f"{day.base}/mdt/"),
        lambda: member.wait_for_selector(f'a[href="/mdt/{session}/"]'),
    )
    day.act(
        "mdt: open the room",
        member,
        lambda: member.click(f'a[href="/mdt/{session}/"]'),
        lambda: member.wait_for_selector(f"{S['chat_text']}:enabled"),
    )
    for n in range(3):
        text = f"Day message {n + 1} {random.randint(1000, 9999)}"  # noqa: S311
        key = f"chat {n + 1}"
        test = selector_test(f"{S['chat_log']} li", text)
        day.watch("radiologist", f"{key} on the other member's page", test)
        day.watch("mdt", f"{key} echoed", test)
        member.fill(S["chat_text"], text)
        shown = f"{S['chat_log']} li:has-text('{text}')"
        day.act(
            "mdt: send a chat message (shown in the room)",
            member,
            lambda: member.press(S["chat_text"], "Enter"),
            functools.partial(member.wait_for_selector, shown),
        )
        echoed = member.evaluate("key => window.__day[key]", f"{key} echoed")
        day.seen(
            "radiologist",
            f"{key} on the other member's page",
            echoed,
            figure="chat echoed -> other member's room page",
        )


def step_commission_figures(day: Day) -> None:
    commission = day.page("commission")
    day.act(
        "commission: open the figures page",
        commission,
        lambda: commission.goto(f"{day.base}/analytics/"),
        lambda: commission.wait_for_load_state("load"),
    )


STEPS: list[Callable[[Day], None]] = [
    step_clinic_uploads,
    step_clinic_sends_for_reading,
    step_radiologist_claims,
    step_radiologist_reports,
    step_senior_co_signs,
    step_clinic_acknowledges,
    step_mdt_room,
    step_commission_figures,
]


def mdt_session_for_today(base: str, figures: Figures) -> int:
    """Today's session, chaired by the demo MDT member, with the radiologist invited (the
    scheduling pages are someone else's journey; the API does what they would)."""
    chair = Client(base, "mdt", figures).token_login()
    reader = Client(base, "radiologist", figures).token_login()
    return mdt_session_create(chair, [reader], title="Day MDT", hours=3)


def run_day(
    base: str, figures: Figures, *, steps: list[Callable[[Day], None]] | None = None
) -> None:
    """Every step in order, in one Chromium (a context per user). Each step builds on the
    one before, so the first that fails is noted as a failure and ends the day."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        day = Day(base=base.rstrip("/"), browser=browser, figures=figures)
        try:
            day.state["mdt_session"] = mdt_session_for_today(day.base, figures)
            for step in steps or STEPS:
                try:
                    step(day)
                except Exception as exc:
                    figures.failure(f"journey step {step.__name__}: {exc!r}"[:2000])
                    break
        finally:
            browser.close()
            shutil.rmtree(day.workdir, ignore_errors=True)
