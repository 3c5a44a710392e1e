"""The hub's settings: one module, driven by environment variables, strict about bad values.

With no environment at all you get the embedded default: the real PostgreSQL and Valkey that
`make run` keeps under one data folder (alliance/embedded.py), and local files there, so
the database, broker, cache and channel layers take production's code paths. Setting
DATABASE_URL, REDIS_URL and S3_* names other servers; HUB_ENV=production adds the guards
that refuse an unsafe start. See docs/operations.md for every variable.
"""

from __future__ import annotations

import importlib.util
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONCE as CSP_NONCE
from csp.constants import NONE as CSP_NONE
from csp.constants import SELF as CSP_SELF
from django.core.exceptions import ImproperlyConfigured
from environs import Env
from marshmallow.validate import OneOf, Range, Regexp

env = Env(eager=True)  # read from the process only: no .env file is read behind your back

BASE_DIR = Path(__file__).resolve().parent.parent
DEV_SECRET_KEY = "insecure-dev-key-for-the-embedded-hub-only"

HUB_ENV: str = env.str(
    "HUB_ENV", "development", validate=OneOf(["development", "test", "production"])
)
PRODUCTION = HUB_ENV == "production"

DATA_DIR: Path = env.path("HUB_DATA_DIR", BASE_DIR / "var").resolve()
DEBUG: bool = env.bool("DEBUG", HUB_ENV == "development")
SECRET_KEY: str = env.str("SECRET_KEY", DEV_SECRET_KEY)
ALLOWED_HOSTS: list[str] = env.list(
    "ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"]
)
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", [])
DATABASE_URL: str = env.str("DATABASE_URL", "")
REDIS_URL: str = env.str("REDIS_URL", "")
if not PRODUCTION and not (DATABASE_URL and REDIS_URL):
    # Nothing named: the embedded servers of this data folder, as last started (ports and
    # passwords from its embedded.json). Settings only read that file; `make run` starts them.
    from alliance import embedded

    _embedded = embedded.urls(DATA_DIR)
    DATABASE_URL = DATABASE_URL or _embedded.database
    REDIS_URL = REDIS_URL or _embedded.redis


def _refuse_unsafe_production() -> None:
    problems = []
    if DEBUG:
        problems.append("DEBUG must be off")
    if SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        problems.append("SECRET_KEY must be set to a random value of at least 50 characters")
    if not ALLOWED_HOSTS:
        problems.append("ALLOWED_HOSTS must name the hosts the hub answers to")
    elif "*" in ALLOWED_HOSTS:
        # Any Host header would do: links in mails and the WebSocket origin check would
        # follow whatever a request claims.
        problems.append("ALLOWED_HOSTS must name the hosts, not *")
    if not DATABASE_URL.startswith(("postgres://", "postgresql://")):
        problems.append("DATABASE_URL must point at PostgreSQL")
    if not REDIS_URL:
        problems.append("REDIS_URL must be set")
    if len(env.str("PATIENT_KEY_SECRET", "")) < 32:
        problems.append("PATIENT_KEY_SECRET must be set to a random value of 32+ characters")
    if problems:
        raise ImproperlyConfigured("HUB_ENV=production refuses to start: " + "; ".join(problems))


if PRODUCTION:
    _refuse_unsafe_production()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "alliance.staticfiles.HubStaticFilesConfig",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "corsheaders",
    "channels",
    "django_password_validators",
    "django_password_validators.password_history",
    # The second factor (tenants/two_factor/): TOTP apps, and one-time recovery codes.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "tenants",
    "alliance",
    "referrals",
    "reporting",
    "consultations",
]
# The benchmarks (`manage.py bench_*`, `seed_scale`) live in bench/ beside manage.py: in a
# checkout, not in the installed package or the production image.
if importlib.util.find_spec("bench") is not None:
    INSTALLED_APPS.append("bench")

