"""Invites, recovery codes, membership changes and passkey management over plain store."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from codexrelay.crypto import keyed_hash, normalize_code
from codexrelay.errors import AppError, ErrorCode
from codexrelay.relay.access import identity, invites, people, sessions
from codexrelay.relay.access.identity import WorkspaceAccess
from codexrelay.relay.storage.memory import MemoryStore
from codexrelay.relay.storage.records import PasskeyRecord, Role, UserRecord

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
SECRET = "k" * 40
RAND = secrets.token_bytes


class World:
    """A relay's store with an owner, a workspace and helpers to add people."""

    def __init__(self) -> None:
        self.store = MemoryStore("inst_test", NOW, check_saves=True)
        identity.ensure_owner(self.store, now=NOW, rand=RAND)
        self.owner = identity.instance_owner(self.store)
        self.ws = identity.user_workspaces(self.store, self.owner.id)[0][0]

    def person(self, role: Role | None, name: str = "P", workspace_id: str | None = None):
        user = identity.create_user(self.store, name=name, now=NOW, rand=RAND)
        if role is not None:
            identity.set_membership(
                self.store,
                user_id=user.id,
                workspace_id=workspace_id or self.ws.id,
                role=role,
                now=NOW,
            )
        return user

    def access(self, user: UserRecord, workspace_id: str | None = None) -> WorkspaceAccess:
        return identity.check_workspace_access(
            self.store,
            user_id=user.id,
            workspace_id=workspace_id or self.ws.id,
            minimum=Role.VIEWER,
        )

    def role_of(self, user: UserRecord, workspace_id: str | None = None) -> Role | None:
        found = self.store.memberships.find(user.id, workspace_id or self.ws.id)
        return found.role if found else None

    def invite(self, by: UserRecord, role: Role, ttl: int = 3600) -> invites.IssuedInvite:
        return invites.create_invite(
            self.store,
            access=self.access(by),
            role=role,
            note="for the phone",
            ttl_sec=ttl,
            now=NOW,
            secret=SECRET,
            rand=RAND,
        )

    def accept(self, code: str, *, member: UserRecord | None = None, now: datetime = NOW):
        return invites.accept_invite(
            self.store, code=code, name="New", member=member, now=now, secret=SECRET, rand=RAND
        )

    def enroll_session(self, user: UserRecord, invite_id: str | None):
        return sessions.open_session(
            self.store,
            user_id=user.id,
            via="invite",
            now=NOW,
            ttl_sec=3600,
            max_per_user=20,
            secret=SECRET,
            rand=RAND,
            enrollment_only=True,
            invite_id=invite_id,
        ).record

    def passkey(self, user: UserRecord, n: int = 1) -> PasskeyRecord:
        record = PasskeyRecord(
            credential_id=f"cred-{user.id}-{n}", public_key="pk", user_id=user.id, created_at=NOW
        )
        self.store.passkeys.add(record)
        return record


@pytest.fixture
def world() -> Iterator[World]:
    made = World()
    yield made
    # Every change the domain made was saved, so a row backend would keep it too.
    made.store.check_unsaved()


def _code(excinfo: pytest.ExceptionInfo[AppError]) -> ErrorCode:
    return excinfo.value.code


# --- invites (R21, O5) ---


def test_invite_code_is_stored_only_as_keyed_hash(world):
    """O5: the code itself is never stored; only an HMAC keyed with tokenSecret."""
    issued = world.invite(world.owner, Role.MEMBER)
    dumped = world.store.document().model_dump_json()
    assert issued.code not in dumped
    assert normalize_code(issued.code) not in dumped
    assert issued.invite.code_hash == keyed_hash(SECRET, "invite-code", normalize_code(issued.code))
    assert len(normalize_code(issued.code)) == 12


