"""Who may see and change billing data: owners and admins change it, portal keys see their own."""

from __future__ import annotations

from dataclasses import dataclass

from perfmark.domain.accounts import WRITE_ROLES, Role
from perfmark.errors import ForbiddenError
from perfmark.services.container import Principal

__all__ = ["Scope", "require_staff", "require_write", "scope_of"]


def require_write(principal: Principal, what: str) -> None:
    """Refuse read-only and portal roles for a change."""
    if principal.role not in WRITE_ROLES:
        raise ForbiddenError(
            f"the {principal.role.value} role cannot {what}; use an owner or admin key"
        )


def require_staff(principal: Principal, what: str) -> None:
    """Refuse portal roles (advertiser, publisher) for workspace-wide data such as the ledger."""
    if principal.role in (Role.ADVERTISER, Role.PUBLISHER):
        raise ForbiddenError(f"a {principal.role.value} key cannot see {what}")


@dataclass(frozen=True)
class Scope:
    """The advertiser or publisher a portal key is limited to (both None for staff)."""

    advertiser_id: str | None = None
    publisher_id: str | None = None

    def allows(self, advertiser_id: str | None, publisher_id: str | None) -> bool:
        """Whether an object of these parties is visible."""
        if self.advertiser_id is not None and advertiser_id != self.advertiser_id:
            return False
        return not (self.publisher_id is not None and publisher_id != self.publisher_id)


def scope_of(principal: Principal) -> Scope:
    """The caller's scope; a portal key without its party sees nothing."""
    if principal.role is Role.ADVERTISER:
        if not principal.advertiser_id:
            raise ForbiddenError("this advertiser key is not bound to an advertiser")
        return Scope(advertiser_id=principal.advertiser_id)
    if principal.role is Role.PUBLISHER:
        if not principal.publisher_id:
            raise ForbiddenError("this publisher key is not bound to a publisher")
        return Scope(publisher_id=principal.publisher_id)
    return Scope()
