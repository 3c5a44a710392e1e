"""How the API schema (drf-spectacular) names the hub's own authentication schemes."""

from __future__ import annotations

from typing import Any

from drf_spectacular.contrib.knox_auth_token import KnoxTokenScheme
from drf_spectacular.extensions import OpenApiAuthenticationExtension


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