@pytest.mark.parametrize(
    ("inviter_role", "role", "allowed"),
    [
        (Role.ADMIN, Role.VIEWER, True),
        (Role.ADMIN, Role.MEMBER, True),
        (Role.ADMIN, Role.ADMIN, False),
        (Role.ADMIN, Role.OWNER, False),
        (Role.OWNER, Role.ADMIN, True),
        (Role.OWNER, Role.OWNER, True),
    ],
)
def test_invite_role_ceiling(world, inviter_role, role, allowed):
    """R03: nobody invites above their own role; only owners invite admins and owners."""
    inviter = world.person(inviter_role)
    if allowed:
        assert world.invite(inviter, role).invite.role == role
    else:
        with pytest.raises(AppError) as excinfo:
            world.invite(inviter, role)
        assert _code(excinfo) == ErrorCode.FORBIDDEN


def test_invite_accept_makes_enrollment_locked_user_without_membership(world):
    """R21: the invitee is locked and a member of nothing until a passkey is registered."""
    issued = world.invite(world.owner, Role.MEMBER)
    accepted = world.accept(issued.code.lower().replace("-", " "))
    assert accepted.new_user
    assert accepted.user.status == "enrollment-locked"
    assert world.role_of(accepted.user) is None
    assert invites.invite_status(issued.invite, NOW) == "accepted"


def test_invite_is_one_time(world):
    """O5: a used code is refused as invalid-or-expired."""
    issued = world.invite(world.owner, Role.MEMBER)
    world.accept(issued.code)
    with pytest.raises(AppError) as excinfo:
        world.accept(issued.code)
    assert _code(excinfo) == ErrorCode.INVALID_OR_EXPIRED_CODE


def test_invite_expires(world):
    """O5: an expired code is refused."""
    issued = world.invite(world.owner, Role.MEMBER, ttl=600)
    with pytest.raises(AppError) as excinfo:
        world.accept(issued.code, now=NOW + timedelta(seconds=600))
    assert _code(excinfo) == ErrorCode.INVALID_OR_EXPIRED_CODE


def test_wrong_invite_code_is_refused(world):
    """A code that was never issued is refused the same way."""
    world.invite(world.owner, Role.MEMBER)
    with pytest.raises(AppError) as excinfo:
        world.accept("AAAA-BBBB-CCCC")
    assert _code(excinfo) == ErrorCode.INVALID_OR_EXPIRED_CODE


def test_invite_needs_a_name_for_a_new_user(world):
    """A new user must give a name; the code is not spent when they do not."""
    issued = world.invite(world.owner, Role.MEMBER)
    with pytest.raises(AppError) as excinfo:
        invites.accept_invite(
            world.store, code=issued.code, name="  ", member=None, now=NOW, secret=SECRET, rand=RAND
        )
    assert _code(excinfo) == ErrorCode.INVALID_REQUEST
    assert world.accept(issued.code).new_user


def test_cancelled_invite_is_refused(world):
    """A cancelled code no longer works."""
    issued = world.invite(world.owner, Role.MEMBER)
    invites.cancel_invite(
        world.store, workspace_id=world.ws.id, invite_id=issued.invite.id, now=NOW
    )
    assert invites.invite_status(issued.invite, NOW) == "cancelled"
    with pytest.raises(AppError):
        world.accept(issued.code)


def test_cancel_after_accept_disables_the_unenrolled_invitee(world):
    """Cancelling before the invitee enrolled locks them out for good."""
    issued = world.invite(world.owner, Role.MEMBER)
    accepted = world.accept(issued.code)
    session = world.enroll_session(accepted.user, issued.invite.id)
    invites.cancel_invite(
        world.store, workspace_id=world.ws.id, invite_id=issued.invite.id, now=NOW
    )
    assert accepted.user.status == "disabled"
    assert world.store.sessions.get(session.token_hash) is None


def test_cancel_after_enrollment_is_a_conflict(world):
    """An invite that already made a member cannot be cancelled; remove the member instead."""
    issued = world.invite(world.owner, Role.MEMBER)
    accepted = world.accept(issued.code)
    invites.finish_enrollment(
        world.store, session=world.enroll_session(accepted.user, issued.invite.id), now=NOW
    )
    with pytest.raises(AppError) as excinfo:
        invites.cancel_invite(
            world.store, workspace_id=world.ws.id, invite_id=issued.invite.id, now=NOW
        )
    assert _code(excinfo) == ErrorCode.CONFLICT


