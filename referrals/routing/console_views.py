"""The routing console's pages: reading pools and their members, the roster's week, routing
rules in order and the dry run of one rule. Thin: selectors read, services write."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django.views.decorators.http import require_http_methods, require_POST

from alliance.models import ReaderPool, RoutingRule
from referrals.models import ReferralKind
from referrals.routing import selectors, services
from referrals.routing.forms import (
    BODY_PARTS,
    MemberAddForm,
    MemberCapacityForm,
    PoolForm,
    RuleForm,
    ShiftForm,
)
from tenants import access
from tenants.audit import AuditCode, audit_read
from tenants.errors import ApplicationError
from tenants.models import Institution, User

# The dry run's words for each condition of a rule that a case does not meet.
CONDITION_LABELS = {
    "source_institution": gettext_lazy("from site"),
    "source_tier": gettext_lazy("from tier"),
    "modality": gettext_lazy("modality"),
    "body_part": gettext_lazy("body part"),
    "priority": gettext_lazy("priority"),
    "kind": gettext_lazy("referral kind"),
    "time_window": gettext_lazy("time of day"),
}

T = TypeVar("T")


def _scope(request: HttpRequest) -> access.Scope:
    return request.hub_scope  # type: ignore[attr-defined]


def _staffing_scope(request: HttpRequest) -> access.Scope:
    scope = _scope(request)
    if not selectors.may_staff_pools(scope):
        raise PermissionDenied
    return scope


def _routing_scope(request: HttpRequest) -> access.Scope:
    scope = _scope(request)
    if not selectors.may_configure_routing(scope):
        raise PermissionDenied
    return scope


def _form_save(
    request: HttpRequest,
    form: Any,
    save: Callable[[], T],
    done: str,
    to: Callable[[T], str],
) -> HttpResponse | None:
    """A valid form saved by its service: the sentence `done`, then off to `to(result)`.
    None when the form is not valid or the service refused (the refusal is on the form)."""
    if not form.is_valid():
        return None
    try:
        result = save()
    except ApplicationError as exc:
        form.add_error(None, str(exc))
        return None
    messages.success(request, done)
    return HttpResponseRedirect(to(result))


# --- Pools -----------------------------------------------------------------------------


@login_required
def pool_list(request: HttpRequest) -> HttpResponse:
    scope = _staffing_scope(request)
    pools = selectors.console_pools(scope).select_related("overflow_to", "lead")
    return render(
        request,
        "referrals/routing/pool_list.html",
        {
            "pools": pools.order_by("alliance__code", "-is_active", "institution__code", "name"),
            "may_route": selectors.may_configure_routing(scope),
        },
    )


def _pool_form(
    scope: access.Scope, data: Any, pool: ReaderPool | None, initial: dict[str, Any] | None = None
) -> PoolForm:
    alliances = selectors.console_alliances(scope)
    if pool is None:
        institutions = access.visible(scope, Institution).none()
        leads = User.objects.none()
        for alliance in alliances:
            institutions = institutions | selectors.pool_institutions(scope, alliance)
            leads = leads | selectors.eligible_readers(scope, alliance=alliance)
        overflow = None
        if selectors.may_configure_routing(scope):
            overflow = access.visible(scope, ReaderPool).filter(
                alliance__in=alliances, is_active=True
            )
        return PoolForm(
            data,
            alliances=alliances,
            institutions=institutions,
            leads=leads.distinct(),
            overflow=overflow,
        )
    return PoolForm(
        data,
        initial=initial,
        alliances=None,
        institutions=None,
        leads=selectors.eligible_readers(scope, alliance=pool.alliance)
        | User.objects.filter(pk__in=[pool.lead_id] if pool.lead_id else []),
        overflow=selectors.pool_overflow_choices(scope, pool, pool.alliance)
        if selectors.may_configure_routing(scope)
        else None,
    )


@login_required
@require_http_methods(["GET", "POST"])
def pool_create(request: HttpRequest) -> HttpResponse:
    scope = _staffing_scope(request)
    form = _pool_form(scope, request.POST if request.method == "POST" else None, None)
    status = 200
    if request.method == "POST":
        saved = _form_save(
            request,
            form,
            lambda: services.pool_create(
                scope=scope,
                alliance=form.cleaned_data["alliance"],
                institution=form.cleaned_data["institution"],
                **form.pool_fields(),
            ),
            _("Pool created. Now add its readers."),
            lambda pool: reverse("console-pool", args=[pool.pk]),
        )
        if saved is not None:
            return saved
        status = 400
    return render(request, "referrals/routing/pool_form.html", {"form": form}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def pool_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The pool's settings (editable) and its members."""
    scope = _staffing_scope(request)
    pool = selectors.console_pool(scope, pk)
    initial = {
        "name": pool.name,
        "name_en": pool.name_en,
        "subspecialty": pool.subspecialty,
        "cap": pool.cap,
        "roster_required": pool.roster_required,
        "lead": pool.lead_id,
        "overflow_to": pool.overflow_to_id,
    }
    form = _pool_form(scope, request.POST if request.method == "POST" else None, pool, initial)
    status = 200
    if request.method == "POST":
        saved = _form_save(
            request,
            form,
            lambda: services.pool_update(scope=scope, pool=pool, **form.pool_fields()),
            _("Pool saved."),
            lambda saved_pool: reverse("console-pool", args=[saved_pool.pk]),
        )
        if saved is not None:
            return saved
        status = 400
    return _pool_page(request, scope, pool, form=form, status=status)


