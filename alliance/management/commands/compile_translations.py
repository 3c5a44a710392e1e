"""manage.py compile_translations: .po to .mo with polib, so no GNU gettext is needed."""

from pathlib import Path
from typing import Any

import polib
from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Compile every .po catalog under LOCALE_PATHS into its .mo (pure Python)."
    requires_system_checks: list[str] = []  # compiling text must not wait on model checks

    def handle(self, *args: Any, **options: Any) -> None:
        count = 0
        for root in settings.LOCALE_PATHS:
            for po_path in sorted(Path(root).rglob("*.po")):
                catalog = polib.pofile(str(po_path))
                catalog.save_as_mofile(str(po_path.with_suffix(".mo")))
                count += 1
        self.stdout.write(f"Compiled {count} catalog(s).")