def test_cancel_invite_of_another_workspace_is_not_found(world):
    """R03: an invite id from another workspace is not found."""
    other = identity.create_workspace(
        world.store, name="Other", owner_id=world.owner.id, now=NOW, rand=RAND
    )
    issued = world.invite(world.owner, Role.MEMBER)
    with pytest.raises(AppError) as excinfo:
        invites.cancel_invite(
            world.store, workspace_id=other.id, invite_id=issued.invite.id, now=NOW
        )
    assert _code(excinfo) == ErrorCode.NOT_FOUND


def test_enrollment_grants_invite_membership_once(world):
    """R21: the first passkey grants the invite's role; a later one grants nothing again."""
    issued = world.invite(world.owner, Role.VIEWER)
    accepted = world.accept(issued.code)
    session = world.enroll_session(accepted.user, issued.invite.id)
    invites.finish_enrollment(world.store, session=session, now=NOW)
    assert accepted.user.status == "active"
    assert world.role_of(accepted.user) == Role.VIEWER
    assert session.enrollment_only is False
    assert session.invite_id is None
    people.remove_member(
        world.store, access=world.access(world.owner), user_id=accepted.user.id, now=NOW
    )
    invites.finish_enrollment(world.store, session=session, now=NOW)
    assert world.role_of(accepted.user) is None


def test_active_member_accepting_invite_gains_membership(world):
    """A signed-in active user joins without a new account, never losing a higher role."""
    other = identity.create_workspace(
        world.store, name="Other", owner_id=world.owner.id, now=NOW, rand=RAND
    )
    bob = world.person(Role.ADMIN)
    issued = invites.create_invite(
        world.store,
        access=world.access(world.owner, other.id),
        role=Role.MEMBER,
        note=None,
        ttl_sec=600,
        now=NOW,
        secret=SECRET,
        rand=RAND,
    )
    accepted = world.accept(issued.code, member=bob)
    assert not accepted.new_user
    assert accepted.user is bob
    assert world.role_of(bob, other.id) == Role.MEMBER
    lower = world.invite(world.owner, Role.VIEWER)
    world.accept(lower.code, member=bob)
    assert world.role_of(bob) == Role.ADMIN


def test_removed_admin_pending_invites_are_cancelled(world):
    """An admin's outstanding invites die with their membership."""
    admin = world.person(Role.ADMIN)
    issued = world.invite(admin, Role.MEMBER)
    people.remove_member(world.store, access=world.access(world.owner), user_id=admin.id, now=NOW)
    with pytest.raises(AppError):
        world.accept(issued.code)


def test_old_spent_codes_are_pruned(world):
    """Invites spent or expired more than a week ago are forgotten."""
    old = world.invite(world.owner, Role.MEMBER, ttl=600)
    later = NOW + invites.SPENT_CODE_KEEP + timedelta(seconds=601)
    invites.prune_codes(world.store, later)
    assert world.store.invites.get(old.invite.id) is None


# --- roles and membership (R03, B7) ---


