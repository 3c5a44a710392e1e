from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsultationsConfig(AppConfig):
    name = "consultations"
    verbose_name = _("MDT consultations")

    def ready(self) -> None:
        from . import access_rules, messages

        access_rules.register()
        messages.register()
