"""A system check: every vendored front-end package that settings serve is installed.

Pages load third-party code (dicom-parser, later charts) from /static/vendor/<package>/,
which STATICFILES_DIRS maps to folders under alliance/frontend/node_modules that `npm ci`
fills. Without this check a missing install shows up only as a 404 in a browser console
and a page that silently does nothing; with it `migrate`, `runserver`, `check` and
`collectstatic` stop and say what to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register

VENDOR_PREFIX = "vendor/"
INSTALL_HINT = (
    "Install the front-end packages: `make run` / `make test` do it, or run "
    "`cd alliance/frontend && ../../.venv/bin/npm ci` (in the image: see deploy/Dockerfile)."
)


def vendor_dirs() -> list[tuple[str, Path]]:
    """The (prefix, folder) pairs of STATICFILES_DIRS that serve npm packages."""
    pairs = []
    for entry in getattr(settings, "STATICFILES_DIRS", []):
        if isinstance(entry, (tuple, list)) and str(entry[0]).startswith(VENDOR_PREFIX):
            pairs.append((str(entry[0]), Path(entry[1])))
    return pairs


@register(Tags.staticfiles)
def vendor_packages_installed(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    for prefix, folder in vendor_dirs():
        if not folder.is_dir() or not any(folder.iterdir()):
            errors.append(
                Error(
                    f"The front-end files served under /static/{prefix}/ are missing: "
                    f"{folder} does not exist or is empty.",
                    hint=INSTALL_HINT,
                    id="alliance.E001",
                )
            )
    return errors
