"""The clinic's edge gateway (front-end processor): DIMSE in, spool to disk, STOW-RS out.

Nothing in this package touches the database: a gateway runs at a clinic and talks to the
hub over HTTP only (`manage.py run_gateway`, `manage.py gateway_status`; docs/gateway.md).
"""
