"""Single sign-on with one hospital's identity provider (OpenID Connect, mozilla-django-oidc).

Off unless HUB_OIDC_ISSUER is set. The provider serves one hospital (HUB_OIDC_INSTITUTION):
whoever it signs in becomes the EXISTING hub user who is a member there, found by the
subject bound at an earlier sign-in, else (the first time) by e-mail or user name, and then
the subject is bound. Nobody is created and no role is given here: roles are granted in the
hub. A refusal is written to the audit trail like a failed password (tenants/signals.py)
and said in one sentence on the sign-in page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import jwt
import requests
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import BACKEND_SESSION_KEY, get_user_model
from django.contrib.auth.signals import user_logged_out
from django.core.cache import cache
from django.core.exceptions import SuspiciousOperation
from django.db.models import QuerySet
from django.dispatch import receiver
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.views.generic import View
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import absolutify, import_from_settings
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from .access import SESSION_KEY
from .models import Institution, Membership, OidcIdentity, User

log = logging.getLogger(__name__)

BACKEND = "tenants.oidc.HubOidcBackend"
# Set on the request by the backend when it refuses; tenants/signals.py audits it.
REFUSAL_ATTR = "hub_oidc_refusal"
METADATA_SECONDS = 600
HTTP_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    scopes: str
    user_claim: str
    user_field: str  # "email" or "username": the hub user's field the claim is compared with
    institution_code: str
    name: str
    sign_algo: str


def oidc_config() -> OidcConfig | None:
    """The provider as settings name it, or None when single sign-on is off."""
    if not settings.HUB_OIDC_ISSUER:
        return None
    return OidcConfig(
        issuer=settings.HUB_OIDC_ISSUER,
        client_id=settings.HUB_OIDC_CLIENT_ID,
        client_secret=settings.HUB_OIDC_CLIENT_SECRET,
        scopes=settings.HUB_OIDC_SCOPES,
        user_claim=settings.HUB_OIDC_USER_CLAIM,
        user_field=settings.HUB_OIDC_USER_FIELD,
        institution_code=settings.HUB_OIDC_INSTITUTION,
        name=settings.HUB_OIDC_NAME,
        sign_algo=settings.HUB_OIDC_SIGN_ALGO,
    )


def oidc_institution(config: OidcConfig) -> Institution | None:
    return Institution.objects.filter(code=config.institution_code, is_active=True).first()


def provider_label(config: OidcConfig, institution: Institution | None = None) -> str:
    """What the sign-in button calls the provider: its configured name, else the hospital."""
    if config.name:
        return config.name
    institution = institution or oidc_institution(config)
    return institution.display_name if institution is not None else config.issuer


class ProviderUnavailableError(Exception):
    """The provider's metadata could not be read, or does not describe the issuer."""


REQUIRED_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri")


def provider_metadata(config: OidcConfig) -> dict[str, Any]:
    """The provider's discovery document (OpenID Connect Discovery 1.0), cached a while."""
    key = f"hub:oidc:metadata:{config.issuer}"
    metadata = cache.get(key)
    if metadata is None:
        url = config.issuer.rstrip("/") + "/.well-known/openid-configuration"
        try:
            response = requests.get(url, timeout=HTTP_TIMEOUT_SECONDS)
            response.raise_for_status()
            metadata = response.json()
        except (requests.RequestException, ValueError) as exc:
            raise ProviderUnavailableError(f"{url}: {exc}") from exc
        # The document must be the issuer's own (Discovery 1.0 section 4.3), and complete.
        if not isinstance(metadata, dict) or metadata.get("issuer") != config.issuer:
            raise ProviderUnavailableError(f"{url} describes another issuer")
        missing = [name for name in REQUIRED_ENDPOINTS if not metadata.get(name)]
        if missing:
            raise ProviderUnavailableError(f"{url} names no {', '.join(missing)}")
        cache.set(key, metadata, METADATA_SECONDS)
    return metadata


