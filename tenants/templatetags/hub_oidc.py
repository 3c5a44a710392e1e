"""The sign-in page's "Sign in with <hospital>" button, shown only when single sign-on is on."""

from __future__ import annotations

from django import template

from tenants.oidc import oidc_config, provider_label

register = template.Library()


@register.simple_tag
def oidc_provider_label() -> str:
    """The provider's name for the button, or "" when single sign-on is off."""
    config = oidc_config()
    return provider_label(config) if config is not None else ""
