"""The one DRF base class for tenant-owned resources (PostHog's TeamAndOrgViewSetMixin idea).

It owns `get_queryset` and `get_object`; a subclass that defines either fails at import.
The escape hatch, for the rare view that must see across tenants, is spelled
`dangerously_unscoped_queryset` so that it stands out in review.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Model, QuerySet
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, mixins, permissions, viewsets
from rest_framework.request import Request

from . import access

_OWNED = ("get_queryset", "get_object")


class ScopeRolePermission(permissions.BasePermission):
    """Reads need any membership (or `read_roles`); writes need one of `write_roles`."""

    message = _("Your role at the active institution does not allow this.")

    def has_permission(self, request: Request, view: Any) -> bool:
        scope = access.scope_for_request(request)
        if scope.is_gateway and not getattr(view, "allow_gateway", False):
            return False
        if scope.is_connected_system:
            return False  # a connected system speaks DICOMweb only
        if scope.institution is None:
            raise exceptions.PermissionDenied(
                _("You act for no institution: choose one you are a member of.")
            )
        if request.method in permissions.SAFE_METHODS:
            read_roles = getattr(view, "read_roles", None)
            return read_roles is None or scope.has_any_role(*read_roles)
        return scope.has_any_role(*getattr(view, "write_roles", ()))


class ScopedGenericViewSet(viewsets.GenericViewSet):
    """Scopes every queryset and object lookup to the caller through tenants.access."""

    read_roles: frozenset[str] | None = None
    write_roles: frozenset[str] = frozenset()
    allow_gateway = False
    permission_classes = [permissions.IsAuthenticated, ScopeRolePermission]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _OWNED:
            if name in cls.__dict__:
                raise TypeError(
                    f"{cls.__name__} overrides {name}(); tenant scoping is owned by "
                    "ScopedGenericViewSet. Narrow the class `queryset` instead."
                )

    @property
    def scope(self) -> access.Scope:
        return access.scope_for_request(self.request)

    def _template(self) -> QuerySet[Any]:
        template = type(self).queryset
        assert template is not None, f"{type(self).__name__} needs a queryset"
        return template.all()

    def get_queryset(self) -> QuerySet[Any]:
        return access.visible(self.scope, self._template())

    def get_object(self) -> Model:
        field = self.lookup_field
        lookup = {field: self.kwargs[self.lookup_url_kwarg or field]}
        obj = access.get_visible_or_404(self.scope, self._template(), **lookup)
        self.check_object_permissions(self.request, obj)
        return obj

    def dangerously_unscoped_queryset(self) -> QuerySet[Any]:
        """Every row of every tenant. Only for views that check access some other way."""
        return self._template()


class ScopedReadOnlyViewSet(mixins.RetrieveModelMixin, mixins.ListModelMixin, ScopedGenericViewSet):
    pass