def _pool_page(
    request: HttpRequest,
    scope: access.Scope,
    pool: ReaderPool,
    *,
    form: PoolForm | None = None,
    member_form: MemberAddForm | None = None,
    status: int = 200,
) -> HttpResponse:
    members = selectors.pool_members(pool)
    return render(
        request,
        "referrals/routing/pool_detail.html",
        {
            "pool": pool,
            "form": form,
            "members": [(m, MemberCapacityForm(initial={"capacity": m.capacity})) for m in members],
            "member_form": member_form
            or MemberAddForm(candidates=selectors.pool_member_candidates(scope, pool)),
            "rules": list(
                access.visible(scope, RoutingRule)
                .filter(pool=pool, is_active=True)
                .order_by("order", "pk")
            ),
        },
        status=status,
    )


@login_required
@require_POST
def pool_active(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _staffing_scope(request)
    pool = selectors.console_pool(scope, pk)
    active = request.POST.get("active") == "1"
    services.pool_set_active(scope=scope, pool=pool, active=active)
    messages.success(
        request,
        _("Pool back in routing.")
        if active
        else _("Pool taken out of routing: its rules and overflow skip it."),
    )
    return HttpResponseRedirect(reverse("console-pool", args=[pool.pk]))


@login_required
@require_POST
def pool_member_add(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _staffing_scope(request)
    pool = selectors.console_pool(scope, pk)
    form = MemberAddForm(request.POST, candidates=selectors.pool_member_candidates(scope, pool))
    saved = _form_save(
        request,
        form,
        lambda: services.pool_member_add(
            scope=scope,
            pool=pool,
            user=form.cleaned_data["user"],
            capacity=form.cleaned_data["capacity"],
        ),
        _("Reader added to the pool."),
        lambda _member: reverse("console-pool", args=[pool.pk]),
    )
    return saved or _pool_page(request, scope, pool, member_form=form, status=400)


@login_required
@require_POST
def pool_member(request: HttpRequest, pk: int, member_pk: int) -> HttpResponse:
    """Change a member's capacity, or (action=remove) take them out of the pool."""
    scope = _staffing_scope(request)
    pool = selectors.console_pool(scope, pk)
    member = selectors.console_pool_member(scope, pool, member_pk)
    if request.POST.get("action") == "remove":
        services.pool_member_remove(scope=scope, member=member)
        messages.success(request, _("Reader taken out of the pool."))
    else:
        form = MemberCapacityForm(request.POST)
        if not form.is_valid():
            messages.error(request, _("A reader's capacity is at least one open case."))
        else:
            services.pool_member_update(
                scope=scope, member=member, capacity=form.cleaned_data["capacity"]
            )
            messages.success(request, _("Capacity saved."))
    return HttpResponseRedirect(reverse("console-pool", args=[pool.pk]))


# --- The roster ------------------------------------------------------------------------


def _week(request: HttpRequest) -> dt.date:
    wanted = request.GET.get("week", "")
    if not wanted:
        return selectors.week_start(timezone.localdate())
    try:
        return selectors.week_start(dt.date.fromisoformat(wanted))
    except ValueError:
        raise Http404 from None


@login_required
@require_http_methods(["GET", "POST"])
def roster(request: HttpRequest) -> HttpResponse:
    """The week's shifts (of one pool or all the caller manages); adding shifts to a pool."""
    scope = _staffing_scope(request)
    week = _week(request)
    pool_id = request.GET.get("pool", "")
    pool = selectors.console_pool(scope, pool_id) if pool_id else None
    form = None
    status = 200
    if pool is not None:
        members = User.objects.filter(pk__in=[m.user_id for m in selectors.pool_members(pool)])
        form = ShiftForm(
            request.POST if request.method == "POST" else None,
            members=members.order_by("name_en", "username"),
            initial={"first_day": max(week, timezone.localdate()), "weeks": 1},
        )
        if request.method == "POST":
            if form.is_valid():
                try:
                    made = services.roster_shifts_add(
                        scope=scope,
                        pool=pool,
                        user=form.cleaned_data["user"],
                        first_day=form.cleaned_data["first_day"],
                        starts=form.cleaned_data["starts"],
                        ends=form.cleaned_data["ends"],
                        weekdays=form.weekday_set(),
                        weeks=form.cleaned_data["weeks"],
                    )
                except ApplicationError as exc:
                    form.add_error(None, str(exc))
                else:
                    messages.success(
                        request,
                        ngettext("%(n)d shift added.", "%(n)d shifts added.", len(made))
                        % {"n": len(made)},
                    )
                    first = selectors.week_start(timezone.localtime(made[0].starts_at).date())
                    query = urlencode({"pool": str(pool.pk), "week": first.isoformat()})
                    return HttpResponseRedirect(f"{reverse('console-roster')}?{query}")
            status = 400
    elif request.method == "POST":
        raise Http404  # shifts are added to a pool named in the address
    return render(
        request,
        "referrals/routing/roster.html",
        {
            "week": selectors.roster_week(scope, start=week, pool=pool),
            "pool": pool,
            "pools": selectors.console_pools(scope).filter(is_active=True).order_by("name"),
            "form": form,
            "time_zone": timezone.get_current_timezone_name(),
        },
        status=status,
    )


@login_required
@require_POST
def roster_shift_delete(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _staffing_scope(request)
    shift = selectors.console_shift(scope, pk)
    following = request.POST.get("following") == "1"
    count = services.roster_shift_delete(scope=scope, shift=shift, following=following)
    messages.success(
        request, ngettext("%(n)d shift deleted.", "%(n)d shifts deleted.", count) % {"n": count}
    )
    week = selectors.week_start(timezone.localtime(shift.starts_at).date())
    query: dict[str, str] = {"week": week.isoformat()}
    if request.POST.get("pool"):
        query["pool"] = str(shift.pool_id)
    return HttpResponseRedirect(f"{reverse('console-roster')}?{urlencode(query)}")


# --- Routing rules ---------------------------------------------------------------------


@login_required
def rule_list(request: HttpRequest) -> HttpResponse:
    scope = _routing_scope(request)
    rules = list(selectors.console_rules(scope))
    # Up/down move within an alliance: mark each rule's neighbours.
    rows = []
    for i, rule in enumerate(rules):
        before = rules[i - 1] if i else None
        after = rules[i + 1] if i + 1 < len(rules) else None
        rows.append(
            {
                "rule": rule,
                "can_up": before is not None and before.alliance_id == rule.alliance_id,
                "can_down": after is not None and after.alliance_id == rule.alliance_id,
                "kind_label": dict(ReferralKind.choices).get(rule.kind, rule.kind),
            }
        )
    return render(request, "referrals/routing/rule_list.html", {"rows": rows})


def _rule_form(
    scope: access.Scope, data: Any, rule: RoutingRule | None, initial: dict[str, Any] | None = None
) -> RuleForm:
    if rule is not None:
        alliance = rule.alliance
        return RuleForm(
            data,
            initial=initial,
            alliances=None,
            sources=selectors.rule_source_choices(scope, alliance),
            pools=selectors.rule_pool_choices(scope, alliance)
            | access.visible(scope, ReaderPool).filter(pk=rule.pool_id),
            current_modality=rule.modality,
        )
    alliances = selectors.console_alliances(scope)
    sources = access.visible(scope, Institution).none()
    pools = access.visible(scope, ReaderPool).none()
    for alliance in alliances:
        sources = sources | selectors.rule_source_choices(scope, alliance)
        pools = pools | selectors.rule_pool_choices(scope, alliance)
    return RuleForm(data, alliances=alliances, sources=sources, pools=pools)


def _rule_page(
    request: HttpRequest, form: RuleForm, rule: RoutingRule | None, status: int
) -> HttpResponse:
    return render(
        request,
        "referrals/routing/rule_form.html",
        {"form": form, "rule": rule, "body_parts": BODY_PARTS},
        status=status,
    )


@login_required
@require_http_methods(["GET", "POST"])
def rule_create(request: HttpRequest) -> HttpResponse:
    scope = _routing_scope(request)
    form = _rule_form(scope, request.POST if request.method == "POST" else None, None)
    if request.method == "POST":
        saved = _form_save(
            request,
            form,
            lambda: services.rule_create(
                scope=scope, alliance=form.cleaned_data["alliance"], **form.rule_fields()
            ),
            _("Rule created. Try it on recent referrals below."),
            lambda rule: reverse("console-rule-test", args=[rule.pk]),
        )
        return saved or _rule_page(request, form, None, 400)
    return _rule_page(request, form, None, 200)


@login_required
@require_http_methods(["GET", "POST"])
def rule_edit(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _routing_scope(request)
    rule = selectors.console_rule(scope, pk)
    initial = {
        "name": rule.name,
        "source_institution": rule.source_institution_id,
        "source_tier": rule.source_tier,
        "kind": rule.kind,
        "modality": rule.modality.upper(),
        "body_part": rule.body_part,
        "priority": rule.priority,
        "time_from": rule.time_from,
        "time_to": rule.time_to,
        "pool": rule.pool_id,
    }
    form = _rule_form(scope, request.POST if request.method == "POST" else None, rule, initial)
    if request.method == "POST":
        saved = _form_save(
            request,
            form,
            lambda: services.rule_update(scope=scope, rule=rule, **form.rule_fields()),
            _("Rule saved."),
            lambda saved_rule: reverse("console-rule", args=[saved_rule.pk]),
        )
        return saved or _rule_page(request, form, rule, 400)
    return _rule_page(request, form, rule, 200)


@login_required
@require_POST
def rule_move(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _routing_scope(request)
    rule = selectors.console_rule(scope, pk)
    services.rule_move(scope=scope, rule=rule, up=request.POST.get("direction") == "up")
    return HttpResponseRedirect(reverse("console-rules"))


@login_required
@require_POST
def rule_active(request: HttpRequest, pk: int) -> HttpResponse:
    scope = _routing_scope(request)
    rule = selectors.console_rule(scope, pk)
    active = request.POST.get("active") == "1"
    services.rule_set_active(scope=scope, rule=rule, active=active)
    messages.success(request, _("Rule switched on.") if active else _("Rule switched off."))
    if request.POST.get("next") == "rule":
        return HttpResponseRedirect(reverse("console-rule", args=[rule.pk]))
    return HttpResponseRedirect(reverse("console-rules"))


@login_required
def rule_test(request: HttpRequest, pk: int) -> HttpResponse:
    """The dry run: does this rule match recent real referrals, and where would each go now.
    Nothing is routed or changed; the read is audited like any list of cases."""
    scope = _routing_scope(request)
    rule = selectors.console_rule(scope, pk)
    candidates = selectors.dry_run_referrals(scope, rule)
    wanted = set(request.GET.getlist("referral"))
    chosen = [r for r in candidates if str(r.pk) in wanted] if wanted else candidates[:10]
    rows = selectors.routing_rule_dry_run(rule=rule, referrals=chosen)
    audit_read(
        event=AuditCode.QUERY,
        scope=scope,
        request=request,
        object_type="routing_rule",
        object_id=rule.pk,
        detail={"dry_run": True, "referrals": [r.pk for r in chosen]},
    )
    return render(
        request,
        "referrals/routing/rule_test.html",
        {
            "rule": rule,
            "candidates": candidates,
            "chosen": {r.pk for r in chosen},
            "rows": [
                {"row": row, "failed": [CONDITION_LABELS[name] for name in row.failures]}
                for row in rows
            ],
        },
    )
