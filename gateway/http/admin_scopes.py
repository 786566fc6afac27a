"""Every admin API operation: the handler serving it and the token scope it needs
(``[http] admin_tokens``).

One table for both the routes (:func:`gateway.http.admin.setup_admin` mounts each handler
behind its scope: 403 for a token without it) and the OpenAPI document (each operation names
its scope), so the two cannot drift apart.
"""

from __future__ import annotations

from gateway.settings import AdminScope

#: (method, path under ``/api/v1``) -> (the :class:`~gateway.http.admin.AdminApi` method
#: serving it, the scope a token needs). ``GET /openapi.json`` needs no scope.
OPERATIONS: dict[tuple[str, str], tuple[str, AdminScope]] = {
    ("POST", "/consents"): ("consents", AdminScope.CONSENTS_WRITE),
    ("GET", "/contacts/{email}"): ("contact_get", AdminScope.CONTACTS_READ),
    ("PATCH", "/contacts/{email}"): ("contact_patch", AdminScope.CONTACTS_WRITE),
    ("DELETE", "/contacts/{email}"): ("contact_delete", AdminScope.CONTACTS_ERASE),
    ("POST", "/suppressions"): ("suppression_add", AdminScope.SUPPRESSIONS_WRITE),
    ("GET", "/suppressions"): ("suppression_list", AdminScope.SUPPRESSIONS_READ),
    ("DELETE", "/suppressions/{id}"): ("suppression_delete", AdminScope.SUPPRESSIONS_WRITE),
    ("POST", "/check"): ("check", AdminScope.CHECK),
    ("GET", "/purposes"): ("purposes", AdminScope.CHECK),
    ("POST", "/feedback"): ("feedback", AdminScope.FEEDBACK_WRITE),
    ("POST", "/notices"): ("notice_put", AdminScope.NOTICES_WRITE),
    ("GET", "/notices"): ("notice_list", AdminScope.CHECK),
    ("POST", "/contacts/{email}/activity"): ("contact_activity", AdminScope.ACTIVITY_WRITE),
    ("GET", "/contacts/{email}/proof"): ("contact_proof", AdminScope.CONTACTS_READ),
}
#: The scope each operation needs.
OPERATION_SCOPES = {operation: scope for operation, (_, scope) in OPERATIONS.items()}
