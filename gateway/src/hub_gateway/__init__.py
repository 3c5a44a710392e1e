"""The clinic's edge gateway (front-end processor): DIMSE in, spool to disk, STOW-RS out.

Installed on its own at a clinic, it talks to the hub over HTTP only and never imports the
hub (`hub-gateway run`, `hub-gateway status`; docs/gateway.md in the hub's repository).
"""
