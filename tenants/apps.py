from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = _("Institutions and users")

    def ready(self) -> None:
        from . import openapi, signals  # noqa: F401  (schema auth names; login/logout audit)
