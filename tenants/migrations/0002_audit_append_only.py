"""Make the audit trail append-only in the database itself: UPDATE and DELETE are refused.

PostgreSQL gets a trigger function; SQLite (the embedded default) gets RAISE(ABORT)
triggers. TRUNCATE is a table-owner privilege: in production the hub's database role does
not own the table (see docs/operations.md).
"""

from django.db import migrations

PG_FORWARD = """
CREATE OR REPLACE FUNCTION tenants_auditevent_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER tenants_auditevent_append_only
    BEFORE UPDATE OR DELETE ON tenants_auditevent
    FOR EACH ROW EXECUTE FUNCTION tenants_auditevent_refuse_change();
"""
PG_BACKWARD = """
DROP TRIGGER IF EXISTS tenants_auditevent_append_only ON tenants_auditevent;
DROP FUNCTION IF EXISTS tenants_auditevent_refuse_change();
"""
SQLITE_FORWARD = [
    """CREATE TRIGGER tenants_auditevent_no_update BEFORE UPDATE ON tenants_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only: UPDATE refused'); END;""",
    """CREATE TRIGGER tenants_auditevent_no_delete BEFORE DELETE ON tenants_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only: DELETE refused'); END;""",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS tenants_auditevent_no_update;",
    "DROP TRIGGER IF EXISTS tenants_auditevent_no_delete;",
]


def forward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_FORWARD, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_FORWARD:
            schema_editor.execute(statement)
    else:
        raise RuntimeError(f"no append-only trigger for database vendor {vendor!r}")


def backward(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(PG_BACKWARD)
    elif vendor == "sqlite":
        for statement in SQLITE_BACKWARD:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [migrations.RunPython(forward, backward)]
