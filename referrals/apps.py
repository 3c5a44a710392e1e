from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReferralsConfig(AppConfig):
    name = "referrals"
    verbose_name = _("Referrals and studies")

    def ready(self) -> None:
        from referrals import access_rules, messages

        access_rules.register()
        messages.register()
