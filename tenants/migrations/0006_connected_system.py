import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tenants", "0005_oidc_identity")]

    operations = [
        migrations.CreateModel(
            name="ConnectedSystem",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100, verbose_name="name")),
                (
                    "kind",
                    models.CharField(
                        choices=[("pacs", "PACS"), ("viewer", "Viewer"), ("other", "Other system")],
                        default="pacs",
                        max_length=16,
                        verbose_name="kind",
                    ),
                ),
                (
                    "key_id",
                    models.CharField(
                        editable=False, max_length=40, unique=True, verbose_name="key id"
                    ),
                ),
                ("secret_hash", models.CharField(editable=False, max_length=256)),
                (
                    "may_store",
                    models.BooleanField(default=False, verbose_name="may store images (STOW-RS)"),
                ),
                (
                    "expires_at",
                    models.DateTimeField(blank=True, null=True, verbose_name="expires at"),
                ),
                (
                    "created_at",
                    models.DateTimeField(
                        default=django.utils.timezone.now, verbose_name="created at"
                    ),
                ),
                (
                    "last_used_at",
                    models.DateTimeField(blank=True, null=True, verbose_name="last used at"),
                ),
                (
                    "revoked_at",
                    models.DateTimeField(blank=True, null=True, verbose_name="revoked at"),
                ),
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
                        related_name="connected_systems",
                        to="tenants.institution",
                    ),
                ),
                (
                    "revoked_by",
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
                "verbose_name": "connected system",
                "verbose_name_plural": "connected systems",
                "ordering": ["-created_at"],
            },
        ),
    ]