def _setting(attr: str, *default: Any) -> Any:
    """mozilla-django-oidc's settings, answered from the hub's HUB_OIDC_* ones."""
    config = oidc_config()
    if config is not None:
        fixed = {
            "OIDC_RP_CLIENT_ID": config.client_id,
            "OIDC_RP_CLIENT_SECRET": config.client_secret,
            "OIDC_RP_SCOPES": config.scopes,
            "OIDC_RP_SIGN_ALGO": config.sign_algo,
            "OIDC_CREATE_USER": False,  # never: an unknown person is refused
            "OIDC_USE_PKCE": True,
            "OIDC_USE_NONCE": True,
            "OIDC_STORE_ID_TOKEN": True,  # for the provider's logout (id_token_hint)
            "OIDC_TIMEOUT": HTTP_TIMEOUT_SECONDS,
            "OIDC_VERIFY_SSL": True,
        }
        if attr in fixed:
            return fixed[attr]
    return import_from_settings(attr, *default)


# --- Who the provider's user is in the hub -----------------------------------------------


class Refusal:
    NO_ACCOUNT = "no_account"
    INACTIVE = "inactive"
    AMBIGUOUS = "ambiguous"
    NOT_SET_UP = "not_set_up"
    PROVIDER_ERROR = "provider_error"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class SignInRefusal:
    reason: str
    username: str  # the claim the provider sent (e-mail or user name), for the audit row
    institution: Institution | None


def refusal_message(reason: str, provider: str) -> str:
    if reason in (Refusal.NO_ACCOUNT, Refusal.AMBIGUOUS):
        # One sentence whether the person is unknown or belongs to another hospital.
        return _(
            "You signed in at %(provider)s, but no hub account of that hospital matches you. "
            "Ask your hospital's hub administrator to add you."
        ) % {"provider": provider}
    if reason == Refusal.INACTIVE:
        return _(
            "You signed in at %(provider)s, but your hub account is switched off. "
            "Ask your hospital's hub administrator."
        ) % {"provider": provider}
    if reason == Refusal.CANCELLED:
        return _("Sign-in at %(provider)s was cancelled.") % {"provider": provider}
    return _(
        "Sign-in through %(provider)s could not be completed. Try again, or sign in with "
        "your hub user name and password."
    ) % {"provider": provider}


