# Routing explanations and the hub's timeline notes as codes with parameters. Rows from
# before keep their words (routing_explanation, reason) and show them as they are: free
# text in one language cannot be turned back into codes safely.

import django.db.models.fields.json
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("referrals", "0003_routing"),
    ]

    operations = [
        migrations.AddField(
            model_name="referral",
            name="routing_steps",
            field=models.JSONField(
                blank=True,
                db_default=models.Value([], output_field=django.db.models.fields.json.JSONField()),
                default=list,
            ),
        ),
        migrations.AddField(
            model_name="referralevent",
            name="reason_steps",
            field=models.JSONField(
                blank=True,
                db_default=models.Value([], output_field=django.db.models.fields.json.JSONField()),
                default=list,
            ),
        ),
    ]
