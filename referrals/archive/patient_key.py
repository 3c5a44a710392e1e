"""The alliance-wide patient key: a keyed hash of (issuer, patient ID).

The same person registered under the same ID domain (e.g. the resident ID card, or a
regional master patient index as IssuerOfPatientID) gets the same key at every site, so
readers can find priors across the alliance without the ID itself travelling. An ID with
no issuer is only meaningful inside its site, so the site's code stands in as its issuer.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings


def patient_key(*, patient_id: str, issuer: str, site_code: str) -> str:
    domain = issuer.strip() or f"site:{site_code}"
    message = f"{domain}\x1f{patient_id.strip()}".encode()
    return hmac.new(settings.PATIENT_KEY_SECRET.encode(), message, hashlib.sha256).hexdigest()
