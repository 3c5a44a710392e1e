"""docs/openapi.yaml is generated from the code and kept current (`make openapi`)."""

from __future__ import annotations

from pathlib import Path

import yaml
from django.core.management import call_command

DOC = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"


def test_the_committed_schema_matches_the_code(tmp_path):
    fresh = tmp_path / "openapi.yaml"
    call_command("spectacular", "--lang", "en", "--file", str(fresh), "--validate")
    assert yaml.safe_load(fresh.read_text()) == yaml.safe_load(DOC.read_text()), (
        "docs/openapi.yaml is stale: run `make openapi`"
    )
    assert "/api/v1/memberships/{id}/" in yaml.safe_load(DOC.read_text())["paths"]
