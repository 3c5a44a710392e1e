"""URLs of the administration console (/console/): its home, the alliance's deadline policy,
and the institution's pages (tenants/console/urls.py)."""

from django.urls import include, path

from . import console_views, policy_views

urlpatterns = [
    path("console/", console_views.console_home, name="console-home"),
    path("console/policy/", policy_views.policy_edit, name="console-policy"),
    path("", include("tenants.console.urls")),
]
