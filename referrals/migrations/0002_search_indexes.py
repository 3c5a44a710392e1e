"""PostgreSQL indexes for QIDO's wildcard matching and the stability sweep.

- varchar_pattern_ops b-trees serve prefix LIKE ("WANG*") whatever the collation;
- a pg_trgm GIN index serves infix matches ("*XIAOMING*", an ideographic component),
  which OHIF sends for every typed name;
- a partial index finds the few studies still waiting to become stable.
SQLite (the embedded default) keeps the plain indexes of 0001.
"""

from django.db import migrations

PG_FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS study_site_pname_prefix ON referrals_study "
    "(institution_id, patient_name_search varchar_pattern_ops)",
    "CREATE INDEX IF NOT EXISTS study_site_pid_prefix ON referrals_study "
    "(institution_id, pid varchar_pattern_ops)",
    "CREATE INDEX IF NOT EXISTS study_site_acc_prefix ON referrals_study "
    "(institution_id, accession_number varchar_pattern_ops)",
    "CREATE INDEX IF NOT EXISTS study_pname_trgm ON referrals_study "
    "USING gin (patient_name_search gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS study_waiting_stable ON referrals_study (last_received_at) "
    "WHERE stable_at IS NULL",
]
PG_BACKWARD = [
    "DROP INDEX IF EXISTS study_site_pname_prefix",
    "DROP INDEX IF EXISTS study_site_pid_prefix",
    "DROP INDEX IF EXISTS study_site_acc_prefix",
    "DROP INDEX IF EXISTS study_pname_trgm",
    "DROP INDEX IF EXISTS study_waiting_stable",
]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in PG_FORWARD:
            schema_editor.execute(statement)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in PG_BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("referrals", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
