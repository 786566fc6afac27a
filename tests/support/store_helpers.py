"""Put recipients into known consent states through the real store."""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.app import Gateway
from suppression.changes import ConsentChange, NewSuppression
from suppression.model import Audience, Basis, ConsentStatus, Scope, SuppressionReason


async def opt_in(gw: Gateway, address: str, purpose: str, at: datetime) -> None:
    """Record an explicit opt-in with evidence."""
    await gw.store.record_consent(
        ConsentChange(
            identity=gw.identities.of(address),
            email=address,
            purpose=purpose,
            status=ConsentStatus.OPTED_IN,
            basis=Basis.CONSENT,
            source="signup-form",
            actor="test",
            at=at - timedelta(days=30),
            evidence={"ip": "192.0.2.10", "form": "signup-v3"},
        )
    )


async def opt_out(gw: Gateway, address: str, purpose: str, at: datetime) -> None:
    """Record a withdrawal."""
    await gw.store.record_consent(
        ConsentChange(
            identity=gw.identities.of(address),
            email=address,
            purpose=purpose,
            status=ConsentStatus.OPTED_OUT,
            basis=Basis.CONSENT,
            source="preference-page",
            actor="test",
            at=at - timedelta(days=1),
        )
    )


async def contact(gw: Gateway, address: str, at: datetime, **attributes: object) -> None:
    """Create a contact with attributes (audience, customer...)."""
    await gw.store.upsert_contact(
        gw.identities.of(address),
        address,
        actor="test",
        at=at,
        **attributes,  # type: ignore[arg-type]
    )


async def suppress(
    gw: Gateway,
    at: datetime,
    *,
    address: str | None = None,
    domain: str | None = None,
    reason: SuppressionReason = SuppressionReason.BOUNCE,
    scope: Scope = Scope.ALL,
) -> None:
    """Add a suppression on an address or a domain."""
    await gw.store.add_suppression(
        NewSuppression(
            scope=scope,
            reason=reason,
            source="test",
            actor="test",
            at=at,
            identity=gw.identities.of(address) if address else None,
            email=address,
            domain=domain,
        )
    )


__all__ = ["Audience", "contact", "opt_in", "opt_out", "suppress"]
