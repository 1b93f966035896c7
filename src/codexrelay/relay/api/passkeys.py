"""Passkey ceremonies (R05, R08) and the signed-in user's own passkeys (I2)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import Field

from codexrelay.relay.access import passkeys, people
from codexrelay.relay.access.passkeys import RelyingParty
from codexrelay.relay.api.auditing import AuditDep, memberships
from codexrelay.relay.api.auth import start_session
from codexrelay.relay.api.deps import ActiveCallerDep, CallerDep, ClientIpDep, ServicesDep
from codexrelay.relay.api.schemas import UserEnvelope
from codexrelay.relay.audit import ref, session_actor
from codexrelay.relay.push.notify import notify
from codexrelay.relay.services import Services
from codexrelay.relay.views import PasskeyOut, UserOut, View
from codexrelay.settings import CamelModel

router = APIRouter(prefix="/api/v1", tags=["passkeys"])

Label = Annotated[str, Field(max_length=people.LABEL_MAX)]
ChallengeId = Annotated[str, Field(min_length=1, max_length=64)]


class RegisterOptionsBody(CamelModel):
    label: Label | None = None


class RegisterVerifyBody(CamelModel):
    challenge_id: ChallengeId
    credential: dict[str, Any]
    label: Label | None = None


class LoginOptionsBody(CamelModel):
    """Empty: a discoverable login names no account up front."""


class LoginVerifyBody(CamelModel):
    challenge_id: ChallengeId
    credential: dict[str, Any]


class RenameBody(CamelModel):
    label: Label


class OptionsOut(View):
    challenge_id: str
    public_key: dict[str, Any]


class PasskeyEnvelope(CamelModel):
    passkey: PasskeyOut


class PasskeysOut(CamelModel):
    passkeys: list[PasskeyOut]


def _rp(services: Services) -> RelyingParty:
    return RelyingParty.from_config(services.config)


@router.post("/auth/passkeys/register/options", response_model=OptionsOut)
async def register_options(
    caller: CallerDep, services: ServicesDep, body: RegisterOptionsBody | None = None
) -> OptionsOut:
    """Any session may add a passkey, an enrollment-locked one included (R21)."""
    options = passkeys.start_registration(
        services.store,
        services.passkey_challenges,
        rp=_rp(services),
        user=caller.user,
        session_id=caller.session.id,
        label=people.clean_label(body.label if body else None),
        now=services.now(),
        ttl_sec=services.config.passkey_challenge_ttl_sec,
        rand=services.rand,
    )
    return OptionsOut.of(options)


@router.post("/auth/passkeys/register/verify", status_code=201, response_model=PasskeyEnvelope)
async def register_verify(
    body: RegisterVerifyBody, caller: CallerDep, services: ServicesDep, audit: AuditDep
) -> PasskeyEnvelope:
    """Store the new passkey; an enrollment-locked user becomes active (R21)."""
    before = memberships(services, caller.user.id)
    record = passkeys.finish_registration(
        services.store,
        services.passkey_challenges,
        rp=_rp(services),
        session=caller.session,
        challenge_id=body.challenge_id,
        credential=body.credential,
        label=body.label,
        now=services.now(),
    )
    await audit.record(
        "passkey.registered", userId=caller.user.id, credential=ref(record.credential_id)
    )
    await audit.memberships_changed(caller.user.id, before)  # an invitee's first passkey
    await services.store.commit()
    # Always on: the person's other devices hear that their account gained a way in.
    user_id, session_id = caller.user.id, caller.session.id
    notify(services, "new-device", None, None, users=[user_id], exclude_session=session_id)
    return PasskeyEnvelope(passkey=PasskeyOut.of(record))


@router.post("/auth/passkeys/login/options", response_model=OptionsOut)
async def login_options(
    services: ServicesDep, address: ClientIpDep, body: LoginOptionsBody | None = None
) -> OptionsOut:
    """Anyone may start a login; it counts against the login limit (R20)."""
    del body
    services.login_limiter.hit(address)
    options = passkeys.start_login(
        services.passkey_challenges,
        rp=_rp(services),
        now=services.now(),
        ttl_sec=services.config.passkey_challenge_ttl_sec,
        rand=services.rand,
    )
    return OptionsOut.of(options)


@router.post("/auth/passkeys/login/verify", response_model=UserEnvelope)
async def login_verify(
    body: LoginVerifyBody,
    response: Response,
    services: ServicesDep,
    address: ClientIpDep,
    audit: AuditDep,
) -> UserEnvelope:
    """A verified passkey opens a ``passkey`` session (R02, R20)."""
    services.login_limiter.hit(address)
    user = passkeys.finish_login(
        services.store,
        services.passkey_challenges,
        rp=_rp(services),
        challenge_id=body.challenge_id,
        credential=body.credential,
        now=services.now(),
    )
    session = start_session(services, response, user_id=user.id, via="passkey")
    credential = ref(str(body.credential.get("id", "")))
    await audit.record("auth.passkey.login", actor=session_actor(session), credential=credential)
    await services.store.commit()
    return UserEnvelope(user=UserOut.of(user))


@router.get("/me/passkeys", response_model=PasskeysOut)
async def list_passkeys(caller: ActiveCallerDep, services: ServicesDep) -> PasskeysOut:
    """The caller's own passkeys."""
    own = people.user_passkeys(services.store, caller.user.id)
    return PasskeysOut(passkeys=[PasskeyOut.of(p) for p in own])


@router.patch("/me/passkeys/{credential_id}", response_model=PasskeyEnvelope)
async def rename_passkey(
    credential_id: str, body: RenameBody, caller: ActiveCallerDep, services: ServicesDep
) -> PasskeyEnvelope:
    """Relabel one of the caller's passkeys."""
    record = people.rename_passkey(
        services.store, user_id=caller.user.id, credential_id=credential_id, label=body.label
    )
    await services.store.commit()
    return PasskeyEnvelope(passkey=PasskeyOut.of(record))


@router.delete("/me/passkeys/{credential_id}", status_code=204)
async def revoke_passkey(
    credential_id: str, caller: ActiveCallerDep, services: ServicesDep, audit: AuditDep
) -> Response:
    """Revoke one of the caller's passkeys (I2); never the last way in (409 last-passkey)."""
    people.revoke_passkeys(
        services.store,
        user_id=caller.user.id,
        credential_id=credential_id,
        now=services.now(),
        force=False,
    )
    await audit.record("passkey.revoked", userId=caller.user.id, credential=ref(credential_id))
    await services.store.commit()
    return Response(status_code=204)
