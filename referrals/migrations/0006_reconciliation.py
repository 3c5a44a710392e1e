"""The reconciliation queue (held instances) and the data set digest of each instance.

`Instance.dataset_sha256` is left blank on existing rows: the ingest computes it from the
stored object the first time such a row meets a resend, so the migration reads no objects.
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("referrals", "0005_study_stable_hooks_pending"),
        ("tenants", "0002_audit_append_only"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="instance",
            name="dataset_sha256",
            field=models.CharField(blank=True, default="", db_default="", max_length=64),
        ),
        migrations.CreateModel(
            name="HeldInstance",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("patient", "Patient differs from the study's"),
                            ("patient_record", "Patient differs from the record under its ID"),
                            ("series", "Series already held under another study"),
                            ("conflict", "Different data set under a stored SOP Instance UID"),
                        ],
                        max_length=16,
                    ),
                ),
                ("sop_uid", models.CharField(max_length=64, verbose_name="SOP Instance UID")),
                ("sop_class_uid", models.CharField(max_length=64)),
                ("study_uid", models.CharField(max_length=64, verbose_name="Study Instance UID")),
                (
                    "series_uid",
                    models.CharField(max_length=64, verbose_name="Series Instance UID"),
                ),
                ("transfer_syntax_uid", models.CharField(blank=True, max_length=64)),
                (
                    "patient_id",
                    models.CharField(blank=True, max_length=64, verbose_name="patient ID"),
                ),
                (
                    "issuer",
                    models.CharField(
                        blank=True, max_length=64, verbose_name="issuer of patient ID"
                    ),
                ),
                ("patient_name", models.CharField(blank=True, max_length=324, verbose_name="name")),
                (
                    "birth_date",
                    models.CharField(blank=True, max_length=16, verbose_name="birth date"),
                ),
                ("sex", models.CharField(blank=True, max_length=16, verbose_name="sex")),
                ("differences", models.JSONField(blank=True, default=list)),
                ("received_via", models.CharField(max_length=16)),
                (
                    "object_id",
                    models.UUIDField(blank=True, editable=False, null=True, unique=True),
                ),
                ("size_bytes", models.BigIntegerField(default=0)),
                ("sha256", models.CharField(blank=True, max_length=64)),
                ("dataset_sha256", models.CharField(blank=True, max_length=64)),
                ("metadata", models.JSONField(blank=True, default=dict)),
                (
                    "created_at",
                    models.DateTimeField(db_index=True, default=django.utils.timezone.now),
                ),
                ("resent", models.PositiveIntegerField(default=0)),
                ("resolved_at", models.DateTimeField(blank=True, null=True)),
                (
                    "decision",
                    models.CharField(
                        blank=True,
                        choices=[
                            ("accepted", "Accepted into the study"),
                            ("new_study", "Filed as a new study"),
                            ("new_patient", "Filed as a new patient"),
                            ("rejected", "Rejected"),
                            ("refused", "Refused at arrival"),
                        ],
                        max_length=16,
                    ),
                ),
                ("new_study_uid", models.CharField(blank=True, max_length=64)),
                (
                    "institution",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="tenants.institution",
                    ),
                ),
                (
                    "study",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="referrals.study",
                    ),
                ),
                (
                    "instance",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="referrals.instance",
                    ),
                ),
                (
                    "resolved_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "verbose_name": "held instance",
                "verbose_name_plural": "held instances",
                "indexes": [
                    models.Index(
                        fields=["institution", "resolved_at", "created_at"], name="held_queue"
                    ),
                    models.Index(fields=["institution", "sop_uid"], name="held_site_uid"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("resolved_at__isnull", True)),
                        fields=("institution", "sop_uid"),
                        name="one_open_hold_per_uid_per_site",
                    )
                ],
            },
        ),
    ]