def _claim_text(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    return value.strip() if isinstance(value, str) else ""


def users_matching_claims(
    *, config: OidcConfig, institution: Institution, claims: dict[str, Any]
) -> tuple[list[User], str]:
    """The hub users these claims may sign in as, and the refusal when not exactly one.

    A bound subject decides alone. Otherwise the claim finds a member of the hospital who
    has no subject bound yet at this provider (an address reused by someone else later
    must not take over a bound account); an address the provider says is unverified finds
    nobody."""
    members = Membership.objects.active().filter(institution=institution).values("user_id")
    subject = _claim_text(claims, "sub")
    bound = OidcIdentity.objects.filter(issuer=config.issuer, subject=subject).first()
    if bound is not None:
        found = list(get_user_model().objects.filter(pk=bound.user_id, pk__in=members))
    else:
        value = _claim_text(claims, config.user_claim)
        unverified = config.user_field == "email" and claims.get("email_verified") is False
        if not value or unverified:
            return [], Refusal.NO_ACCOUNT
        lookup = {"email__iexact": value} if config.user_field == "email" else {"username": value}
        found = list(
            get_user_model()
            .objects.filter(**lookup, pk__in=members)
            .exclude(oidc_identities__issuer=config.issuer)
        )
    if not found:
        return [], Refusal.NO_ACCOUNT
    if len(found) > 1:
        return found, Refusal.AMBIGUOUS
    if not found[0].is_active:
        return [], Refusal.INACTIVE
    return found, ""


class HubOidcBackend(OIDCAuthenticationBackend):
    """The authorization code flow (with PKCE and a nonce), matching existing users only."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The provider's endpoints are read when a sign-in comes back, not here: Django
        # builds every backend for each password sign-in, which must not wait for the IdP.
        self.UserModel = get_user_model()

    get_settings = staticmethod(_setting)

    def authenticate(self, request: Any, **kwargs: Any) -> Any:
        config = oidc_config()
        # Only the callback passes a nonce; a password sign-in is not ours to judge.
        if config is None or request is None or "nonce" not in kwargs:
            return None
        self.request = request
        self.config = config
        self.institution = oidc_institution(config)
        if self.institution is None:
            log.error(
                "HUB_OIDC_INSTITUTION %r names no active institution", config.institution_code
            )
            return self._refuse(Refusal.NOT_SET_UP, "")
        try:
            metadata = provider_metadata(config)
            self.OIDC_OP_TOKEN_ENDPOINT = metadata["token_endpoint"]
            self.OIDC_OP_USER_ENDPOINT = metadata["userinfo_endpoint"]
            self.OIDC_OP_JWKS_ENDPOINT = metadata["jwks_uri"]
            self.OIDC_RP_CLIENT_ID = config.client_id
            self.OIDC_RP_CLIENT_SECRET = config.client_secret
            self.OIDC_RP_SIGN_ALGO = config.sign_algo
            self.OIDC_RP_IDP_SIGN_KEY = None
            user = super().authenticate(request, **kwargs)
        except (ProviderUnavailableError, SuspiciousOperation, requests.RequestException) as exc:
            log.warning("single sign-on through %s failed: %s", config.issuer, exc)
            user = None
        except jwt.PyJWTError as exc:  # an expired or malformed ID token
            log.warning("single sign-on through %s: bad ID token: %s", config.issuer, exc)
            user = None
        if user is None and getattr(request, REFUSAL_ATTR, None) is None:
            self._refuse(Refusal.PROVIDER_ERROR, "")
        return user

    def _refuse(self, reason: str, username: str) -> None:
        setattr(
            self.request,
            REFUSAL_ATTR,
            SignInRefusal(reason=reason, username=username[:150], institution=self.institution),
        )
        return None

    def verify_token(self, token: str, **kwargs: Any) -> dict[str, Any]:
        """The signature, expiry and nonce (mozilla-django-oidc), then that this issuer
        made the token for this hub (it checks neither)."""
        payload = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        audiences = [audience] if isinstance(audience, str) else list(audience or [])
        if payload.get("iss") != self.config.issuer or self.config.client_id not in audiences:
            raise SuspiciousOperation("ID token of another issuer or for another client")
        return payload

    def get_userinfo(self, access_token: str, id_token: str, payload: dict) -> dict[str, Any]:
        claims = super().get_userinfo(access_token, id_token, payload)
        # OpenID Connect Core 5.3.2: the UserInfo answer must be about the token's subject.
        if not isinstance(claims, dict) or claims.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("UserInfo about another subject")
        return claims

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        if _claim_text(claims, "sub"):
            return True
        self._refuse(Refusal.PROVIDER_ERROR, "")
        return False

    def filter_users_by_claims(self, claims: dict[str, Any]) -> QuerySet[User]:
        assert self.institution is not None
        found, reason = users_matching_claims(
            config=self.config, institution=self.institution, claims=claims
        )
        if reason:
            self._refuse(reason, _claim_text(claims, self.config.user_claim))
        return self.UserModel.objects.filter(pk__in=[user.pk for user in found])

    def create_user(self, claims: dict[str, Any]) -> Any:
        raise SuspiciousOperation("single sign-on creates no users")  # OIDC_CREATE_USER is off

    def update_user(self, user: User, claims: dict[str, Any]) -> User:
        """Bind the subject at the first sign-in; the session acts for the provider's
        hospital (tenants/signals.py audits the sign-in there)."""
        _identity, bound = OidcIdentity.objects.get_or_create(
            issuer=self.config.issuer, subject=_claim_text(claims, "sub"), defaults={"user": user}
        )
        assert self.institution is not None
        self.request.session[SESSION_KEY] = self.institution.pk
        user.sign_in_detail = {"via": "oidc", "issuer": self.config.issuer, "bound": bound}  # type: ignore[attr-defined]
        return user


# --- The pages: start, come back, and the provider's logout -------------------------------


class SignInStartView(OIDCAuthenticationRequestView):
    """/oidc/authenticate/: off to the provider (404 when single sign-on is off)."""

    get_settings = staticmethod(_setting)

    def __init__(self, **kwargs: Any) -> None:
        View.__init__(self, **kwargs)  # the endpoint is read per request (see get)

    def get(self, request: HttpRequest) -> HttpResponse:
        config = oidc_config()
        if config is None:
            raise Http404
        if request.user.is_authenticated:
            return HttpResponseRedirect(resolve_url(settings.LOGIN_REDIRECT_URL))
        try:
            metadata = provider_metadata(config)
        except ProviderUnavailableError as exc:
            log.warning("single sign-on: %s", exc)
            messages.error(request, refusal_message(Refusal.PROVIDER_ERROR, provider_label(config)))
            return HttpResponseRedirect(reverse("login"))
        self.OIDC_OP_AUTH_ENDPOINT = metadata["authorization_endpoint"]
        self.OIDC_RP_CLIENT_ID = config.client_id
        return super().get(request)

    def get_extra_params(self, request: HttpRequest) -> dict[str, str]:
        # The provider's pages in the hub's language, when it has it.
        return {"ui_locales": "zh-CN" if (get_language() or "").startswith("zh") else "en"}


class SignInCallbackView(OIDCAuthenticationCallbackView):
    """/oidc/callback/: the provider sends the person back with a code (or an error)."""

    get_settings = staticmethod(_setting)

    @property
    def failure_url(self) -> str:
        return reverse("login")

    def get(self, request: HttpRequest) -> HttpResponse:
        config = oidc_config()
        if config is None:
            raise Http404
        # RFC 9207: an answer naming another issuer is a mix-up, whatever else it says.
        if "iss" in request.GET and request.GET["iss"] != config.issuer:
            return self.login_failure()
        try:
            return super().get(request)
        except SuspiciousOperation as exc:  # a state this session never sent (a replay)
            log.warning("single sign-on callback refused: %s", exc)
            return self.login_failure()

    def login_failure(self) -> HttpResponse:
        config = oidc_config()
        assert config is not None
        refusal = getattr(self.request, REFUSAL_ATTR, None)
        if refusal is not None:
            reason = refusal.reason
        elif self.request.GET.get("error") == "access_denied":
            reason = Refusal.CANCELLED
        else:
            reason = Refusal.PROVIDER_ERROR
        messages.error(self.request, refusal_message(reason, provider_label(config)))
        return super().login_failure()


def provider_logout_url(request: HttpRequest, *, token_hint: bool = True) -> str:
    """Where /oidc/logout/ sends a signed-out person: the provider's end-session endpoint
    when it has one (RP-initiated logout), else the hub's sign-in page."""
    login_url = absolutify(request, reverse("login"))
    config = oidc_config()
    try:
        endpoint = provider_metadata(config).get("end_session_endpoint") if config else None
    except ProviderUnavailableError:
        endpoint = None
    if config is None or not endpoint:
        return login_url
    params = {"client_id": config.client_id, "post_logout_redirect_uri": login_url}
    id_token = request.session.get("oidc_id_token") if token_hint else None
    if id_token:
        params["id_token_hint"] = id_token
    return f"{endpoint}?{urlencode(params)}"


@receiver(user_logged_out)
def _offer_provider_logout(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Signed out of the hub after a single sign-on: offer to sign out at the provider too
    (a shared ward computer stays signed in there otherwise)."""
    config = oidc_config()
    session = getattr(request, "session", None)
    if config is None or session is None or session.get(BACKEND_SESSION_KEY) != BACKEND:
        return
    if getattr(getattr(request, "resolver_match", None), "url_name", "") == "oidc_logout":
        return  # on its way to the provider's logout already
    # No ID token in the link: it would travel in the messages cookie.
    url = provider_logout_url(request, token_hint=False)
    if url == absolutify(request, reverse("login")):
        return  # the provider has no end-session endpoint
    messages.info(
        request,
        format_html(
            '{} <a href="{}" id="oidc-provider-logout">{}</a>',
            _("You are signed out of the hub."),
            url,
            _("Also sign out at %(provider)s") % {"provider": provider_label(config)},
        ),
        fail_silently=True,  # an idle session ends before the messages middleware runs
    )
