"""The reporting app's message codes: second reads, addenda and critical findings, put
into words when read, in the reader's language (tenants/messages.py)."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _

from tenants.messages import MessageTemplate, register_messages

MESSAGES = {
    "report.second_read": MessageTemplate(
        _("A preliminary report waits for your second read"),
        _("%(author)s · %(study)s · from %(site)s"),
    ),
    "report.addendum": MessageTemplate(_("An addendum was added to a report"), "%(text)s"),
    "report.critical.clinic": MessageTemplate(_("Critical finding: acknowledge it"), "%(text)s"),
    "report.critical.lead": MessageTemplate(
        _("Critical finding not acknowledged by the clinic: please act"), "%(text)s"
    ),
    "report.critical.duty": MessageTemplate(
        _("Critical finding not acknowledged: escalated to you as duty officer"), "%(text)s"
    ),
}


def register() -> None:
    register_messages(MESSAGES)
