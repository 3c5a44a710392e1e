"""The imaging index: patients, studies, series and instances held by the hub.

Every row belongs to the institution that sent it (the tenant). The DICOM hierarchy is
keyed by its UIDs *within* an institution: two sites may each hold a copy of one study.
The pixel data lives in object storage under a key made only from `Instance.object_id`.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from tenants.models import Institution


class Patient(models.Model):
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    patient_id = models.CharField(_("patient ID"), max_length=64)
    issuer = models.CharField(_("issuer of patient ID"), max_length=64, blank=True)
    name = models.CharField(_("name"), max_length=324, blank=True)
    birth_date = models.DateField(_("birth date"), null=True, blank=True)
    sex = models.CharField(_("sex"), max_length=16, blank=True)
    # Keyed hash of (issuer, ID): links one person's studies across the alliance without
    # showing the ID itself (see referrals/patient_key.py).
    patient_key = models.CharField(max_length=64, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        constraints = [
            models.UniqueConstraint(fields=["institution", "issuer", "patient_id"],
                                    name="one_patient_per_id_per_site")
        ]

    def __str__(self) -> str:
        return f"{self.patient_id} {self.name}"


class Study(models.Model):
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_uid = models.CharField(_("Study Instance UID"), max_length=64)
    study_date = models.DateField(_("study date"), null=True, blank=True)
    study_time = models.CharField(max_length=16, blank=True)
    accession_number = models.CharField(_("accession number"), max_length=16, blank=True)
    study_id = models.CharField(max_length=16, blank=True)
    description = models.CharField(_("description"), max_length=64, blank=True)
    referring_physician_name = models.CharField(max_length=324, blank=True)
    # Copies of the patient's attributes, so QIDO's study search is one indexed table.
    patient_name = models.CharField(max_length=324, blank=True)
    patient_name_search = models.CharField(max_length=324, blank=True)
    pid = models.CharField(_("patient ID"), max_length=64, blank=True)
    patient_key = models.CharField(max_length=64, db_index=True)
    modalities = models.CharField(_("modalities"), max_length=64, blank=True)  # "CT\\SR"
    body_parts = models.CharField(max_length=128, blank=True)
    num_series = models.PositiveIntegerField(default=0)
    num_instances = models.PositiveIntegerField(default=0)
    size_bytes = models.BigIntegerField(default=0)
    received_at = models.DateTimeField(default=timezone.now)
    last_received_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Set once no instance has arrived for the quiet period; routing hooks onto it.
    stable_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        verbose_name = _("study")
        verbose_name_plural = _("studies")
        constraints = [
            models.UniqueConstraint(fields=["institution", "study_uid"],
                                    name="one_study_per_uid_per_site")
        ]
        indexes = [
            models.Index(fields=["institution", "-study_date", "-id"], name="study_site_date"),
            models.Index(fields=["institution", "pid"], name="study_site_pid"),
            models.Index(fields=["institution", "accession_number"], name="study_site_acc"),
            models.Index(fields=["institution", "patient_name_search"], name="study_site_pname"),
            models.Index(fields=["study_uid"], name="study_uid"),
        ]

    def __str__(self) -> str:
        return self.study_uid

    @property
    def study_time_display(self) -> str:
        """DICOM TM ("093000.123") as a person reads it ("09:30:00")."""
        digits = self.study_time.split(".")[0]
        if len(digits) >= 4 and digits.isdigit():
            parts = [digits[i:i + 2] for i in range(0, min(len(digits), 6), 2)]
            return ":".join(parts)
        return self.study_time


class Series(models.Model):
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="series")
    series_uid = models.CharField(_("Series Instance UID"), max_length=64)
    modality = models.CharField(_("modality"), max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    description = models.CharField(max_length=64, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    performed_at = models.DateTimeField(null=True, blank=True)
    num_instances = models.PositiveIntegerField(default=0)
    thumbnail_key = models.CharField(max_length=200, blank=True)

    class Meta:
        verbose_name = _("series")
        verbose_name_plural = _("series")
        constraints = [
            models.UniqueConstraint(fields=["study", "series_uid"],
                                    name="one_series_per_uid_per_study")
        ]
        indexes = [models.Index(fields=["institution", "series_uid"], name="series_site_uid")]

    def __str__(self) -> str:
        return self.series_uid


class Instance(models.Model):
    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="+")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="instances")
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="instances")
    sop_uid = models.CharField(_("SOP Instance UID"), max_length=64)
    sop_class_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(null=True, blank=True)
    transfer_syntax_uid = models.CharField(max_length=64)
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    number_of_frames = models.PositiveIntegerField(default=1)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64)
    # The object key is made from this server-generated id only, never from DICOM fields.
    object_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The instance's DICOM JSON (PS3.18 F.2) without bulk data: serves /metadata fast.
    metadata = models.JSONField(default=dict)
    received_via = models.CharField(max_length=16)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("instance")
        verbose_name_plural = _("instances")
        constraints = [
            models.UniqueConstraint(fields=["institution", "sop_uid"],
                                    name="one_instance_per_uid_per_site")
        ]
        indexes = [models.Index(fields=["series", "instance_number"], name="instance_order")]

    def __str__(self) -> str:
        return self.sop_uid

    @property
    def object_key(self) -> str:
        return instance_object_key(self.object_id)


def instance_object_key(object_id: uuid.UUID) -> str:
    hexid = object_id.hex
    return f"instances/{hexid[:2]}/{hexid[2:4]}/{hexid}.dcm"
