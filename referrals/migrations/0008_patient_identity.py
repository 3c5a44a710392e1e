"""The master patient index: own keys, resident ID keys, links and issuers of patient IDs."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("alliance", "0007_rostershift_series"),
        ("referrals", "0007_correction"),
        ("tenants", "0006_connected_system"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="patient",
            name="identity_changed_at",
            field=models.DateTimeField(blank=True, db_index=True, null=True),
        ),
        migrations.AddField(
            model_name="patient",
            name="name_match",
            field=models.CharField(blank=True, default="", db_default="", db_index=True, max_length=200),
        ),
        migrations.AddField(
            model_name="patient",
            name="own_key",
            field=models.CharField(blank=True, default="", db_default="", db_index=True, max_length=64),
        ),
        migrations.AddField(
            model_name="patient",
            name="resident_id_masked",
            field=models.CharField(blank=True, default="", db_default="", max_length=24),
        ),
        migrations.AddField(
            model_name="patient",
            name="resident_key",
            field=models.CharField(blank=True, default="", db_default="", db_index=True, max_length=64),
        ),
        migrations.CreateModel(
            name="PatientLink",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "method",
                    models.CharField(
                        choices=[
                            ("resident_id", "Same resident identity number"),
                            ("demographics", "Similar demographics"),
                            ("manual", "Linked by a person"),
                        ],
                        max_length=16,
                        verbose_name="method",
                    ),
                ),
                ("score", models.FloatField(blank=True, null=True, verbose_name="score")),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("linked", "Linked"),
                            ("proposed", "Waiting for review"),
                            ("rejected", "Not the same person"),
                            ("unlinked", "Unlinked"),
                        ],
                        max_length=16,
                        verbose_name="status",
                    ),
                ),
                ("features", models.JSONField(blank=True, default=dict)),
                ("reason", models.CharField(blank=True, max_length=300, verbose_name="reason")),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "alliance",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="alliance.alliance",
                    ),
                ),
                (
                    "decided_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "patient_a",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="referrals.patient",
                    ),
                ),
                (
                    "patient_b",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="referrals.patient",
                    ),
                ),
            ],
            options={
                "verbose_name": "patient link",
                "verbose_name_plural": "patient links",
            },
        ),
        migrations.CreateModel(
            name="PatientLinkEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("linked", "Linked"),
                            ("proposed", "Waiting for review"),
                            ("rejected", "Not the same person"),
                            ("unlinked", "Unlinked"),
                        ],
                        max_length=16,
                    ),
                ),
                ("previous_status", models.CharField(blank=True, max_length=16)),
                (
                    "method",
                    models.CharField(
                        choices=[
                            ("resident_id", "Same resident identity number"),
                            ("demographics", "Similar demographics"),
                            ("manual", "Linked by a person"),
                        ],
                        max_length=16,
                    ),
                ),
                ("score", models.FloatField(blank=True, null=True)),
                ("reason", models.CharField(blank=True, max_length=300)),
                ("at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "link",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="events",
                        to="referrals.patientlink",
                    ),
                ),
            ],
            options={
                "verbose_name": "patient link event",
                "verbose_name_plural": "patient link events",
                "ordering": ["at", "pk"],
            },
        ),
        migrations.CreateModel(
            name="PatientIdDomain",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("issuer", models.CharField(max_length=64, verbose_name="issuer of patient IDs")),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "gateway",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="tenants.gatewaycredential",
                    ),
                ),
                (
                    "institution",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="tenants.institution",
                    ),
                ),
                (
                    "updated_by",
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
                "verbose_name": "patient ID issuer",
                "verbose_name_plural": "patient ID issuers",
                "constraints": [
                    models.UniqueConstraint(
                        condition=models.Q(("gateway__isnull", True)),
                        fields=("institution",),
                        name="one_issuer_per_site",
                    ),
                    models.UniqueConstraint(
                        condition=models.Q(("gateway__isnull", False)),
                        fields=("gateway",),
                        name="one_issuer_per_gateway",
                    ),
                ],
            },
        ),
        migrations.AddIndex(
            model_name="patientlink",
            index=models.Index(fields=["alliance", "status"], name="patient_link_status"),
        ),
        migrations.AddConstraint(
            model_name="patientlink",
            constraint=models.UniqueConstraint(
                fields=("alliance", "patient_a", "patient_b"), name="one_link_per_pair"
            ),
        ),
        migrations.AddConstraint(
            model_name="patientlink",
            constraint=models.CheckConstraint(
                condition=models.Q(("patient_a__lt", models.F("patient_b"))),
                name="link_pair_ordered",
            ),
        ),
        migrations.AddIndex(
            model_name="patient",
            index=models.Index(fields=["birth_date"], name="patient_birth_date"),
        ),
        # Every record so far is its own person: its own key is the key it already carries.
        migrations.RunSQL(
            "UPDATE referrals_patient SET own_key = patient_key WHERE own_key = ''",
            migrations.RunSQL.noop,
        ),
    ]
