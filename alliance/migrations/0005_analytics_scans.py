"""Indexes for the analytics refresh's range scans.

An incremental refresh reads the referrals requested on the touched days (`requested_at`),
finds what changed since its watermark (`updated_at`, second reads' `at`, critical findings
flagged or acknowledged) and reads the studies of a range of study days (`study_date`, or
`received_at` for the undated ones). Without these every run scanned whole tables. They
are on other apps' tables, so they are plain SQL (no model state changes).

The rollups' own foreign keys lose their database constraints: their rows are derived, and
the deferred checks on a full refresh's ~900,000 rows made its commit take minutes.
"""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = [
    ("analytics_referral_requested", "referrals_referral (requested_at)", ""),
    ("analytics_referral_updated", "referrals_referral (updated_at)", ""),
    ("analytics_study_date", "referrals_study (study_date)", ""),
    ("analytics_study_undated", "referrals_study (received_at)", "WHERE study_date IS NULL"),
    ("analytics_secondread_at", "reporting_secondread (at)", ""),
    ("analytics_critical_flagged", "reporting_criticalfinding (flagged_at)", ""),
    ("analytics_critical_acked", "reporting_criticalfinding (acknowledged_at)",
     "WHERE acknowledged_at IS NOT NULL"),
]


def _place(to: str, null: bool = False) -> models.ForeignKey:
    return models.ForeignKey(db_constraint=False, null=null,
                             on_delete=django.db.models.deletion.CASCADE, related_name='+',
                             to=to)


class Migration(migrations.Migration):

    dependencies = [
        ('alliance', '0004_analytics'),
        ('referrals', '0003_routing'),
        ('reporting', '0003_critical'),
        ('tenants', '0002_audit_append_only'),
    ]

    operations = [
        *[migrations.RunSQL(f"CREATE INDEX IF NOT EXISTS {name} ON {target} {where}",
                            f"DROP INDEX IF EXISTS {name}")
          for name, target, where in INDEXES],
        migrations.AlterField('readingrollup', 'alliance', _place('alliance.alliance')),
        migrations.AlterField('readingrollup', 'reader', _place('tenants.institution', True)),
        migrations.AlterField('readingrollup', 'site', _place('tenants.institution')),
        migrations.AlterField('studyrollup', 'alliance', _place('alliance.alliance')),
        migrations.AlterField('studyrollup', 'site', _place('tenants.institution')),
    ]
