"""/v1/tokens: the API's bearer tokens (wizd.tokens), for an admin token of every queue:
create (the secret is in this one answer), list, revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from wizd.http import schemas as S
from wizd.http.auth import Access, Caller, Client, allow
from wizd.token_model import Role

router = APIRouter(prefix="/tokens", tags=["tokens"])
TokenId = Annotated[str, Path(min_length=1, max_length=20, description="8 hex digits")]


class TokenIn(S.Strict):
    role: Role
    queues: list[str] | None = Field(default=None, description="null: every queue")
    name: str | None = Field(default=None, description="what it is for")


class TokenOut(BaseModel):
    id: str
    name: str | None
    role: Role
    queues: list[str] | None
    created_at: datetime
    revoked_at: datetime | None


class NewTokenOut(BaseModel):
    token: TokenOut
    secret: str = Field(description="Authorization: Bearer <secret>; shown this once only")


def access_of(request: Request) -> Access:
    found: Access = request.app.state.access
    return found


@router.post("", status_code=201, response_model=NewTokenOut, summary="Make a token")
async def create(body: TokenIn, request: Request, q: Client, token: Caller) -> Response:
    allow(token, Role.ADMIN, None)
    made, secret = await q.create_token(body.role, body.queues, body.name)
    access_of(request).forget()  # the first token closes an open server now, not in seconds
    return JSONResponse({"token": made.to_dict(), "secret": secret}, status_code=201)


@router.get("", response_model=list[TokenOut], summary="Every token, revoked ones too")
async def tokens(q: Client, token: Caller) -> Response:
    allow(token, Role.ADMIN, None)
    return JSONResponse([t.to_dict() for t in await q.tokens()])


@router.delete(
    "/{token_id}", response_model=TokenOut, summary="Revoke a token: it works no more, at once"
)
async def revoke(token_id: TokenId, request: Request, q: Client, token: Caller) -> Response:
    allow(token, Role.ADMIN, None)
    revoked = await q.revoke_token(token_id)
    access_of(request).forget()
    return JSONResponse(revoked.to_dict())
