"""The Simplified Chinese catalog: complete, nothing left for review, in step with the code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import polib
import pytest
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext, ngettext, npgettext, pgettext

from alliance.models import Tier
from tenants.models import InstitutionKind, Role

ROOT = Path(settings.BASE_DIR)
CATALOG = ROOT / "alliance" / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"
SOURCES = ["alliance", "tenants", "referrals", "reporting", "consultations", "manage.py"]
# The extraction a developer runs to update the catalog; tests/ holds no user-visible strings.
MAKEMESSAGES = [
    "makemessages",
    "-l",
    "zh_Hans",
    "--ignore=.venv",
    "--ignore=var",
    "--ignore=tests",
    "--ignore=node_modules",
    "--ignore=alliance/frontend",
    "--no-obsolete",
]
PLACEHOLDER = re.compile(r"%(?:\([^)]+\))?[#0 +-]*\d*(?:\.\d+)?[sdif%]|\{[^{}]*\}")


def _key(entry: polib.POEntry) -> tuple[str | None, str]:
    return (entry.msgctxt, entry.msgid)


def _translations(entry: polib.POEntry) -> list[str]:
    return list(entry.msgstr_plural.values()) if entry.msgid_plural else [entry.msgstr]


def _live(catalog: polib.POFile) -> list[polib.POEntry]:
    return [e for e in catalog if not e.obsolete]


@pytest.fixture(scope="module")
def catalog() -> polib.POFile:
    return polib.pofile(str(CATALOG))


def test_catalog_header_declares_simplified_chinese(catalog):
    assert not catalog.metadata_is_fuzzy, "the .po header is marked fuzzy"
    assert catalog.metadata["Language"] == "zh_Hans"
    assert catalog.metadata["Plural-Forms"].replace(" ", "") == "nplurals=1;plural=0;"
    assert "charset=UTF-8" in catalog.metadata["Content-Type"]


def test_every_entry_is_translated_and_none_is_fuzzy(catalog):
    untranslated = [e.msgid for e in _live(catalog) if not all(_translations(e))]
    fuzzy = [e.msgid for e in _live(catalog) if "fuzzy" in e.flags]
    assert not untranslated, f"untranslated in {CATALOG.name}: {untranslated}"
    assert not fuzzy, f"fuzzy in {CATALOG.name}: {fuzzy}"
    assert len(_live(catalog)) > 100  # a truncated or emptied catalog fails here too


def test_translations_keep_the_placeholders_of_their_source(catalog):
    """A lost or renamed %(name)s would raise (or silently vanish) when the page renders."""
    broken = []
    for entry in _live(catalog):
        wanted = sorted(PLACEHOLDER.findall(entry.msgid))
        for text in _translations(entry):
            if sorted(PLACEHOLDER.findall(text)) != wanted:
                broken.append((entry.msgid, text))
    assert not broken, f"placeholders differ between msgid and msgstr: {broken}"


def test_catalog_covers_every_string_the_code_marks(catalog, tmp_path):
    """Extract afresh from a copy of the code; every msgid found must be translated here."""
    work = tmp_path / "src"
    work.mkdir()
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(
                source,
                work / name,
                ignore=shutil.ignore_patterns("__pycache__", "locale", "node_modules"),
            )
        else:
            shutil.copy2(source, work / name)
    (work / "alliance" / "locale").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env.update(HUB_ENV="test", HUB_DATA_DIR=str(tmp_path / "data"), PYTHONDONTWRITEBYTECODE="1")
    result = subprocess.run(
        [sys.executable, "manage.py", *MAKEMESSAGES],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"makemessages failed:\n{result.stdout}\n{result.stderr}"
    extracted = polib.pofile(
        str(work / "alliance" / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po")
    )
    found = {_key(e): e for e in _live(extracted)}
    assert len(found) > 100, "the extraction found suspiciously few strings"

    committed = {
        _key(e): e for e in _live(catalog) if all(_translations(e)) and "fuzzy" not in e.flags
    }
    missing = sorted(
        (f"{ctx}\x04{msgid}" if ctx else msgid)
        + f"  ({', '.join(f'{path}:{line}' for path, line in e.occurrences)})"
        for (ctx, msgid), e in found.items()
        if (ctx, msgid) not in committed
    )
    assert not missing, (
        "strings marked for translation but missing or untranslated in "
        f"{CATALOG.relative_to(ROOT)} (run makemessages, translate, compile_translations):\n  "
        + "\n  ".join(missing)
    )


def test_compiled_catalog_is_loaded_and_current(catalog):
    """Each entry of the .po comes back from gettext: the .mo exists, loads and is not stale."""
    stale = []
    with translation.override("zh-hans"):
        for entry in _live(catalog):
            if entry.msgid_plural:
                got = (
                    npgettext(entry.msgctxt, entry.msgid, entry.msgid_plural, 1)
                    if entry.msgctxt
                    else ngettext(entry.msgid, entry.msgid_plural, 1)
                )
                want = entry.msgstr_plural[0]
            else:
                got = (
                    pgettext(entry.msgctxt, entry.msgid) if entry.msgctxt else gettext(entry.msgid)
                )
                want = entry.msgstr
            if got != want:
                stale.append((entry.msgid, want, got))
    assert not stale, (
        f"the compiled .mo does not match the .po (run `manage.py compile_translations`): {stale}"
    )


def test_pages_words_render_in_chinese_by_default_and_english_on_request():
    assert settings.LANGUAGE_CODE == "zh-hans"
    with translation.override("zh-hans"):
        assert gettext("Sign in") == "登录"
        assert gettext("Audit trail") == "审计日志"
        assert gettext("You now act for %(name)s.") % {"name": "北山镇卫生院"} == (
            "当前机构已切换为北山镇卫生院。"
        )
        assert str(Role.RADIOLOGIST.label) == "放射科医师"
        assert str(InstitutionKind.TOWNSHIP_CENTRE.label) == "乡镇卫生院"
        assert str(Tier.GRASSROOTS.label) == "基层"
    with translation.override("en"):
        assert gettext("Sign in") == "Sign in"
        assert str(Role.RADIOLOGIST.label) == "Radiologist"
