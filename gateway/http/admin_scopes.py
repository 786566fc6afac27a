"""Which admin API operation needs which token scope (``[http] admin_tokens``).

One table for both the routes (:func:`gateway.http.admin.setup_admin` refuses a token without
the scope: 403) and the OpenAPI document (each operation names its scope), so they agree.
"""

from __future__ import annotations

from gateway.settings import AdminScope

#: (method, path under ``/api/v1``) -> the scope a token needs. ``/openapi.json`` needs none.
OPERATION_SCOPES: dict[tuple[str, str], AdminScope] = {
    ("POST", "/consents"): AdminScope.CONSENTS_WRITE,
    ("GET", "/contacts/{email}"): AdminScope.CONTACTS_READ,
    ("PATCH", "/contacts/{email}"): AdminScope.CONTACTS_WRITE,
    ("DELETE", "/contacts/{email}"): AdminScope.CONTACTS_ERASE,
    ("POST", "/suppressions"): AdminScope.SUPPRESSIONS_WRITE,
    ("GET", "/suppressions"): AdminScope.SUPPRESSIONS_READ,
    ("DELETE", "/suppressions/{id}"): AdminScope.SUPPRESSIONS_WRITE,
    ("POST", "/check"): AdminScope.CHECK,
    ("GET", "/purposes"): AdminScope.CHECK,
}
