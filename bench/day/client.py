"""HTTP clients of the day: a demo user's API token or signed-in session, every answer counted."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

import requests

from .figures import Figures

DEMO_PASSWORD = "hub-demo-2026"  # noqa: S105 - alliance/demo.py's, printed by `make run`


class UnexpectedAnswerError(RuntimeError):
    pass


def http() -> requests.Session:
    """A session that talks to the hub directly, whatever proxy the machine sets."""
    session = requests.Session()
    session.trust_env = False
    return session


class Client:
    """One demo user. Every request is timed under its action name; a 5xx is a server error,
    any other answer outside `ok` a failure (raised, so the caller's loop notes and goes on)."""

    def __init__(self, base: str, username: str, figures: Figures) -> None:
        self.base = base.rstrip("/")
        self.username = username
        self.figures = figures
        self.session = http()
        self.token = ""
        self.me: dict[str, Any] = {}

    # --- Signing in --------------------------------------------------------------------------

    def token_login(self) -> Client:
        answer = self.request(
            "POST",
            "/api/v1/auth/login/",
            "api: token login",
            json={"username": self.username, "password": DEMO_PASSWORD},
            ok=(201,),
            auth=False,
        )
        self.token = answer.json()["token"]
        self.me = self.request("GET", "/api/v1/me/", "api: me").json()
        return self

    def page_login(self) -> Client:
        """Signed in through the login form, as a browser is (a session cookie, CSRF)."""
        self.request("GET", "/accounts/login/", "page: login form", auth=False)
        self.request(
            "POST",
            "/accounts/login/",
            "page: sign in",
            data={
                "username": self.username,
                "password": DEMO_PASSWORD,
                "csrfmiddlewaretoken": self.session.cookies["csrftoken"],
            },
            headers={"Referer": f"{self.base}/accounts/login/"},
            allow_redirects=False,
            ok=(302,),
            auth=False,
        )
        return self

    @property
    def cookie_header(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.session.cookies.items())

    @property
    def institution_id(self) -> int:
        return int(self.me["active_institution"]["id"])

    # --- Requests ----------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        action: str,
        *,
        ok: Iterable[int] = (200,),
        auth: bool = True,
        timeout: float = 60,
        **kwargs: Any,
    ) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if auth and self.token:
            headers.setdefault("Authorization", f"Token {self.token}")
        start = time.perf_counter()
        for attempt in (1, 2):
            try:
                answer = self.session.request(
                    method, self.base + path, headers=headers, timeout=timeout, **kwargs
                )
                break
            except requests.ConnectionError as exc:
                # A kept-alive connection the server closed (uvicorn's keep-alive timeout) as
                # the request went out: sent again on a new one, as browsers do. A server that
                # is gone fails the second attempt too (and the process check).
                if attempt == 1 and _reset_before_answer(exc):
                    self.figures.retried()
                    continue
                self.figures.failure(f"{self.username} {method} {path}: {exc!r}")
                raise UnexpectedAnswerError(f"{method} {path}: {exc!r}") from exc
            except requests.RequestException as exc:
                self.figures.failure(f"{self.username} {method} {path}: {exc!r}")
                raise UnexpectedAnswerError(f"{method} {path}: {exc!r}") from exc
        self.figures.action(action, time.perf_counter() - start)
        if answer.status_code >= 500:
            self.figures.server_error(f"{self.username} {method} {path} -> {answer.status_code}")
        if answer.status_code not in tuple(ok):
            if answer.status_code < 500:
                self.figures.failure(
                    f"{self.username} {method} {path} -> {answer.status_code} {answer.text[:200]!r}"
                )
            raise UnexpectedAnswerError(f"{method} {path} -> {answer.status_code}")
        return answer

    def get_json(self, path: str, action: str) -> Any:
        return self.request("GET", path, action).json()


def _reset_before_answer(exc: requests.ConnectionError) -> bool:
    text = repr(exc)
    return "Connection aborted" in text and (
        "ConnectionResetError" in text or "RemoteDisconnected" in text
    )


# --- STOW-RS -----------------------------------------------------------------------------------


def multipart_related(parts: list[bytes]) -> tuple[bytes, str]:
    """A multipart/related body of DICOM files, as STOW-RS takes it (PS3.18 10.5)."""
    boundary = uuid.uuid4().hex
    chunks = []
    for part in parts:
        chunks += [
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
            part,
            b"\r\n",
        ]
    chunks.append(f"--{boundary}--\r\n".encode())
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return b"".join(chunks), content_type


def synthetic_study(patient_id: str, name: str, *, slices: int, size: int) -> list[bytes]:
    """A small CT chest of a new patient, from the product's own synthetic module."""
    from referrals.archive.synthetic import SyntheticPatient, ct_series, to_bytes

    patient = SyntheticPatient(patient_id, name)
    return [
        to_bytes(ds)
        for ds in ct_series(patient=patient, count=slices, size=size, accession=patient_id[-16:])
    ]


STUDY_LINK = re.compile(r'href="/studies/(\d+)/"')


def study_id_by_patient(clinic: Client, patient_id: str) -> int | None:
    """The study's id as the clinic finds it: its studies page, searched by patient ID."""
    page = clinic.request("GET", f"/studies/?q={patient_id}", "page: studies search")
    found = STUDY_LINK.search(page.text)
    return int(found.group(1)) if found else None
