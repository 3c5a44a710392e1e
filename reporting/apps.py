from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReportingConfig(AppConfig):
    name = "reporting"
    verbose_name = _("Reporting")

    def ready(self) -> None:
        from alliance.signals import alliance_created

        from . import access_rules, messages, seed

        access_rules.register()
        messages.register()
        alliance_created.connect(
            seed.templates_for_new_alliance, dispatch_uid="reporting.starter_templates"
        )