@pytest.mark.parametrize(
    ("actor", "target", "new", "expected"),
    [
        (Role.ADMIN, Role.VIEWER, Role.MEMBER, None),
        (Role.ADMIN, Role.MEMBER, Role.VIEWER, None),
        (Role.ADMIN, Role.MEMBER, Role.ADMIN, ErrorCode.FORBIDDEN),
        (Role.ADMIN, Role.ADMIN, Role.MEMBER, ErrorCode.FORBIDDEN),
        (Role.ADMIN, Role.OWNER, Role.VIEWER, ErrorCode.FORBIDDEN),
        (Role.OWNER, Role.MEMBER, Role.ADMIN, None),
        (Role.OWNER, Role.ADMIN, Role.OWNER, None),
        (Role.OWNER, Role.OWNER, Role.MEMBER, None),
    ],
)
def test_change_role_rules(world, actor, target, new, expected):
    """R03: admins move viewers and members; only owners touch admin and owner roles."""
    acting = world.person(actor, "Actor")
    person = world.person(target, "Target")
    if expected is None:
        people.change_role(
            world.store, access=world.access(acting), user_id=person.id, role=new, now=NOW
        )
        assert world.role_of(person) == new
    else:
        with pytest.raises(AppError) as excinfo:
            people.change_role(
                world.store, access=world.access(acting), user_id=person.id, role=new, now=NOW
            )
        assert _code(excinfo) == expected
        assert world.role_of(person) == target


def test_last_owner_cannot_be_demoted(world):
    """The last owner keeps the owner role (409 last-owner)."""
    with pytest.raises(AppError) as excinfo:
        people.change_role(
            world.store,
            access=world.access(world.owner),
            user_id=world.owner.id,
            role=Role.ADMIN,
            now=NOW,
        )
    assert _code(excinfo) == ErrorCode.LAST_OWNER
    assert excinfo.value.status == 409


def test_change_role_of_non_member_is_not_found(world):
    """A user who is not in the workspace cannot be given a role there by PATCH."""
    stranger = world.person(None)
    with pytest.raises(AppError) as excinfo:
        people.change_role(
            world.store,
            access=world.access(world.owner),
            user_id=stranger.id,
            role=Role.VIEWER,
            now=NOW,
        )
    assert _code(excinfo) == ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    ("actor", "target", "expected"),
    [
        (Role.ADMIN, Role.MEMBER, None),
        (Role.ADMIN, Role.VIEWER, None),
        (Role.ADMIN, Role.ADMIN, ErrorCode.FORBIDDEN),
        (Role.ADMIN, Role.OWNER, ErrorCode.FORBIDDEN),
        (Role.MEMBER, Role.VIEWER, ErrorCode.FORBIDDEN),
        (Role.VIEWER, Role.VIEWER, ErrorCode.FORBIDDEN),
        (Role.OWNER, Role.ADMIN, None),
        (Role.OWNER, Role.OWNER, None),
    ],
)
def test_remove_member_rules(world, actor, target, expected):
    """B7: admins remove those below them, owners anyone, others only themselves."""
    acting = world.person(actor, "Actor")
    person = world.person(target, "Target")
    call = lambda: people.remove_member(  # noqa: E731
        world.store, access=world.access(acting), user_id=person.id, now=NOW
    )
    if expected is None:
        call()
        assert world.role_of(person) is None
    else:
        with pytest.raises(AppError) as excinfo:
            call()
        assert _code(excinfo) == expected


@pytest.mark.parametrize("role", [Role.VIEWER, Role.MEMBER, Role.ADMIN])
def test_member_can_leave(world, role):
    """B7: anyone may leave a workspace."""
    person = world.person(role)
    people.remove_member(world.store, access=world.access(person), user_id=person.id, now=NOW)
    assert world.role_of(person) is None


def test_last_owner_cannot_leave(world):
    """The last owner cannot leave (409); with a second owner they can."""
    with pytest.raises(AppError) as excinfo:
        people.remove_member(
            world.store, access=world.access(world.owner), user_id=world.owner.id, now=NOW
        )
    assert _code(excinfo) == ErrorCode.LAST_OWNER
    world.person(Role.OWNER)
    people.remove_member(
        world.store, access=world.access(world.owner), user_id=world.owner.id, now=NOW
    )
    assert world.role_of(world.owner) is None


def test_removal_ends_workspace_access_at_once(world):
    """R03: the next role check after removal finds no membership."""
    person = world.person(Role.MEMBER)
    people.remove_member(world.store, access=world.access(world.owner), user_id=person.id, now=NOW)
    with pytest.raises(AppError) as excinfo:
        world.access(person)
    assert _code(excinfo) == ErrorCode.NOT_FOUND


