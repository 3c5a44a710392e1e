"""API of referrals and reading worklists: request, claim, open, release, return, timeline.

Thin views over referrals/workflow/services.py (writes) and referrals/worklists/selectors.py
(reads).
A refusal of the referral side (ReferralError and its subclasses) answers its own status
with {"detail", "code"}; "no such referral" answers 404 alike for missing and not-yours.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_serializer,
)
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from referrals.models import (
    Priority,
    Referral,
    ReferralEvent,
    ReferralKind,
    ReferralStatus,
    ReturnReason,
    Study,
)
from referrals.workflow import services
from referrals.workflow.states import ACTION_LABELS, allowed_actions
from referrals.worklists import selectors as worklist_selectors
from tenants import access, roles
from tenants.api_reads import AuditedReadsViewSet
from tenants.errors import ErrorSerializer
from tenants.models import bilingual
from tenants.serializers import StrictSerializer, takes_no_body

REFERRAL_WRITE_ROLES = roles.REQUEST_ROLES | roles.READER_ROLES


ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Refused: see code."),
    403: OpenApiResponse(ErrorSerializer, description="Your role or side cannot do this."),
    404: OpenApiResponse(ErrorSerializer, description="No such referral (or not yours)."),
    409: OpenApiResponse(
        ErrorSerializer,
        description="The case's state does not allow it now (e.g. already claimed by someone).",
    ),
}


# --- Serializers ---------------------------------------------------------------------------


class InstitutionBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(source="display_name")


class PersonSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(source="display_name")


class PoolBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField(source="display_name")


class StudyBriefSerializer(serializers.ModelSerializer):
    """The study as its reader (and its sending site) sees it on a worklist."""

    patient_id = serializers.CharField(source="pid")
    site = InstitutionBriefSerializer(source="institution", read_only=True)

    class Meta:
        model = Study
        fields = [
            "id",
            "study_uid",
            "study_date",
            "description",
            "modalities",
            "body_parts",
            "patient_name",
            "patient_id",
            "accession_number",
            "num_series",
            "num_instances",
            "site",
        ]


class WorklistStudySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    study_date = serializers.DateField(allow_null=True)
    description = serializers.CharField()
    modalities = serializers.CharField()
    body_parts = serializers.CharField()
    patient_name = serializers.CharField()
    patient_id = serializers.CharField(source="pid")
    num_instances = serializers.IntegerField()


class DeadlineFieldsMixin(serializers.Serializer):
    time_left_seconds = serializers.SerializerMethodField(
        help_text="Seconds until the deadline (negative once past it)."
    )
    band = serializers.SerializerMethodField(
        help_text="Colour by time left: ok, warning (past the warn point), breached."
    )

    def _now(self) -> Any:
        # The list view passes one "now" so that every row is measured from the same moment.
        return self.context.get("now") or worklist_selectors.now()

    @extend_schema_field(OpenApiTypes.INT)
    def get_time_left_seconds(self, referral: Referral) -> int:
        return worklist_selectors.time_left_seconds(referral, self._now())

    @extend_schema_field(serializers.ChoiceField(choices=["ok", "warning", "breached"]))
    def get_band(self, referral: Referral) -> str:
        return worklist_selectors.time_band(referral, self._now())


class WorklistRowSerializer(DeadlineFieldsMixin):
    """One row of a reading worklist."""

    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=ReferralKind.choices)
    priority = serializers.ChoiceField(choices=Priority.choices)
    status = serializers.ChoiceField(choices=ReferralStatus.choices)
    clinical_question = serializers.CharField()
    requested_at = serializers.DateTimeField()
    deadline_at = serializers.DateTimeField()
    source = InstitutionBriefSerializer()  # type: ignore[assignment]
    study = WorklistStudySerializer()
    pool = PoolBriefSerializer(allow_null=True)
    claimed_by = PersonSerializer(allow_null=True)
    proposed_to_me = serializers.SerializerMethodField()
    unroutable = serializers.BooleanField()

    @extend_schema_field(OpenApiTypes.BOOL)
    def get_proposed_to_me(self, referral: Referral) -> bool:
        user = self.context.get("user")
        return user is not None and referral.assigned_to_id == user.pk


_DATETIME = serializers.DateTimeField()
_DATE = serializers.DateField()


def _brief(pk: int | None, name: str, name_en: str) -> dict[str, Any] | None:
    return None if pk is None else {"id": pk, "name": bilingual(name, name_en)}


_ROW_VALUES = (
    "id",
    "kind",
    "priority",
    "status",
    "clinical_question",
    "requested_at",
    "deadline_at",
    "warn_at",
    "breached_at",
    "unroutable",
    "assigned_to_id",
    "source_id",
    "source__name",
    "source__name_en",
    "study_id",
    "study__study_date",
    "study__description",
    "study__modalities",
    "study__body_parts",
    "study__patient_name",
    "study__pid",
    "study__num_instances",
    "pool_id",
    "pool__name",
    "pool__name_en",
    "claimed_by_id",
    "claimed_by__name",
    "claimed_by__name_en",
    "claimed_by__username",
)


def worklist_rows(cases: QuerySet[Referral], *, now: Any, user: Any) -> list[dict[str, Any]]:
    """The rows of a worklist query as `WorklistRowSerializer` documents them, built from
    the query's columns (no model instances).

    The worklist is the hub's busiest read: DRF's nested serializers cost more than the
    query itself (about 1 ms a row), and five model instances a row most of the rest.
    tests/test_referral_api.py checks that this output equals the serializer's, so the
    schema stays true.
    """
    user_id = getattr(user, "pk", None)
    out = []
    for r in cases.values(*_ROW_VALUES):
        claimer = r["claimed_by_id"]
        out.append(
            {
                "time_left_seconds": worklist_selectors.seconds_left(r["deadline_at"], now),
                "band": worklist_selectors.band_of(
                    r["deadline_at"], r["warn_at"], r["breached_at"], now
                ),
                "id": r["id"],
                "kind": r["kind"],
                "priority": r["priority"],
                "status": r["status"],
                "clinical_question": r["clinical_question"],
                "requested_at": _DATETIME.to_representation(r["requested_at"]),
                "deadline_at": _DATETIME.to_representation(r["deadline_at"]),
                "source": _brief(r["source_id"], r["source__name"], r["source__name_en"]),
                "study": {
                    "id": r["study_id"],
                    "study_date": (
                        None
                        if r["study__study_date"] is None
                        else _DATE.to_representation(r["study__study_date"])
                    ),
                    "description": r["study__description"],
                    "modalities": r["study__modalities"],
                    "body_parts": r["study__body_parts"],
                    "patient_name": r["study__patient_name"],
                    "patient_id": r["study__pid"],
                    "num_instances": r["study__num_instances"],
                },
                "pool": _brief(r["pool_id"], r["pool__name"], r["pool__name_en"]),
                "claimed_by": None
                if claimer is None
                else {
                    "id": claimer,
                    "name": bilingual(r["claimed_by__name"], r["claimed_by__name_en"])
                    or r["claimed_by__name_en"]
                    or r["claimed_by__username"],
                },
                "proposed_to_me": user_id is not None and r["assigned_to_id"] == user_id,
                "unroutable": r["unroutable"],
            }
        )
    return out


class ReferralSerializer(DeadlineFieldsMixin, serializers.ModelSerializer):
    """A referral as both its sides see it."""

    study = StudyBriefSerializer(read_only=True)
    source = InstitutionBriefSerializer(read_only=True)  # type: ignore[assignment]
    target = InstitutionBriefSerializer(read_only=True, allow_null=True)
    pool = PoolBriefSerializer(read_only=True, allow_null=True)
    requested_by = PersonSerializer(read_only=True, allow_null=True)
    claimed_by = PersonSerializer(read_only=True, allow_null=True)
    assigned_to = PersonSerializer(read_only=True, allow_null=True)
    return_reason = serializers.ChoiceField(
        choices=ReturnReason.choices,
        allow_blank=True,
        read_only=True,
        help_text="Why the reader sent the study back; empty unless it was returned.",
    )
    routing_explanation = serializers.CharField(
        source="routing_explanation_text",
        read_only=True,
        help_text="Why routing sent it where it went, in the caller's language.",
    )
    allowed_actions = serializers.SerializerMethodField(
        help_text="Steps the state machine allows from the current status (not a check "
        "of the caller's role)."
    )

    class Meta:
        model = Referral
        fields = [
            "id",
            "kind",
            "priority",
            "status",
            "study",
            "source",
            "target",
            "pool",
            "clinical_question",
            "requested_by",
            "automatic",
            "requested_at",
            "deadline_at",
            "time_left_seconds",
            "band",
            "warned_at",
            "breached_at",
            "escalation_level",
            "routed_at",
            "routing_explanation",
            "unroutable",
            "assigned_to",
            "claimed_by",
            "claimed_at",
            "opened_at",
            "reported_at",
            "delivered_at",
            "acknowledged_at",
            "return_reason",
            "return_comment",
            "allowed_actions",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_allowed_actions(self, referral: Referral) -> list[str]:
        return allowed_actions(referral)


class ReferralEventSerializer(serializers.ModelSerializer):
    actor = PersonSerializer(read_only=True, allow_null=True)
    actor_institution = InstitutionBriefSerializer(read_only=True, allow_null=True)
    action_label = serializers.SerializerMethodField()
    reason = serializers.CharField(
        source="reason_text",
        read_only=True,
        help_text="Why: what a person wrote, or the hub's own note in the caller's language.",
    )

    class Meta:
        model = ReferralEvent
        fields = [
            "id",
            "action",
            "action_label",
            "from_status",
            "to_status",
            "actor",
            "actor_institution",
            "at",
            "reason",
            "data",
        ]

    @extend_schema_field(OpenApiTypes.STR)
    def get_action_label(self, event: ReferralEvent) -> str:
        return str(ACTION_LABELS.get(event.action, event.action))


class ReferralRequestSerializer(StrictSerializer):
    study = serializers.IntegerField(
        min_value=1, max_value=2**62, help_text="Id of a study of the active institution."
    )
    kind = serializers.ChoiceField(choices=ReferralKind.choices, default=ReferralKind.REMOTE_READ)
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.ROUTINE)
    clinical_question = serializers.CharField(
        max_length=4000, required=False, allow_blank=True, default=""
    )


class ReferralReturnSerializer(StrictSerializer):
    reason = serializers.ChoiceField(
        choices=ReturnReason.choices,
        error_messages={"invalid_choice": _("Choose a reason from the list.")},
    )
    comment = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")


class ReasonSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=4000, required=False, allow_blank=True, default="")


@extend_schema_serializer(many=False)  # one page object, not a list of them
class WorklistSerializer(serializers.Serializer):
    view = serializers.ChoiceField(choices=["mine", "pool"])
    now = serializers.DateTimeField()
    results = WorklistRowSerializer(many=True)


# --- Views ---------------------------------------------------------------------------------


def _form(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    form = serializer_class(data=data)
    form.is_valid(raise_exception=True)
    return dict(form.validated_data)


class ReferralViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, AuditedReadsViewSet):
    """Referrals the active institution sent or reads. Clinics create; readers take cases."""

    queryset = Referral.objects.select_related(
        "study",
        "study__institution",
        "source",
        "target",
        "pool",
        "requested_by",
        "claimed_by",
        "assigned_to",
    ).order_by("-requested_at", "-pk")
    serializer_class = ReferralSerializer
    write_roles = REFERRAL_WRITE_ROLES

    def filter_queryset(self, queryset: Any) -> Any:
        if self.action != "list":
            return queryset
        wanted = self.request.query_params.get("status", "")
        if wanted:
            if wanted not in ReferralStatus.values:
                raise services.ReferralError(_("Unknown status."), code="bad_status")
            queryset = queryset.filter(status=wanted)
        side = self.request.query_params.get("side", "")
        if side == "sent":
            queryset = queryset.filter(source=self.scope.institution)
        elif side == "received":
            queryset = queryset.filter(target=self.scope.institution)
        elif side:
            raise services.ReferralError(_("The side is 'sent' or 'received'."), code="bad_side")
        return queryset

    @extend_schema(
        parameters=[
            OpenApiParameter("status", enum=ReferralStatus.values, required=False),
            OpenApiParameter(
                "side",
                enum=["sent", "received"],
                required=False,
                description="sent: by the active institution; received: to it.",
            ),
        ],
        responses={200: ReferralSerializer(many=True), 400: ERRORS[400]},
    )
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(responses={200: ReferralSerializer, 404: ERRORS[404]})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    def _pk(self) -> int:
        """The referral named in the URL, if the caller may see it: 404 before any role check,
        so an outsider learns nothing (not even that the id exists)."""
        return int(self.get_object().pk)

    def _answer(self, referral: Referral, code: int = status.HTTP_200_OK) -> Response:
        fresh = self.get_queryset().get(pk=referral.pk)
        return Response(
            ReferralSerializer(fresh, context={"request": self.request}).data, status=code
        )

    @extend_schema(
        request=ReferralRequestSerializer,
        responses={
            201: ReferralSerializer,
            200: OpenApiResponse(
                ReferralSerializer,
                description=("The same study and kind is already referred: that referral."),
            ),
            400: ERRORS[400],
            403: ERRORS[403],
        },
    )
    def create(self, request: Request) -> Response:
        """Ask for a study of the active institution to be read (or consulted, transferred)."""
        data = _form(ReferralRequestSerializer, request.data)
        study = access.visible(self.scope, Study).filter(pk=data["study"]).first()
        if study is None:
            raise services.ReferralError(_("No such study."), code="bad_study")
        referral, created = services.referral_request(
            scope=self.scope,
            study=study,
            kind=data["kind"],
            priority=data["priority"],
            clinical_question=data["clinical_question"],
        )
        return self._answer(referral, status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=None, responses={200: ReferralSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    @takes_no_body
    def claim(self, request: Request, pk: str) -> Response:
        """Take the case from the pool. 409 with the holder's name when someone was first."""
        return self._answer(services.referral_claim(scope=self.scope, referral_id=self._pk()))

    @extend_schema(request=None, responses={200: ReferralSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    @takes_no_body
    def open(self, request: Request, pk: str) -> Response:
        """The claimer opens the case (which keeps the claim from being released)."""
        return self._answer(services.referral_open(scope=self.scope, referral_id=self._pk()))

    @extend_schema(request=ReasonSerializer, responses={200: ReferralSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def release(self, request: Request, pk: str) -> Response:
        """Put a claimed case back in its pool."""
        data = _form(ReasonSerializer, request.data)
        return self._answer(
            services.referral_release(
                scope=self.scope, referral_id=self._pk(), reason=data["reason"]
            )
        )

    @extend_schema(request=ReferralReturnSerializer, responses={200: ReferralSerializer, **ERRORS})
    @action(detail=True, methods=["post"], url_path="return", url_name="return")
    def return_for_quality(self, request: Request, pk: str) -> Response:
        """Send the study back to its site for quality, with a coded reason."""
        referral_id = self._pk()
        data = _form(ReferralReturnSerializer, request.data)
        return self._answer(
            services.referral_return(
                scope=self.scope,
                referral_id=referral_id,
                reason=data["reason"],
                comment=data["comment"],
            )
        )

    @extend_schema(request=ReasonSerializer, responses={200: ReferralSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """The sending site withdraws its request."""
        data = _form(ReasonSerializer, request.data)
        return self._answer(
            services.referral_cancel(
                scope=self.scope, referral_id=self._pk(), reason=data["reason"]
            )
        )

    @extend_schema(request=None, responses={200: ReferralSerializer, **ERRORS})
    @action(detail=True, methods=["post"])
    @takes_no_body
    def acknowledge(self, request: Request, pk: str) -> Response:
        """The sending site confirms it received the report."""
        return self._answer(services.referral_acknowledge(scope=self.scope, referral_id=self._pk()))

    @extend_schema(responses={200: ReferralEventSerializer(many=True), 404: ERRORS[404]})
    @action(detail=True, methods=["get"], pagination_class=None)
    def events(self, request: Request, pk: str) -> Response:
        """The referral's timeline: every step, who, when and why."""
        referral = self.get_object()
        assert isinstance(referral, Referral)
        rows = referral.events.select_related("actor", "actor_institution").order_by("at", "pk")
        return Response(ReferralEventSerializer(rows, many=True).data)


class WorklistViewSet(AuditedReadsViewSet):
    """A radiologist's reading worklists at the active institution, and "next case"."""

    queryset = Referral.objects.all()
    serializer_class = WorklistRowSerializer
    read_roles = roles.WORKLOAD_ROLES
    write_roles = roles.READER_ROLES
    pagination_class = None

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "view",
                enum=["mine", "pool"],
                required=False,
                description="mine: claimed by me or proposed to me; pool: "
                "waiting in my pools (default mine).",
            ),
            OpenApiParameter("modality", str, required=False, description="e.g. CT"),
            OpenApiParameter(
                "site", int, required=False, description="Id of the sending institution."
            ),
            OpenApiParameter(
                "body_part", str, required=False, description="e.g. CHEST (part of the code)."
            ),
            OpenApiParameter("priority", enum=Priority.values, required=False),
            OpenApiParameter(
                "status",
                enum=[*worklist_selectors.POOL_STATUSES, *worklist_selectors.SIGNED_STATUSES],
                required=False,
                description="routed, claimed or reporting; with signed_by_me: reported, "
                "delivered or acknowledged.",
            ),
            OpenApiParameter(
                "patient",
                str,
                required=False,
                description="Part of the patient's name or patient ID, taken literally "
                f"(at most {worklist_selectors.PATIENT_SEARCH_MAX} characters).",
            ),
            OpenApiParameter(
                "received_from",
                OpenApiTypes.DATE,
                required=False,
                description="Cases received (requested) on or after this day (hub time zone).",
            ),
            OpenApiParameter(
                "received_to",
                OpenApiTypes.DATE,
                required=False,
                description="Cases received (requested) on or before this day (hub time zone).",
            ),
            OpenApiParameter(
                "claimed_by_me",
                bool,
                required=False,
                description="Only the cases I hold (mine: not those merely proposed to me).",
            ),
            OpenApiParameter(
                "signed_by_me",
                bool,
                required=False,
                description="The cases whose final report I signed here, whatever the view.",
            ),
            OpenApiParameter(
                "sort",
                enum=[f"{sign}{key}" for key in worklist_selectors.SORT_KEYS for sign in ("", "-")],
                required=False,
                description="A column, '-' first for the other way round (default priority, "
                "then deadline; -received with signed_by_me). Ties: most urgent first.",
            ),
            OpenApiParameter(
                "limit",
                int,
                required=False,
                description=f"At most {worklist_selectors.LIMIT_MAX} "
                f"(default {worklist_selectors.LIMIT_DEFAULT}).",
            ),
        ],
        responses={200: WorklistSerializer, 400: ERRORS[400]},
    )
    def list(self, request: Request) -> Response:
        """Cases sorted by priority, then time left to the deadline, or as `sort` says."""
        filters = worklist_selectors.WorklistFilters.parse(request.query_params)
        rows = worklist_selectors.worklist(scope=self.scope, filters=filters)
        now = worklist_selectors.now()
        return Response(
            {
                "view": filters.view,
                "now": now,
                "results": worklist_rows(rows, now=now, user=self.scope.user),
            }
        )

    @extend_schema(
        request=None,
        responses={
            200: ReferralSerializer,
            204: OpenApiResponse(description="No case is waiting in your pools."),
            403: ERRORS[403],
        },
    )
    @action(detail=False, methods=["post"])
    @takes_no_body
    def next(self, request: Request) -> Response:
        """Claim the most urgent case waiting in your pools."""
        referral = services.referral_claim_next(scope=self.scope)
        if referral is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        fresh = access.visible(self.scope, ReferralViewSet.queryset).get(pk=referral.pk)
        return Response(ReferralSerializer(fresh).data)
