import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("referrals", "0008_patient_identity"),
        ("tenants", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="ExamRegistration",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("patient_id", models.CharField(max_length=64, verbose_name="patient ID")),
                (
                    "issuer",
                    models.CharField(
                        blank=True, max_length=64, verbose_name="issuer of patient ID"
                    ),
                ),
                ("patient_name", models.CharField(max_length=324, verbose_name="patient name")),
                ("birth_date", models.DateField(blank=True, null=True, verbose_name="birth date")),
                ("sex", models.CharField(blank=True, max_length=1, verbose_name="sex")),
                (
                    "accession_number",
                    models.CharField(max_length=16, verbose_name="accession number"),
                ),
                (
                    "study_uid",
                    models.CharField(max_length=64, unique=True, verbose_name="Study Instance UID"),
                ),
                ("modality", models.CharField(max_length=16, verbose_name="modality")),
                (
                    "body_part",
                    models.CharField(blank=True, max_length=64, verbose_name="body part"),
                ),
                (
                    "procedure_description",
                    models.CharField(max_length=64, verbose_name="requested procedure"),
                ),
                (
                    "requesting_physician",
                    models.CharField(blank=True, max_length=324, verbose_name="requesting doctor"),
                ),
                (
                    "clinical_question",
                    models.TextField(blank=True, verbose_name="clinical question"),
                ),
                ("scheduled_at", models.DateTimeField(verbose_name="scheduled for")),
                (
                    "station_ae_title",
                    models.CharField(blank=True, max_length=16, verbose_name="scanner AE title"),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("scheduled", "Scheduled"),
                            ("in_progress", "In progress"),
                            ("completed", "Completed"),
                            ("cancelled", "Cancelled"),
                        ],
                        default="scheduled",
                        max_length=16,
                        verbose_name="status",
                    ),
                ),
                ("matched_at", models.DateTimeField(blank=True, null=True)),
                ("matched_by", models.CharField(blank=True, max_length=16)),
                ("patient_id_mismatch", models.BooleanField(default=False)),
                ("study_patient_id", models.CharField(blank=True, max_length=64)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("cancelled_at", models.DateTimeField(blank=True, null=True)),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
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
            ],
            options={
                "verbose_name": "exam registration",
                "verbose_name_plural": "exam registrations",
                "indexes": [
                    models.Index(
                        fields=["institution", "status", "scheduled_at"], name="registration_day"
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("institution", "accession_number"),
                        name="one_registration_per_accession_per_site",
                    )
                ],
            },
        ),
    ]
