"""Every alliance that has no report template gets the starter ones (installs made before the
demo and the admin seeded them: "Start the report" found none)."""

from django.db import migrations


def seed(apps, schema_editor):
    from reporting.schema import fields_check
    from reporting.seed import STARTERS

    alliance_model = apps.get_model("alliance", "Alliance")
    template_model = apps.get_model("reporting", "ReportTemplate")
    for alliance in alliance_model.objects.all():
        if template_model.objects.filter(alliance=alliance).exists():
            continue
        for starter in STARTERS:
            template_model.objects.create(
                alliance=alliance, version=1,
                **{**starter, "fields": fields_check({"fields": starter["fields"]})})


class Migration(migrations.Migration):
    dependencies = [("reporting", "0003_critical"), ("alliance", "0006_refresh_changed_at")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