# --- recovery codes ---


def _issue(world: World, user: UserRecord, ttl: int = 600) -> invites.IssuedRecoveryCode:
    return invites.issue_recovery_code(
        world.store,
        user_id=user.id,
        issued_by=world.owner.id,
        ttl_sec=ttl,
        now=NOW,
        secret=SECRET,
        rand=RAND,
    )


def test_recovery_code_redeems_once(world):
    """A recovery code signs in its user once, then never again."""
    person = world.person(Role.MEMBER)
    issued = _issue(world, person)
    assert issued.code not in world.store.document().model_dump_json()
    user = invites.redeem_recovery_code(world.store, code=issued.code, now=NOW, secret=SECRET)
    assert user is person
    with pytest.raises(AppError) as excinfo:
        invites.redeem_recovery_code(world.store, code=issued.code, now=NOW, secret=SECRET)
    assert _code(excinfo) == ErrorCode.INVALID_OR_EXPIRED_CODE


def test_recovery_code_expires(world):
    """An expired recovery code is refused."""
    issued = _issue(world, world.person(Role.MEMBER), ttl=600)
    with pytest.raises(AppError):
        invites.redeem_recovery_code(
            world.store, code=issued.code, now=NOW + timedelta(seconds=600), secret=SECRET
        )


def test_new_recovery_code_replaces_the_old(world):
    """One live recovery code per person: issuing another kills the first."""
    person = world.person(Role.MEMBER)
    first = _issue(world, person)
    _issue(world, person)
    with pytest.raises(AppError):
        invites.redeem_recovery_code(world.store, code=first.code, now=NOW, secret=SECRET)


def test_invite_code_is_not_a_recovery_code(world):
    """Codes are domain-separated: an invite code never redeems as a recovery code."""
    issued = world.invite(world.owner, Role.MEMBER)
    with pytest.raises(AppError):
        invites.redeem_recovery_code(world.store, code=issued.code, now=NOW, secret=SECRET)


def test_recovery_code_for_disabled_user_refused(world):
    """A disabled account gets no recovery code and cannot redeem an old one."""
    person = world.person(Role.MEMBER)
    issued = _issue(world, person)
    person.status = "disabled"
    with pytest.raises(AppError):
        invites.redeem_recovery_code(world.store, code=issued.code, now=NOW, secret=SECRET)
    with pytest.raises(AppError) as excinfo:
        _issue(world, person)
    assert _code(excinfo) == ErrorCode.CONFLICT


def test_admin_recovery_authority_needs_outranking_everywhere(world):
    """R03: an admin may recover a member only if they outrank them in every workspace."""
    admin = world.person(Role.ADMIN, "Admin")
    member = world.person(Role.MEMBER, "Member")
    invites.check_recovery_authority(world.store, access=world.access(admin), user_id=member.id)
    elsewhere = identity.create_workspace(
        world.store, name="Elsewhere", owner_id=member.id, now=NOW, rand=RAND
    )
    assert world.role_of(member, elsewhere.id) == Role.OWNER
    with pytest.raises(AppError) as excinfo:
        invites.check_recovery_authority(world.store, access=world.access(admin), user_id=member.id)
    assert _code(excinfo) == ErrorCode.FORBIDDEN


@pytest.mark.parametrize("target", [Role.ADMIN, Role.OWNER])
def test_admin_cannot_recover_equal_or_higher(world, target):
    """A workspace admin cannot recover an admin or an owner."""
    admin = world.person(Role.ADMIN, "Admin")
    person = world.person(target)
    with pytest.raises(AppError):
        invites.check_recovery_authority(world.store, access=world.access(admin), user_id=person.id)


def test_admin_cannot_recover_the_instance_owner(world):
    """The relay owner is recovered only with the bootstrap token."""
    admin = world.person(Role.OWNER, "Co-owner")
    with pytest.raises(AppError):
        invites.check_recovery_authority(
            world.store, access=world.access(admin), user_id=world.owner.id
        )


