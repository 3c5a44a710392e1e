"""API of the referrals app: the upload check a browser makes before (re)sending files."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from alliance.parsers import HubJSONParser
from referrals.archive.dicom_checks import Refusal, uid_check
from referrals.archive.upload import UPLOAD_CHECK_MAX, UploadCandidate, upload_presence_list
from referrals.models import Instance
from tenants.roles import UPLOAD_ROLES
from tenants.serializers import StrictSerializer
from tenants.viewsets import ScopedGenericViewSet


class UploadCandidateSerializer(StrictSerializer):
    sop_instance_uid = serializers.CharField(max_length=64, trim_whitespace=False)
    sha256 = serializers.RegexField(
        r"^[0-9a-fA-F]{64}\Z",
        error_messages={"invalid": _("Not a SHA-256 digest (64 hexadecimal digits).")},
    )
    dataset_sha256 = serializers.RegexField(
        r"^[0-9a-fA-F]{64}\Z",
        required=False,
        default="",
        help_text="SHA-256 of the bytes after the file meta group (the data set): a copy "
        "with other file meta is then recognised as stored.",
        error_messages={"invalid": _("Not a SHA-256 digest (64 hexadecimal digits).")},
    )

    def validate_sop_instance_uid(self, value: str) -> str:
        try:
            return uid_check(value, "SOP Instance UID")
        except Refusal:
            raise serializers.ValidationError(
                _("Not a DICOM UID (digits and dots, at most 64 characters).")
            ) from None


class UploadCheckSerializer(StrictSerializer):
    instances = serializers.ListField(
        child=UploadCandidateSerializer(),
        allow_empty=False,
        max_length=UPLOAD_CHECK_MAX,
        # DRF fills in {max_length} when it raises, in the caller's language.
        error_messages={"max_length": _("Ask about at most {max_length} files at once.")},
    )


class UploadPresenceSerializer(serializers.Serializer):
    sop_instance_uid = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["stored", "held", "conflict", "missing"],
        help_text="stored: the hub holds this file or its data set; held: the hub keeps it "
        "aside for review (its patient contradicts its study; do not send it again); "
        "conflict: it holds another data set under this UID (sending would be refused); "
        "missing: send it.",
    )


class UploadCheckResultSerializer(serializers.Serializer):
    instances = UploadPresenceSerializer(many=True)


class UploadViewSet(ScopedGenericViewSet):
    """Browser upload support for the active institution's senders."""

    queryset = Instance.objects.all()
    serializer_class = UploadCheckSerializer
    parser_classes = [HubJSONParser]
    write_roles = UPLOAD_ROLES

    @extend_schema(request=UploadCheckSerializer, responses=UploadCheckResultSerializer)
    @action(detail=False, methods=["post"])
    def check(self, request: Request) -> Response:
        """Which of these instances (SOP Instance UID + SHA-256 of the file) the active
        institution already holds, so a resumed upload sends only what is missing."""
        form = UploadCheckSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        candidates = [
            UploadCandidate(i["sop_instance_uid"], i["sha256"], i.get("dataset_sha256", ""))
            for i in form.validated_data["instances"]
        ]
        answers = upload_presence_list(scope=self.scope, candidates=candidates)
        return Response(
            {
                "instances": [
                    {"sop_instance_uid": a.sop_instance_uid, "status": a.status} for a in answers
                ]
            }
        )
