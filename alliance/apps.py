from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AllianceConfig(AppConfig):
    name = "alliance"
    verbose_name = _("Alliance")

    def ready(self) -> None:
        from . import access_rules
        from .frontend import checks  # noqa: F401  registers the front-end packages check

        access_rules.register()