MIDDLEWARE = [
    # First, so a CORS preflight is answered before anything else can refuse it.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # After WhiteNoise (static files keep their caching): pages and answers of the hub hold
    # patient data and must not stay in a shared computer's browser cache.
    "alliance.http_headers.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Django's LocaleMiddleware, but English for programs on /api/ and /dicomweb/ that send
    # no Accept-Language (the site's default, Chinese, is for the people on its pages).
    "alliance.middleware.HubLocaleMiddleware",
    # After the locale, so its refusal speaks the caller's language; before any view.
    "alliance.middleware.RefuseNulCharactersMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tenants.session_timeout.SessionTimeoutMiddleware",
    "tenants.middleware.ActiveInstitutionMiddleware",
    # Whether this session has passed its second factor; a session that must and has not
    # sees only the code (or enrolment) page.
    "django_otp.middleware.OTPMiddleware",
    "tenants.two_factor.middleware.TwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "alliance.urls"
WSGI_APPLICATION = "alliance.wsgi.application"
ASGI_APPLICATION = "alliance.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "alliance.context_processors.active_scope",
            ],
        },
    },
]

# --- Databases -------------------------------------------------------------------------
DATABASE_POOL_MAX: int = env.int("DATABASE_POOL_MAX", 20, validate=Range(min=0))
DATABASES = {"default": dj_database_url.parse(DATABASE_URL)}
if DATABASES["default"]["ENGINE"].endswith("postgresql") and DATABASE_POOL_MAX:
    # Under ASGI each request's sync code runs in a fresh thread, so Django's
    # per-thread persistent connections become one new connection per request
    # (docs/benchmarks.md §1). psycopg's pool keeps them across threads.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DATABASE_POOL_MAX,
        "timeout": 30,
    }
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, channel layer, Celery ---------------------------------------------------------
# The channel layer alias of the MDT rooms' traffic (consultations/fanout.py).
ROOMS_CHANNEL_LAYER = "rooms"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", "hub"),
    }
}
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py 8 cuts every read at 5 s by default, and the layer's blocking pop
            # waits 5 s: idle sockets died every few seconds (django/channels_redis#422).
            # redis-py 8 caps a pool at 100 connections; busy MDT rooms need more.
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": 15,
                    "max_connections": env.int("CHANNELS_MAX_CONNECTIONS", 500),
                }
            ],
            "prefix": env.str("CHANNELS_PREFIX", "hub"),
            "capacity": 1000,
            "expiry": 60,
        },
    },
    # MDT rooms (consultations/fanout.py): Redis pub/sub. A room event is one PUBLISH,
    # heard once by each process with sockets in the room, and handed to its local
    # channel from memory; the list-based layer above pops one message per round trip
    # under a lock shared by every socket of the process, which fell behind at 20 rooms
    # x 30 (docs/benchmarks.md, MDT rooms). Pub/sub delivers at most once, like the
    # other: a room's log fills any gap (fanout's repair).
    ROOMS_CHANNEL_LAYER: {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL}],
            "prefix": env.str("CHANNELS_PREFIX", "hub") + ".rooms",
        },
    },
}
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # A message a worker took and did not acknowledge (it was killed) goes back to the queue
    # after this. Above the longest task run and every countdown/ETA (a message waiting for
    # its ETA is unacknowledged too): docs/operations.md "Lost work", tests/test_faults.py.
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", 300, validate=Range(min=1)),
    "global_keyprefix": env.str("CELERY_KEY_PREFIX", "hub:"),
}

CELERY_TASK_ALWAYS_EAGER: bool = env.bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_DEFAULT_QUEUE", "hub")
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    "heartbeat": {
        "task": "alliance.tasks.heartbeat",
        "schedule": env.float("HUB_HEARTBEAT_SECONDS", 30.0),
    },
}
# Marks studies stable once quiet (HUB_STUDY_QUIET_SECONDS); a sweep nobody took in time is
# dropped, the next one does its work.
HUB_STABLE_SWEEP_SECONDS: float = env.float(
    "HUB_STABLE_SWEEP_SECONDS", 5.0, validate=Range(min=0.1)
)
# The same sweep queues again a stable study's hooks whose task was lost, this long after
# they were last queued, for at most this many hours after the event.
HUB_STABLE_HOOK_RETRY_SECONDS: float = env.float(
    "HUB_STABLE_HOOK_RETRY_SECONDS", 120.0, validate=Range(min=1)
)
HUB_STABLE_HOOK_RETRY_HOURS: float = env.float(
    "HUB_STABLE_HOOK_RETRY_HOURS", 24.0, validate=Range(min=0.01)
)
CELERY_BEAT_SCHEDULE["studies-stable-sweep"] = {
    "task": "referrals.tasks.studies_stable_sweep",
    "schedule": HUB_STABLE_SWEEP_SECONDS,
    "options": {"expires": HUB_STABLE_SWEEP_SECONDS * 2},
}

