"""The institution's part of the administration console: staff and roles, gateway credentials."""
