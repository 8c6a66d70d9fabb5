"""Rules of the user service: roles, who may do what, request and invite lifecycles.

Standard library only (plus the shared error classes).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from serve.common.errors import Conflict, Forbidden, NotFound

ADMIN = "admin"
OWNER = "owner"
MODERATOR = "moderator"
ORGANIZATION_ROLES = (OWNER, MODERATOR)

PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"
# (status, action) -> new status. Repeating the action that led to a status is a no-op.
REQUEST_TRANSITIONS: dict[tuple[str, str], str] = {
    (PENDING, "approve"): APPROVED,
    (PENDING, "reject"): REJECTED,
    (APPROVED, "approve"): APPROVED,
    (REJECTED, "reject"): REJECTED,
}

# Fields of their own account a user may change; anything else is refused by the schema.
EDITABLE_PROFILE_FIELDS = frozenset({"display_name", "locale"})


def platform_roles(email: str | None, admin_emails: Iterable[str]) -> tuple[str, ...]:
    """Platform roles carried in the access token: ``admin`` for the configured emails."""
    if email and email.lower() in {e.lower() for e in admin_emails}:
        return (ADMIN,)
    return ()


def review_request(status: str, action: str) -> str:
    """The status after an admin's ``approve``/``reject``; 409 when the request is decided."""
    try:
        return REQUEST_TRANSITIONS[(status, action)]
    except KeyError:
        raise Conflict(f"the request is already {status}", slug="request-decided") from None


def require_admin(roles: Iterable[str]) -> None:
    if ADMIN not in roles:
        raise Forbidden("only platform administrators may do this")


def can_read_organization(role: str | None, is_admin: bool) -> bool:
    """Members, groups and invites of an organization: its Owners and Moderators, and admins."""
    return is_admin or role in ORGANIZATION_ROLES


def require_reader(role: str | None, is_admin: bool) -> None:
    if not can_read_organization(role, is_admin):
        raise Forbidden("you are not a member of this organization")


def require_owner(role: str | None) -> None:
    """Members are managed by Owners only (Moderators manage events, not members)."""
    if role != OWNER:
        raise Forbidden("only an Owner of the organization manages its members")


def require_staff(role: str | None) -> None:
    """Groups (the audiences of private events) are managed by Owners and Moderators."""
    if role not in ORGANIZATION_ROLES:
        raise Forbidden("only the organization's Owners and Moderators manage its groups")


def check_role(role: str) -> str:
    if role not in ORGANIZATION_ROLES:
        raise Conflict(f"unknown role {role!r}")
    return role


def check_owner_remains(owners: int, current_role: str, new_role: str | None) -> None:
    """An organization always keeps at least one Owner (``new_role`` None = removal)."""
    if current_role == OWNER and new_role != OWNER and owners <= 1:
        raise Conflict("an organization needs at least one Owner; appoint another first",
                       slug="last-owner")


def check_invite(expires_at: datetime, accepted_by: str | None, user_id: str,
                 now: datetime) -> bool:
    """True when the invite is open; False when this user already accepted it (a retry).

    Raises 409 when someone else used it and 410-like conflict when it has expired.
    """
    if accepted_by is not None:
        if accepted_by == user_id:
            return False
        raise Conflict("this invite has already been used", slug="invite-used")
    if expires_at <= now:
        raise Conflict("this invite has expired", slug="invite-expired")
    return True


def require_found(row: object, what: str) -> None:
    if row is None:
        raise NotFound(f"{what} not found")