# --- Storage ------------------------------------------------------------------------------
S3_BUCKET: str = env.str("S3_BUCKET", "")
if S3_BUCKET:
    _DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env.str("S3_ENDPOINT_URL", "") or None,
            "access_key": env.str("S3_ACCESS_KEY", ""),
            "secret_key": env.str("S3_SECRET_KEY", ""),
            "region_name": env.str("S3_REGION", "us-east-1"),
            "file_overwrite": False,
            # Images leave only through the hub's access layer, never by a signed URL.
            "querystring_auth": False,
            "default_acl": None,
        },
    }
else:
    _DEFAULT_STORAGE = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": DATA_DIR / "media"},
    }
STORAGES = {
    "default": _DEFAULT_STORAGE,
    "staticfiles": {
        "BACKEND": (
            "whitenoise.storage.CompressedManifestStaticFilesStorage"
            if PRODUCTION
            else "django.contrib.staticfiles.storage.StaticFilesStorage"
        )
    },
}
STATIC_URL = "/static/"
STATIC_ROOT = env.path("STATIC_ROOT", DATA_DIR / "static")
if not PRODUCTION:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise expects it, even if empty
WHITENOISE_USE_FINDERS = not PRODUCTION
# Third-party browser code comes from npm at install time (alliance/frontend/package.json;
# `make` runs `npm ci`), never from the repository. Only each package's dist/ is served,
# under /static/vendor/<package>/; alliance/frontend/checks.py stops the hub if one is missing.
FRONTEND_DIR: Path = env.path("HUB_FRONTEND_DIR", BASE_DIR / "alliance" / "frontend")
STATICFILES_DIRS = [
    ("vendor/dicom-parser", FRONTEND_DIR / "node_modules" / "dicom-parser" / "dist"),
    ("vendor/echarts", FRONTEND_DIR / "node_modules" / "echarts" / "dist"),
]

# --- Authentication -------------------------------------------------------------------------
AUTH_USER_MODEL = "tenants.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# The password policy: 12 characters or more, not like the user's name, not one of the
# 20,000 most common passwords, not only digits, and none of the user's last 5 passwords
# (django-password-validators keeps their salted hashes, never the passwords).
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": env.int("HUB_PASSWORD_MIN_LENGTH", 12)},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {
        "NAME": "django_password_validators.password_history.password_validation."
        "UniquePasswordsValidator",
        "OPTIONS": {"last_passwords": env.int("HUB_PASSWORD_HISTORY", 5)},
    },
]
if HUB_ENV == "test":
    # The suite makes hundreds of users; PBKDF2's million rounds would dominate its time.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    DPV_DEFAULT_HISTORY_HASHER = "tenants.passwords.QuickHistoryHasher"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", 8 * 3600)  # one working shift
