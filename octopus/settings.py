"""Octopus settings, read from the environment with safe development defaults.

Production sets DEBUG=0 and a real SECRET_KEY; ``manage.py check --deploy`` is then clean.
When DATABASE_URL / REDIS_URL are unset, real PostgreSQL and Redis are started from wheels
(apps/core/embedded.py) and shared by every process of this checkout.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEV_SECRET_KEY = "dev-insecure-octopus-key-do-not-use-in-production-0123456789abcdef"

DEBUG = env_bool("DEBUG", True)
TESTING = "pytest" in sys.modules or os.environ.get("OCTOPUS_TESTING") == "1"
SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY if DEBUG else "")
if not DEBUG and (not SECRET_KEY or SECRET_KEY == DEV_SECRET_KEY or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured("SECRET_KEY must be set to a random value of 50+ characters when DEBUG=0.")

# Keys encrypting secret fields at rest (apps.core.crypto: a firm's Alpaca keys): comma-separated
# Fernet keys, the first encrypts, all decrypt (rotation). Unset with DEBUG=1: derived from SECRET_KEY.
OCTOPUS_FIELD_KEYS = env_list("OCTOPUS_FIELD_KEYS", "")
if not DEBUG:
    if not OCTOPUS_FIELD_KEYS:
        raise ImproperlyConfigured("OCTOPUS_FIELD_KEYS must be set when DEBUG=0 (comma-separated Fernet keys).")
    from apps.core.crypto import parse_keys

    parse_keys(OCTOPUS_FIELD_KEYS)  # a malformed key stops the start, naming its position

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "apps.core.admin_apps.OctopusAdminConfig",  # django.contrib.admin with the 2FA, firm-scoped site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "guardian",
    "axes",
    "apps.core",
    "apps.accounts",
    "apps.audit",
    "apps.marketdata",
    "apps.portfolios",
    "apps.orders",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.middleware.ServiceUnavailableMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "apps.core.middleware.FirmMiddleware",
    "apps.accounts.middleware.TwoFactorEnforcementMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "octopus.urls"
WSGI_APPLICATION = "octopus.wsgi.application"
ASGI_APPLICATION = "octopus.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.core.context_processors.firm",
            ],
        },
    },
]

# --- data stores --------------------------------------------------------------------------------

# `manage.py services ...` controls the embedded services itself, so importing settings must not
# start them (else `services stop` would be undone by its own import); OCTOPUS_EMBEDDED_AUTOSTART=0
# does the same for any other command. The recorded (possibly stopped) addresses are used then.
EMBEDDED_AUTOSTART = env_bool("OCTOPUS_EMBEDDED_AUTOSTART", sys.argv[1:2] != ["services"])


def _embedded_url(name: str) -> str:
    from apps.core import embedded

    if EMBEDDED_AUTOSTART:
        return embedded.ensure_postgres() if name == "postgres" else embedded.ensure_redis()
    recorded = {s.name: s.url for s in embedded.status()}.get(name)
    return recorded or ("postgres://postgres@127.0.0.1:1/octopus" if name == "postgres" else "redis://127.0.0.1:1")


# Production (DEBUG=0) never falls back to the embedded services and refuses placeholder passwords
# in the database / broker URLs (reliability target 41).
PLACEHOLDER_PASSWORDS = {"changeme", "change-me", "password", "secret", "postgres", "redis", "octopus", "default"}
if not DEBUG:
    for _var in ("DATABASE_URL", "REDIS_URL"):
        if not os.environ.get(_var):
            raise ImproperlyConfigured(f"{_var} must be set when DEBUG=0 (production never uses the embedded services).")
        if (urlsplit(os.environ[_var]).password or "").lower() in PLACEHOLDER_PASSWORDS:
            raise ImproperlyConfigured(f"{_var} uses a default password; set a real secret when DEBUG=0.")

DATABASE_URL = os.environ.get("DATABASE_URL") or _embedded_url("postgres")
REDIS_URL = os.environ.get("REDIS_URL") or _embedded_url("redis")

DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=600, conn_health_checks=True)}
DATABASES["default"]["OPTIONS"] = {"connect_timeout": 5}
DATABASES["default"]["TEST"] = {"NAME": os.environ.get("TEST_DATABASE_NAME", "test_octopus")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"{REDIS_URL}/1",
        "KEY_PREFIX": "octopus-test" if TESTING else "octopus",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "apps.core.events.OctopusChannelLayer",  # channels_redis, overflow counted
        "CONFIG": {
            "hosts": [{"address": f"{REDIS_URL}/2", "socket_connect_timeout": 2}],
            # Deliberate: a firm's event stream may burst (a cancel-all, a fill storm); a client
            # that falls this far behind resyncs from REST using the sequence numbers. Overflow
            # is counted and logged by apps.core.events, never silent.
            "capacity": int(os.environ.get("CHANNEL_CAPACITY", "1000")),
            "expiry": 60,
            # Per xdist worker in tests: firm ids (and so group names) repeat across worker databases.
            "prefix": f"octopus-test{os.environ.get('PYTEST_XDIST_WORKER', '')}:" if TESTING else "octopus:",
        },
    }
}

# --- auth, sessions, 2FA -----------------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.Argon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]
if TESTING:
    PASSWORD_HASHERS = ["apps.accounts.hashers.FastArgon2PasswordHasher", *PASSWORD_HASHERS]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_COOKIE_AGE", str(12 * 3600)))
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # pages and htmx read the token from <meta name="csrf-token">
SESSION_ENGINE = "django.contrib.sessions.backends.db"

OTP_TOTP_ISSUER = "Octopus"
OTP_TOTP_THROTTLE_FACTOR = 1  # seconds, doubled after each consecutive failure
OTP_STATIC_THROTTLE_FACTOR = 1
OTP_MAX_FAILURES = int(os.environ.get("OTP_MAX_FAILURES", "10"))  # then a fresh password login

AXES_FAILURE_LIMIT = int(os.environ.get("AXES_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = float(os.environ.get("AXES_COOLOFF_MINUTES", "15")) / 60  # hours
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks
AXES_USERNAME_FORM_FIELD = "username"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "apps.accounts.views.lockout_response"
AXES_ENABLE_ACCESS_FAILURE_LOG = False
AXES_VERBOSE = False

GUARDIAN_RAISE_403 = False
ANONYMOUS_USER_NAME = None

INVITATION_MAX_AGE_DAYS = int(os.environ.get("INVITATION_MAX_AGE_DAYS", "7"))

# --- email --------------------------------------------------------------------------------------

EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Octopus <noreply@octopus.local>")

# --- i18n, static -------------------------------------------------------------------------------

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "var" / "staticfiles"
WHITENOISE_USE_FINDERS = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- security headers ---------------------------------------------------------------------------

X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'", "ws:", "wss:"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
    }
}

# --- REST API -----------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.accounts.authentication.BearerTokenAuthentication",
        "apps.accounts.authentication.VerifiedSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.core.permissions.IsFirmMember"],
    "DEFAULT_PAGINATION_CLASS": "apps.core.pagination.StandardPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.errors.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["apps.core.throttling.PrincipalRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "principal": os.environ.get("API_RATE", "1200/min"),
        "otp": "10/min",
        "login": "20/min",
    },
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Octopus API",
    "DESCRIPTION": "Multi-tenant trading platform. Authenticate with `Authorization: Bearer <token>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # securitySchemes (bearerAuth, cookieAuth) come from the authentication extensions in apps/accounts/api.py
}

# --- Celery -------------------------------------------------------------------------------------

CELERY_BROKER_URL = f"{REDIS_URL}/3" if not TESTING else f"{REDIS_URL}/4"
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- logging ------------------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}
