"""Logging in with a token's secret, and out (wizd.web.session says what the cookie holds)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from wizd.web.pages import Page, render
from wizd.web.session import (
    NOBODY,
    NONCE,
    SESSION,
    Authenticator,
    LoginNeeded,
    Viewer,
    form,
    new_nonce,
    set_cookie,
    viewer,
)

router = APIRouter(route_class=Page, include_in_schema=False)


async def maybe_viewer(request: Request) -> Viewer | None:
    try:
        return await viewer(request)
    except LoginNeeded:
        return None


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path of this site only (no open redirect)."""
    if value and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/"


def anonymous_form(request: Request) -> Viewer:
    """The login form's own CSRF binding: no session yet, so the nonce alone."""
    nonce = request.cookies.get(NONCE) or new_nonce(request)
    return Viewer(NOBODY, None, nonce)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> Response:
    seen = await maybe_viewer(request)
    if seen is not None and seen.anonymous:
        return render(request, "login.html", seen=seen, open=True, next=safe_next(next))
    return render(
        request,
        "login.html",
        seen=seen,
        form_csrf=anonymous_form(request).csrf,
        open=False,
        next=safe_next(next),
    )


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    fields = await form(request, anonymous_form(request))
    secret = (fields.get("token") or [""])[0].strip()
    target = safe_next((fields.get("next") or ["/"])[0])
    access: Authenticator = request.app.state.access
    try:
        if not secret:
            raise HTTPException(401, "give a token")
        await access.caller(secret)
    except HTTPException:
        return render(
            request,
            "login.html",
            status=401,
            seen=None,
            form_csrf=anonymous_form(request).csrf,
            open=False,
            next=target,
            error="that token is unknown, revoked or mistyped",
        )
    done = RedirectResponse(target, status_code=303)
    set_cookie(request, done, SESSION, secret)
    # A new nonce with the new session: a form of the anonymous page is not valid after it.
    set_cookie(request, done, NONCE, new_nonce(request))
    request.state.new_nonce = None
    return done


@router.post("/logout")
async def logout(request: Request) -> Response:
    current = await maybe_viewer(request)
    if current is not None:
        await form(request, current)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION, path="/")
    response.delete_cookie(NONCE, path="/")
    return response