# A session left alone this long ends (MLPS level 3: session timeout); the page's next
# request goes to the sign-in page and its sockets close (tenants/session_timeout.py).
HUB_SESSION_IDLE_MINUTES: int = env.int("HUB_SESSION_IDLE_MINUTES", 30, validate=Range(min=1))
# A request body that stops arriving for this long is answered 408 (alliance/body_timeout.py);
# each chunk restarts the clock, so a slow upload that keeps sending is never cut.
HUB_REQUEST_BODY_TIMEOUT: float = env.float("HUB_REQUEST_BODY_TIMEOUT", 30.0, validate=Range(min=1))
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# Lock an account+address out after repeated failures (MLPS level 3: login failure handling).
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", 5)
# Per account, whatever the address (tenants/lockout.py), with a wait that doubles for each
# further round of failures; the address is the connection's own (a client's
# X-Forwarded-For is not believed unless a proxy in front is configured to set it).
HUB_LOCKOUT_BASE_MINUTES: int = env.int("HUB_LOCKOUT_BASE_MINUTES", 1, validate=Range(min=1))
HUB_LOCKOUT_MAX_MINUTES: int = env.int("HUB_LOCKOUT_MAX_MINUTES", 60, validate=Range(min=1))
AXES_COOLOFF_TIME = "tenants.lockout.cool_off"
AXES_LOCKOUT_PARAMETERS = ["username"]
# axes.W006 warns that a lockout without the address can be dodged by rotating user agents
# or cookies; that is true of the address-based criteria it recommends, not of a count per
# account, which no client-side change resets.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
AXES_IPWARE_META_PRECEDENCE_ORDER = env.list("AXES_IPWARE_META_PRECEDENCE_ORDER", ["REMOTE_ADDR"])
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "tenants/locked_out.html"
AXES_VERBOSE = False
# The second factor (MLPS level 3: two-factor authentication of administrators): a TOTP app
# code at each sign-in for whoever enrolled, and enrolment required of the roles in
# tenants/roles.py TWO_FACTOR_ROLES when on (the default in production; elsewhere optional).
HUB_TWO_FACTOR_REQUIRED: bool = env.bool("HUB_TWO_FACTOR_REQUIRED", PRODUCTION)
# Where a hospital requires it: the image viewer of staff pages is overlaid with the viewer's
# name, institution and the time (not the patient's share page, not the frames served).
HUB_VIEWER_WATERMARK: bool = env.bool("HUB_VIEWER_WATERMARK", False)
OTP_TOTP_ISSUER = "Alliance imaging hub"
# A mistyped code is counted like a wrong password (tenants/lockout.py); axes keeps the
# request's fields with each failure, codes masked like the password.
AXES_SENSITIVE_PARAMETERS = ["username", "ip_address", "otp_token", "otp"]
# Single sign-on with one hospital's identity provider (OpenID Connect; tenants/oidc.py), off
# unless HUB_OIDC_ISSUER is set. Its users sign in as EXISTING hub users who are members of
# HUB_OIDC_INSTITUTION (by the subject bound at their first sign-in, found then by the claim
# HUB_OIDC_USER_CLAIM compared with the user's HUB_OIDC_USER_FIELD); nobody is created and
# roles are granted in the hub only. Endpoints come from the issuer's discovery document.
HUB_OIDC_ISSUER: str = env.str(
    "HUB_OIDC_ISSUER",
    "",
    validate=Regexp(
        r"^$|^https://[^\s?#]+$|^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/[^\s?#]*)?$",
        error="HUB_OIDC_ISSUER must be an https:// URL (http:// only on this machine's loopback)",
    ),
)
HUB_OIDC_CLIENT_ID: str = env.str("HUB_OIDC_CLIENT_ID", "")
HUB_OIDC_CLIENT_SECRET: str = env.str("HUB_OIDC_CLIENT_SECRET", "")
HUB_OIDC_SCOPES: str = env.str(
    "HUB_OIDC_SCOPES",
    "openid email profile",
    validate=Regexp(r"^(.* )?openid( .*)?$", error="HUB_OIDC_SCOPES must include openid"),
)
HUB_OIDC_USER_CLAIM: str = env.str(
    "HUB_OIDC_USER_CLAIM", "email", validate=Regexp(r"^[A-Za-z0-9_.:-]+$")
)
HUB_OIDC_USER_FIELD: str = env.str(
    "HUB_OIDC_USER_FIELD", "email", validate=OneOf(["email", "username"])
)
HUB_OIDC_INSTITUTION: str = env.str("HUB_OIDC_INSTITUTION", "")  # the hospital's code
HUB_OIDC_NAME: str = env.str("HUB_OIDC_NAME", "")  # "Sign in with ..."; else the hospital's name
HUB_OIDC_SIGN_ALGO: str = env.str("HUB_OIDC_SIGN_ALGO", "RS256", validate=OneOf(["RS256", "ES256"]))
if HUB_OIDC_ISSUER:
    _oidc_missing = [
        name
        for name in ("HUB_OIDC_CLIENT_ID", "HUB_OIDC_CLIENT_SECRET", "HUB_OIDC_INSTITUTION")
        if not globals()[name]
    ]
    if _oidc_missing:
        raise ImproperlyConfigured("HUB_OIDC_ISSUER is set: set " + ", ".join(_oidc_missing))
    if PRODUCTION and not HUB_OIDC_ISSUER.startswith("https://"):
        raise ImproperlyConfigured("HUB_ENV=production refuses an http:// HUB_OIDC_ISSUER")
    AUTHENTICATION_BACKENDS.append("tenants.oidc.HubOidcBackend")
