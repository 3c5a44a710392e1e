"""How the API schema (drf-spectacular) names the hub's authentication and its refusals."""

from __future__ import annotations

from typing import Any

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import force_instance
from drf_spectacular.utils import OpenApiResponse

from .errors import ErrorSerializer
from .serializers import StrictFieldsMixin


class HubTokenScheme(KnoxTokenScheme):
    target_class = "tenants.auth.HubTokenAuthentication"
    name = "hubToken"


class GatewayCredentialScheme(OpenApiAuthenticationExtension):
    target_class = "tenants.auth.GatewayCredentialAuthentication"
    name = "gatewayCredential"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "basic",
            "description": "A gateway key id (gw_...) as user name and its secret as password.",
        }


class HubAutoSchema(AutoSchema):
    """drf-spectacular's schema, with the refusals every operation can really answer.

    Each operation declares its success and the refusals particular to it (a conflict of
    state, say); the ones the hub answers everywhere are added here, in the one error shape
    (`tenants.errors`): a malformed request (400, e.g. a NUL in the address), no or a bad
    token (401), a role or side that may not (403), an id that is not there or not yours,
    or an unknown `?format=` (404), a body in a media type it does not read (415), and too
    many requests (429).
    """

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> dict[str, Any]:
        """A request body read by a strict serializer says so: `additionalProperties: false`
        (the fields a client may send back but not write, such as `id`, are also ignored)."""
        schema: dict[str, Any] = super()._map_basic_serializer(serializer, direction)
        if direction == "request" and isinstance(force_instance(serializer), StrictFieldsMixin):
            schema["additionalProperties"] = False
        return schema

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code, description in self._refusals():
            if code not in responses:
                refusal = OpenApiResponse(ErrorSerializer, description=description)
                responses[code] = self._get_response_for_code(refusal, code, direction=direction)
        return responses

    def _refusals(self) -> list[tuple[str, str]]:
        refusals = [
            ("400", "The request was refused: `code` says why, `fields` which fields."),
            ("401", "Not signed in, or the token is unknown or has expired."),
        ]
        if {} not in self.get_auth():
            refusals.append(("403", "Your role or institution may not do this."))
        # Every route also answers 404 to a `format` it does not render (`?format=xml`).
        refusals.append(("404", "No such object, or not one you may see; or an unknown format."))
        if self.method in ("POST", "PUT", "PATCH"):
            refusals.append(("415", "The body is in a media type this operation does not read."))
        if self.view.get_throttles():
            refusals.append(("429", "Too many requests: try again after `Retry-After` seconds."))
        return refusals
