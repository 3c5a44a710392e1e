"""The starter templates every alliance gets (idempotent: run it as often as you like)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from alliance.models import Alliance

from .models import ReportTemplate
from .schema import fields_check


def _text(key: str, label: str, label_en: str, required: bool = False) -> dict[str, Any]:
    return {"key": key, "kind": "text", "label": label, "label_en": label_en, "required": required}


FINDINGS = _text("findings", "影像所见", "Findings", required=True)
IMPRESSION = _text("impression", "诊断意见", "Impression", required=True)
RECOMMENDATION = _text("recommendation", "建议", "Recommendation")

LUNG_RADS = {
    "key": "lung_rads",
    "kind": "choice",
    "label": "Lung-RADS 分类",
    "label_en": "Lung-RADS category",
    "required": True,
    "choices": [
        {"value": "0", "label": "0 不完整", "label_en": "0 Incomplete"},
        {"value": "1", "label": "1 阴性", "label_en": "1 Negative"},
        {"value": "2", "label": "2 良性表现", "label_en": "2 Benign appearance"},
        {"value": "3", "label": "3 可能良性", "label_en": "3 Probably benign"},
        {"value": "4A", "label": "4A 可疑", "label_en": "4A Suspicious"},
        {"value": "4B", "label": "4B 非常可疑", "label_en": "4B Very suspicious"},
        {"value": "4X", "label": "4X 附加特征可疑", "label_en": "4X Additional features"},
        {"value": "S", "label": "S 其他重要发现", "label_en": "S Significant other finding"},
    ],
}

STARTERS: list[dict[str, Any]] = [
    {
        "code": "ct-chest",
        "modality": "CT",
        "body_part": "CHEST",
        "name": "胸部 CT",
        "name_en": "CT chest",
        "fields": [FINDINGS, LUNG_RADS, IMPRESSION, RECOMMENDATION],
    },
    {
        "code": "ct-head",
        "modality": "CT",
        "body_part": "HEAD",
        "name": "头颅 CT",
        "name_en": "CT head",
        "fields": [
            FINDINGS,
            _text("haemorrhage", "颅内出血", "Intracranial haemorrhage"),
            IMPRESSION,
        ],
    },
    {
        "code": "dr-chest",
        "modality": "DR",
        "body_part": "CHEST",
        "name": "胸部 DR 正位片",
        "name_en": "DR chest",
        "fields": [FINDINGS, IMPRESSION],
    },
    {
        "code": "us-abdomen",
        "modality": "US",
        "body_part": "ABDOMEN",
        "name": "腹部超声",
        "name_en": "US abdomen",
        "fields": [
            _text("liver", "肝脏", "Liver"),
            _text("gallbladder", "胆囊", "Gallbladder"),
            _text("pancreas", "胰腺", "Pancreas"),
            _text("spleen", "脾脏", "Spleen"),
            _text("kidneys", "双肾", "Kidneys"),
            FINDINGS,
            IMPRESSION,
        ],
    },
    {
        "code": "mr-knee",
        "modality": "MR",
        "body_part": "KNEE",
        "name": "膝关节 MR",
        "name_en": "MR knee",
        "fields": [
            _text("menisci", "半月板", "Menisci"),
            _text("ligaments", "韧带", "Ligaments"),
            _text("cartilage", "关节软骨", "Cartilage"),
            FINDINGS,
            IMPRESSION,
        ],
    },
]


def templates_seed(*, alliance: Alliance) -> int:
    """Give `alliance` the starter templates it does not have yet; the number added."""
    added = 0
    with transaction.atomic():
        for starter in STARTERS:
            if ReportTemplate.objects.filter(alliance=alliance, code=starter["code"]).exists():
                continue
            ReportTemplate.objects.create(
                alliance=alliance,
                version=1,
                **{**starter, "fields": fields_check({"fields": starter["fields"]})},
            )
            added += 1
    return added


def templates_for_new_alliance(sender: Any, alliance: Alliance, **kwargs: Any) -> None:
    """alliance.signals.alliance_created: a new alliance starts with the starter set."""
    templates_seed(alliance=alliance)