OIDC_AUTHENTICATE_CLASS = "tenants.oidc.SignInStartView"
OIDC_CALLBACK_CLASS = "tenants.oidc.SignInCallbackView"
OIDC_OP_LOGOUT_URL_METHOD = "tenants.oidc.provider_logout_url"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.auth.HubTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "alliance.parsers.HubJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "alliance.pagination.HubLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "tenants.openapi.HubAutoSchema",
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("THROTTLE_ANON", "120/min"),
        "user": env.str("THROTTLE_USER", "6000/min"),
        "login": env.str("THROTTLE_LOGIN", "20/min"),
    },
    "EXCEPTION_HANDLER": "tenants.errors.api_exception_handler",
}
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=env.int("API_TOKEN_TTL_DAYS", 30)),
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Alliance imaging hub API",
    "DESCRIPTION": (
        "Multi-tenant API of the regional medical-alliance imaging hub. Every object is "
        "scoped to the caller's active institution; objects of other institutions answer "
        "404 exactly as objects that do not exist."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Choice sets that share a field name with another ("kind", "status") get stable names.
    "ENUM_NAME_OVERRIDES": {
        "ReferralKindEnum": "referrals.models.ReferralKind",
        "ReferralStatusEnum": "referrals.models.ReferralStatus",
        "ReturnReasonEnum": "referrals.models.ReturnReason",
        "SecondReadOutcomeEnum": "reporting.models.SecondReadOutcome",
        "AuditOutcomeEnum": "tenants.models.AuditOutcome",
        "SignKindEnum": ["preliminary", "final"],
        "MdtSessionKindEnum": "consultations.models.SessionKind",
        "MembershipRoleEnum": "tenants.models.Role",
        "InvitationRoleEnum": ["presenter", "participant", "observer"],
        "CorrectionKindEnum": "referrals.models.CorrectionKind",
    },
}

# --- Internationalisation -------------------------------------------------------------------
LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "alliance" / "locale"]
TIME_ZONE = env.str("TIME_ZONE", "Asia/Shanghai")
USE_I18N = True
USE_TZ = True
LANGUAGE_COOKIE_NAME = "hub_language"

