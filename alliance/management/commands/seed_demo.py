"""manage.py seed_demo: the demo alliance with one user per role."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import translation

from alliance.demo import demo_is_seeded, demo_logins, demo_seed, demo_studies_seed


class Command(BaseCommand):
    help = "Create the demo alliance (central, 2 county, 5 grassroots, 1 commission) and users."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-empty",
            action="store_true",
            help="Do nothing when the database already has institutions.",
        )

    def handle(self, *args: Any, if_empty: bool = False, **options: Any) -> None:
        if if_empty and demo_is_seeded():
            self.stdout.write("Database already has institutions: demo not seeded again.")
        else:
            alliance = demo_seed()
            self.stdout.write(self.style.SUCCESS(f"Seeded demo alliance {alliance.name_en}."))
            images = demo_studies_seed()
            if images:
                self.stdout.write(f"Stored {images} demo CT images at the grassroots clinics.")
        with translation.override("en"):
            self.stdout.write("Demo logins (user name, password, role):")
            for line in demo_logins():
                self.stdout.write(line)
