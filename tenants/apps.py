from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = _("Institutions and users")

    def ready(self) -> None:
        # Schema auth names; login/logout audit; the foundation's message codes.
        from . import messages, openapi, signals  # noqa: F401
