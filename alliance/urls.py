"""URL map of the hub."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from django.views.i18n import JavaScriptCatalog
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from consultations import api as consultations_api
from referrals.archive import reconciliation_api
from referrals.archive import upload_api as referrals_api
from referrals.archive.correction import api as correction_api
from referrals.registration import api as registration_api
from referrals.workflow import api as referral_api
from reporting import api as reporting_api
from reporting import critical_api
from tenants import api as tenants_api
from tenants import views as tenants_views

from . import api as alliance_api
from . import directory_views, views
from .analytics import dashboard_views


class ApiRouter(DefaultRouter):
    """DefaultRouter without `.json`-style suffix routes: clients choose a format with the
    Accept header (or `?format=`), and the suffix routes passed a `format` argument that the
    viewsets' actions do not take (a 500 on every one)."""

    include_format_suffixes = False


router = ApiRouter()
router.register("institutions", tenants_api.InstitutionViewSet, basename="institution")
router.register("alliances", alliance_api.AllianceViewSet, basename="alliance")
router.register("memberships", tenants_api.MembershipViewSet, basename="membership")
router.register(
    "gateway-credentials", tenants_api.GatewayCredentialViewSet, basename="gateway-credential"
)
router.register("audit-events", tenants_api.AuditEventViewSet, basename="audit-event")
router.register("notifications", tenants_api.NotificationViewSet, basename="notification")
router.register("auth/tokens", tenants_api.TokenViewSet, basename="token")
router.register("uploads", referrals_api.UploadViewSet, basename="upload")
router.register("archive/held", reconciliation_api.HeldInstanceViewSet, basename="held-instance")
router.register("mdt-sessions", consultations_api.MdtSessionViewSet, basename="mdt-session")
router.register("mdt-invitations", consultations_api.InvitationViewSet, basename="mdt-invitation")
router.register("report-templates", reporting_api.ReportTemplateViewSet, basename="report-template")
router.register("reports", reporting_api.ReportViewSet, basename="report")
router.register(
    "critical-findings", critical_api.CriticalFindingViewSet, basename="critical-finding"
)
router.register("referrals", referral_api.ReferralViewSet, basename="referral")
router.register("worklist", referral_api.WorklistViewSet, basename="worklist")
router.register("registrations", registration_api.RegistrationViewSet, basename="registration")

api_v1: list[URLPattern | URLResolver] = [
    path("me/", tenants_api.MeView.as_view(), name="me"),
    path("auth/login/", tenants_api.TokenLoginView.as_view(), name="token-login"),
    path("gateway/whoami/", tenants_api.GatewayWhoAmIView.as_view(), name="gateway-whoami"),
    path(
        "gateway/worklist/",
        registration_api.GatewayWorklistView.as_view(),
        name="gateway-worklist",
    ),
    path(
        "archive/studies/<str:study_uid>/corrections/",
        correction_api.StudyCorrectionsView.as_view(),
        name="study-corrections",
    ),
    path(
        "archive/studies/<str:study_uid>/corrections/<int:pk>/",
        correction_api.StudyCorrectionView.as_view(),
        name="study-correction",
    ),
    path("", include("alliance.analytics.urls")),  # commission analytics
    path("", include(router.urls)),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("analytics/", dashboard_views.dashboard, name="analytics-dashboard"),
    path("accounts/login/", tenants_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", tenants_views.LogoutView.as_view(), name="logout"),
    path("accounts/password/", tenants_views.PasswordChangeView.as_view(), name="password-change"),
    path(
        "accounts/password/done/",
        tenants_views.PasswordChangeDoneView.as_view(),
        name="password-change-done",
    ),
    path("accounts/institution/", tenants_views.switch_institution, name="switch-institution"),
    path("oidc/", include("mozilla_django_oidc.urls")),  # hospital single sign-on
    path("accounts/two-factor/", include("tenants.two_factor.urls")),  # the second factor
    path("institutions/", directory_views.institution_list, name="institution-list"),
    path("institutions/<int:pk>/", directory_views.institution_detail, name="institution-detail"),
    path("notifications/", tenants_views.notification_list, name="notification-list"),
    path("audit/", tenants_views.audit_list, name="audit-list"),
    path("", include("alliance.console_urls")),  # the administration console
    path("console/", include("referrals.routing.urls")),  # pools, roster, routing rules
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", JavaScriptCatalog.as_view(), name="javascript-catalog"),
    path("admin/", admin.site.urls),
    path("api/v1/", include((api_v1, "api"))),
    path("dicomweb/", include("referrals.archive.dicomweb.urls")),
    path("", include("referrals.urls")),
    path("", include("consultations.urls")),
    path("", include("reporting.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api-schema", template_name="alliance/api_docs.html"
        ),
        name="api-docs",
    ),
]