# --- passkey management (I2) ---


def test_last_passkey_refused_without_other_way_in(world):
    """I2: revoking a user's last passkey is refused with 409 unless forced."""
    person = world.person(Role.MEMBER)
    key = world.passkey(person)
    with pytest.raises(AppError) as excinfo:
        people.revoke_passkeys(
            world.store, user_id=person.id, credential_id=key.credential_id, now=NOW, force=False
        )
    assert _code(excinfo) == ErrorCode.LAST_PASSKEY
    assert "last passkey" in excinfo.value.message
    people.revoke_passkeys(
        world.store, user_id=person.id, credential_id=key.credential_id, now=NOW, force=True
    )
    assert world.store.passkeys.count() == 0


def test_revoke_all_passkeys_guarded_too(world):
    """Revoking all of a user's passkeys is the same last-passkey decision."""
    person = world.person(Role.MEMBER)
    world.passkey(person, 1)
    world.passkey(person, 2)
    with pytest.raises(AppError):
        people.revoke_passkeys(
            world.store, user_id=person.id, credential_id=None, now=NOW, force=False
        )
    assert (
        people.revoke_passkeys(
            world.store, user_id=person.id, credential_id=None, now=NOW, force=True
        )
        == 2
    )


def test_non_last_passkey_revokes_freely(world):
    """With another passkey left, revoking one needs no force."""
    person = world.person(Role.MEMBER)
    first = world.passkey(person, 1)
    world.passkey(person, 2)
    people.revoke_passkeys(
        world.store, user_id=person.id, credential_id=first.credential_id, now=NOW, force=False
    )
    assert [p.credential_id for p in people.user_passkeys(world.store, person.id)] == [
        f"cred-{person.id}-2"
    ]


def test_recovery_code_or_bootstrap_counts_as_another_way_in(world):
    """The owner (bootstrap token) and a user with a live recovery code may drop their last."""
    owner_key = world.passkey(world.owner)
    people.revoke_passkeys(
        world.store,
        user_id=world.owner.id,
        credential_id=owner_key.credential_id,
        now=NOW,
        force=False,
    )
    person = world.person(Role.MEMBER)
    key = world.passkey(person)
    _issue(world, person)
    people.revoke_passkeys(
        world.store, user_id=person.id, credential_id=key.credential_id, now=NOW, force=False
    )


def test_passkey_of_someone_else_is_not_found(world):
    """A user cannot revoke or rename another user's passkey through their own id."""
    person = world.person(Role.MEMBER)
    key = world.passkey(world.owner)
    with pytest.raises(AppError) as excinfo:
        people.revoke_passkeys(
            world.store, user_id=person.id, credential_id=key.credential_id, now=NOW, force=True
        )
    assert _code(excinfo) == ErrorCode.NOT_FOUND
    with pytest.raises(AppError):
        people.rename_passkey(
            world.store, user_id=person.id, credential_id=key.credential_id, label="mine"
        )


def test_rename_passkey_cleans_the_label(world):
    """Labels are single-line and trimmed; an empty label is refused."""
    key = world.passkey(world.owner)
    people.rename_passkey(
        world.store, user_id=world.owner.id, credential_id=key.credential_id, label="  my\n phone "
    )
    assert key.label == "my phone"
    with pytest.raises(AppError):
        people.rename_passkey(
            world.store, user_id=world.owner.id, credential_id=key.credential_id, label="\x00 "
        )


def test_list_users_counts_passkeys_and_sessions(world):
    """I2: the owner's list shows each user's passkeys, sessions and memberships."""
    person = world.person(Role.MEMBER, "Zed")
    world.passkey(person)
    world.enroll_session(person, None)
    rows = {s.user.id: s for s in people.list_users(world.store)}
    assert people.list_users(world.store)[0].user is world.owner
    assert rows[person.id].passkeys == 1
    assert rows[person.id].sessions == 1
    assert rows[person.id].memberships == [(world.ws.id, world.ws.name, Role.MEMBER)]