# --- Security -------------------------------------------------------------------------------
SECURE_CONTENT_TYPE_NOSNIFF = True
# Content-Security-Policy (django-csp): the hub's pages run only the hub's own scripts and
# styles, never inline code (a stored-XSS payload would not run), and cannot be framed. The
# few <style> blocks of printable pages carry the response's nonce. Django's admin (for
# superusers and alliance administrators) is left to its own headers.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/admin/"],
    "DIRECTIVES": {
        "default-src": [CSP_SELF],
        "script-src": [CSP_SELF],
        "style-src": [CSP_SELF, CSP_NONCE],
        "img-src": [CSP_SELF, "data:", "blob:"],
        "font-src": [CSP_SELF, "data:"],
        "connect-src": [CSP_SELF],
        "object-src": [CSP_NONE],
        "base-uri": [CSP_SELF],
        "form-action": [CSP_SELF],
        "frame-ancestors": [CSP_NONE],
    },
}
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", True)
    if env.bool("TRUST_X_FORWARDED_PROTO", False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Imaging -------------------------------------------------------------------------------
HUB_MAX_INSTANCE_BYTES: int = env.int("HUB_MAX_INSTANCE_BYTES", 2 * 1024**3)
HUB_MAX_STOW_BYTES: int = env.int("HUB_MAX_STOW_BYTES", 16 * 1024**3)
HUB_SPOOL_DIR: Path = env.path("HUB_SPOOL_DIR", DATA_DIR / "spool")
# A study is "stable" once no instance has arrived for this long; routing hooks onto it.
HUB_STUDY_QUIET_SECONDS: int = env.int("HUB_STUDY_QUIET_SECONDS", 90)
# No QIDO-RS answer is longer than this, whatever `limit` asks (PS3.18 8.3.4.4).
HUB_QIDO_MAX_RESULTS: int = env.int("HUB_QIDO_MAX_RESULTS", 1000, validate=Range(min=1))

# --- Patient share links: lifetime, and openings allowed per IP and per link ----
_RATE = r"^\d+/\d*[smhd]$"  # django-ratelimit's "count/period"
HUB_SHARE_LINK_DAYS: int = env.int("HUB_SHARE_LINK_DAYS", 30, validate=Range(min=1, max=3650))
HUB_SHARE_RATE_IP: str = env.str("HUB_SHARE_RATE_IP", "30/m", validate=Regexp(_RATE))
HUB_SHARE_RATE_LINK: str = env.str("HUB_SHARE_RATE_LINK", "60/m", validate=Regexp(_RATE))
# Rendered frames of a shared study: per link (a phone scrolling a CT asks for many).
HUB_SHARE_RATE_FRAMES: str = env.str("HUB_SHARE_RATE_FRAMES", "1200/m", validate=Regexp(_RATE))
# How long the signed image URLs of a share page work (the page is reopened after that).
HUB_SHARE_VIEWER_MINUTES: int = env.int("HUB_SHARE_VIEWER_MINUTES", 60, validate=Range(min=1))


# --- CORS: browser viewers (OHIF) on other origins may read DICOMweb, and nothing else ---
def _origins(name: str) -> list[str]:
    from urllib.parse import urlsplit

    origins: list[str] = env.list(name, [])
    for origin in origins:
        parts = urlsplit(origin)
        if (
            parts.scheme not in ("http", "https")
            or not parts.netloc
            or origin != (f"{parts.scheme}://{parts.netloc}")
        ):
            raise ImproperlyConfigured(
                f"{name}: {origin!r} is not an origin like https://viewer.example.org"
            )
    return origins


CORS_ALLOWED_ORIGINS: list[str] = _origins("CORS_ALLOWED_ORIGINS")
CORS_URLS_REGEX = r"^/dicomweb/.*$"
CORS_ALLOW_HEADERS = (
    "accept",
    "accept-encoding",
    "authorization",
    "content-type",
    "origin",
    "user-agent",
    "x-requested-with",
    "x-institution",
    "if-none-match",
    "range",
)
# What OHIF and dicomweb-client read from responses beyond the CORS-safelisted headers.
CORS_EXPOSE_HEADERS = [
    "Content-Location",
    "Content-Disposition",
    "Content-Length",
    "ETag",
    "Location",
    "Warning",
]

# The alliance-wide patient key is a keyed hash with its own key, so rotating SECRET_KEY
# never silently re-keys every patient.
PATIENT_KEY_SECRET: str = env.str("PATIENT_KEY_SECRET", "" if PRODUCTION else "dev-patient-key")

# Mail (invitations, password resets, referral notices). Production sends by SMTP; with no
# env at all (`make run`) each message is written as a file under DATA_DIR/mail, to be read
# there. Naming EMAIL_HOST outside production sends by SMTP too.
EMAIL_HOST: str = env.str("EMAIL_HOST", "localhost")
EMAIL_PORT: int = env.int("EMAIL_PORT", 25, validate=Range(min=1, max=65535))
EMAIL_HOST_USER: str = env.str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD: str = env.str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS: bool = env.bool("EMAIL_USE_TLS", False)  # STARTTLS (port 587)
EMAIL_USE_SSL: bool = env.bool("EMAIL_USE_SSL", False)  # TLS from the start (port 465)
if EMAIL_USE_TLS and EMAIL_USE_SSL:
    raise ImproperlyConfigured("EMAIL_USE_TLS and EMAIL_USE_SSL are exclusive: set one")
EMAIL_TIMEOUT: int = env.int("EMAIL_TIMEOUT", 30, validate=Range(min=1))
EMAIL_FILE_PATH: Path = env.path("EMAIL_FILE_PATH", DATA_DIR / "mail")
EMAIL_BACKEND: str = env.str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend"
    if PRODUCTION or "EMAIL_HOST" in os.environ
    else "django.core.mail.backends.filebased.EmailBackend",
)
DEFAULT_FROM_EMAIL: str = env.str("DEFAULT_FROM_EMAIL", "hub@localhost")
# How long an invitation's or a password reset's link works (Django's token, in seconds).
PASSWORD_RESET_TIMEOUT: int = env.int(
    "PASSWORD_RESET_TIMEOUT", 3 * 24 * 3600, validate=Range(min=600)
)
# Links in e-mails point here (no trailing slash).
HUB_PUBLIC_URL: str = env.str("HUB_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
# Referrals: how often beat sweeps deadlines, unopened claims and stuck routing.
HUB_REFERRAL_SWEEP_SECONDS: float = env.float("HUB_REFERRAL_SWEEP_SECONDS", 15.0)
# A referral still "requested" this long after creation is routed again by the sweep.
HUB_ROUTING_REDRIVE_SECONDS: float = env.float("HUB_ROUTING_REDRIVE_SECONDS", 30.0)
CELERY_BEAT_SCHEDULE["referrals-sweep"] = {
    "task": "referrals.tasks.referrals_sweep",
    "schedule": HUB_REFERRAL_SWEEP_SECONDS,
    "options": {"expires": HUB_REFERRAL_SWEEP_SECONDS * 2},
}
# Critical findings: each alliance's limits are on its AlliancePolicy; beat checks
# unacknowledged findings this often.
HUB_CRITICAL_SWEEP_SECONDS: float = env.float("HUB_CRITICAL_SWEEP_SECONDS", 30.0)
CELERY_BEAT_SCHEDULE["critical-findings-sweep"] = {
    "task": "reporting.tasks.critical_findings_sweep",
    "schedule": HUB_CRITICAL_SWEEP_SECONDS,
    "options": {"expires": HUB_CRITICAL_SWEEP_SECONDS * 2},
}

# The audit trail shipped off the box (tenants/audit_shipping.py): RFC 5424 syslog over TCP
# or TLS (tcp://host:port, tls://host:port) to the hospital's collector, DICOM audit
# messages inside; empty: kept on the box only. The trail is the spool: a sink that is down
# loses nothing, the next run replays from where it stopped.
AUDIT_SYSLOG_URL: str = env.str("AUDIT_SYSLOG_URL", "")
AUDIT_SYSLOG_CA_FILE: str = env.str("AUDIT_SYSLOG_CA_FILE", "")
AUDIT_SYSLOG_TIMEOUT: float = env.float("AUDIT_SYSLOG_TIMEOUT", 10.0, validate=Range(min=0.5))
# The structured-data SD-ID's private enterprise number (RFC 5424 7.2.2); 32473 is the
# number RFC 5612 reserves for documentation: a deployer with its own PEN sets it.
AUDIT_SYSLOG_ENTERPRISE_ID: str = env.str("AUDIT_SYSLOG_ENTERPRISE_ID", "32473")
AUDIT_SOURCE_ID: str = env.str("AUDIT_SOURCE_ID", "alliance-hub")
HUB_AUDIT_SHIP_SECONDS: float = env.float("HUB_AUDIT_SHIP_SECONDS", 10.0, validate=Range(min=1))
if AUDIT_SYSLOG_URL:
    CELERY_BEAT_SCHEDULE["audit-ship"] = {
        "task": "tenants.tasks.audit_ship_task",
        "schedule": HUB_AUDIT_SHIP_SECONDS,
        "options": {"expires": HUB_AUDIT_SHIP_SECONDS * 2},
    }

# Commission analytics: beat refreshes the rollups incrementally this often; a
# refresh re-reads this much before the last watermark (rows committed late); percentiles
# are exact up to this many signed reports in a selection; a scanner's studies per day.
HUB_ANALYTICS_REFRESH_SECONDS: float = env.float(
    "HUB_ANALYTICS_REFRESH_SECONDS", 300.0, validate=Range(min=5)
)
HUB_ANALYTICS_OVERLAP_SECONDS: int = env.int(
    "HUB_ANALYTICS_OVERLAP_SECONDS", 600, validate=Range(min=0)
)
HUB_ANALYTICS_CACHE_SECONDS: int = env.int(
    "HUB_ANALYTICS_CACHE_SECONDS", 86400, validate=Range(min=0)
)
HUB_ANALYTICS_WARM_LIMIT: int = env.int("HUB_ANALYTICS_WARM_LIMIT", 40, validate=Range(min=0))
HUB_ANALYTICS_WARM_HOURS: float = env.float("HUB_ANALYTICS_WARM_HOURS", 24.0, validate=Range(min=0))
HUB_ANALYTICS_EXACT_MAX: int = env.int("HUB_ANALYTICS_EXACT_MAX", 5000, validate=Range(min=0))
HUB_ANALYTICS_SCANNER_CAPACITY: dict[str, int] = env.dict(
    "HUB_ANALYTICS_SCANNER_CAPACITY",
    {"CT": 40, "MR": 20, "DX": 80, "CR": 80, "US": 40, "MG": 30, "*": 30},
    subcast_values=int,
)
CELERY_IMPORTS = ["alliance.analytics.tasks"]
CELERY_BEAT_SCHEDULE["analytics-refresh"] = {
    "task": "alliance.analytics.tasks.analytics_refresh_task",
    "schedule": HUB_ANALYTICS_REFRESH_SECONDS,
    "options": {"expires": HUB_ANALYTICS_REFRESH_SECONDS},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
