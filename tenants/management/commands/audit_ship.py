"""manage.py audit_ship: send the audit trail's new rows to the syslog sink now (beat does it
every HUB_AUDIT_SHIP_SECONDS when AUDIT_SYSLOG_URL is set); exit 1 if the sink is down."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from tenants.audit_shipping import AuditSinkError, audit_ship


class Command(BaseCommand):
    help = "Ship the audit trail's new rows to the RFC 5424 syslog sink (AUDIT_SYSLOG_URL)."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.AUDIT_SYSLOG_URL:
            raise CommandError("AUDIT_SYSLOG_URL is not set: the trail is kept on this box only")
        try:
            result = audit_ship()
        except AuditSinkError as error:
            raise CommandError(f"{error}; the rows wait in the trail for the next run") from error
        if not result.anchor_ok:
            self.stderr.write("the newest rows shipped before are gone or changed: alert raised")
        self.stdout.write(f"shipped {result.sent} audit events; sink has up to id {result.last_id}")
