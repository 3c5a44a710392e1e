"""DICOM person names are shown in the reader's language, the other form beside it."""

from __future__ import annotations

import pytest
from django.template import Context, Template
from django.utils import translation

from referrals.archive.person_names import dicom_person_name, pn_components


@pytest.mark.parametrize(
    ("value", "zh", "en"),
    [
        ("Wang^Jianguo=王^建国", "王建国 (Wang Jianguo)", "Wang Jianguo (王建国)"),
        ("Wang^Jianguo", "Wang Jianguo", "Wang Jianguo"),
        ("=王^建国", "王建国", "王建国"),
        ("Li^Lei=李^雷=li^lei", "李雷 (Li Lei)", "Li Lei (李雷)"),
        ("", "", ""),
    ],
)
def test_a_name_reads_in_each_language(value, zh, en):
    assert dicom_person_name(value, language="zh-hans") == zh
    assert dicom_person_name(value, language="en") == en


def test_the_components():
    assert pn_components("Wang^Xiao^^^=王^小明") == ("Wang Xiao", "王小明")


def test_the_template_filter_follows_the_active_language():
    template = Template("{% load dicom_names %}{{ name|person_name }}")
    context = Context({"name": "Wang^Jianguo=王^建国"})
    with translation.override("en"):
        assert template.render(context) == "Wang Jianguo (王建国)"
    with translation.override("zh-hans"):
        assert template.render(context) == "王建国 (Wang Jianguo)"
    # Never the raw DICOM form on a page.
    assert "^" not in template.render(context)
