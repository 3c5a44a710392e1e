"""The routing console's pages, mounted under /console/ (alliance/urls.py)."""

from django.urls import path

from referrals.routing import console_views as views

urlpatterns = [
    path("pools/", views.pool_list, name="console-pools"),
    path("pools/new/", views.pool_create, name="console-pool-create"),
    path("pools/<int:pk>/", views.pool_detail, name="console-pool"),
    path("pools/<int:pk>/active/", views.pool_active, name="console-pool-active"),
    path("pools/<int:pk>/members/", views.pool_member_add, name="console-pool-member-add"),
    path(
        "pools/<int:pk>/members/<int:member_pk>/",
        views.pool_member,
        name="console-pool-member",
    ),
    path("roster/", views.roster, name="console-roster"),
    path(
        "roster/shifts/<int:pk>/delete/",
        views.roster_shift_delete,
        name="console-roster-shift-delete",
    ),
    path("rules/", views.rule_list, name="console-rules"),
    path("rules/new/", views.rule_create, name="console-rule-create"),
    path("rules/<int:pk>/", views.rule_edit, name="console-rule"),
    path("rules/<int:pk>/move/", views.rule_move, name="console-rule-move"),
    path("rules/<int:pk>/active/", views.rule_active, name="console-rule-active"),
    path("rules/<int:pk>/test/", views.rule_test, name="console-rule-test"),
]
