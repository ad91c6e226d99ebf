"""Dashboard routing: session and CSRF checks, HTML error pages, sign-in and sign-out."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from perfmark.dashboard.auth import (
    SESSION_MAX_AGE_S,
    DashboardSession,
    csrf_matches,
    end_session,
    load_session,
    sign_in,
)
from perfmark.dashboard.rendering import DASHBOARD_PREFIX, SECURITY_HEADERS, render
from perfmark.errors import AuthenticationError, PerfmarkError
from perfmark.services.container import Container
from perfmark.web.api.deps import get_container

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "SIGNIN_COOKIE",
    "CsrfRefused",
    "CurrentSession",
    "DashboardRoute",
    "SignInRequired",
    "add_sign_in_routes",
    "current_session",
    "form_text",
    "is_htmx",
    "safe_next",
    "see_other",
]

SESSION_COOKIE = "pm_session"
#: Sign-in forms carry a token matched against this cookie (no session exists yet).
SIGNIN_COOKIE = "pm_signin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SIGN_IN_PATH = f"{DASHBOARD_PREFIX}/sign-in"
_SIGNIN_TOKEN_BYTES = 24
_SIGNIN_COOKIE_MAX_AGE_S = 3600


class SignInRequired(Exception):
    """No live session: the user signs in, then comes back to `next_path`."""

    def __init__(self, next_path: str, *, expired: bool = False) -> None:
        super().__init__(next_path)
        self.next_path = next_path
        self.expired = expired


class CsrfRefused(Exception):
    """An unsafe request without the session's CSRF token."""


def is_htmx(request: Request) -> bool:
    """Whether HTMX sent the request (it then swaps a fragment instead of loading a page)."""
    return request.headers.get("hx-request") == "true"


def safe_next(value: str | None) -> str:
    """A path inside the dashboard to return to; anything else (another site) is dropped."""
    if not value:
        return f"{DASHBOARD_PREFIX}/"
    parts = urlsplit(value)
    if (
        parts.scheme
        or parts.netloc
        or "\\" in value
        or not parts.path.startswith(DASHBOARD_PREFIX)
        or parts.path.startswith(SIGN_IN_PATH)
    ):
        return f"{DASHBOARD_PREFIX}/"
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _return_path(request: Request) -> str:
    """Where to come back after signing in: this page, or for a form post the page it was on."""
    if request.method not in UNSAFE_METHODS:
        query = request.url.query
        return request.url.path + (f"?{query}" if query else "")
    origin = request.headers.get("hx-current-url") or request.headers.get("referer") or ""
    parts = urlsplit(origin)
    return safe_next(parts.path + (f"?{parts.query}" if parts.query else ""))


def see_other(path: str) -> RedirectResponse:
    """A 303 to a page (after a form post: the browser then loads it with GET)."""
    return RedirectResponse(path, status_code=303, headers=SECURITY_HEADERS)


def form_text(form: Any, name: str) -> str:
    """A form field as text ("" when absent; uploaded files are not accepted)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _secure_cookies(container: Container) -> bool:
    return container.settings.base_url.lower().startswith("https://")


async def current_session(request: Request) -> DashboardSession:
    """The signed-in user; on unsafe methods the CSRF token must match too."""
    container = get_container(request)
    token = request.cookies.get(SESSION_COOKIE)
    session = await run_in_threadpool(load_session, container, token)
    if session is None:
        # A cookie that names no live session: it expired or was signed out elsewhere.
        raise SignInRequired(_return_path(request), expired=token is not None)
    if request.method in UNSAFE_METHODS:
        presented = request.headers.get(CSRF_HEADER)
        if not presented:
            presented = form_text(await request.form(), CSRF_FIELD)
        if not csrf_matches(session, presented):
            raise CsrfRefused()
    request.state.dashboard_session = session
    return session


CurrentSession = Annotated[DashboardSession, Depends(current_session)]


def _sign_in_redirect(request: Request, next_path: str, expired: bool) -> Response:
    location = f"{SIGN_IN_PATH}?next={quote(next_path, safe='/')}"
    if expired:
        location += "&expired=1"
    if is_htmx(request):
        # HTMX would swap a redirect's page into the fragment; this makes it load the page.
        return Response(status_code=401, headers={"HX-Redirect": location, **SECURITY_HEADERS})
    return RedirectResponse(location, status_code=303, headers=SECURITY_HEADERS)


def _error_page(request: Request, status: int, title: str, message: str) -> Response:
    template = "_flash.html" if is_htmx(request) else "error.html"
    response = render(
        request,
        template,
        {"title": title, "message": message, "status": status, "kind": "error"},
        status_code=status,
    )
    if is_htmx(request):
        response.headers["HX-Retarget"] = "#flash"
        response.headers["HX-Reswap"] = "innerHTML"
    return response


class DashboardRoute(APIRoute):
    """A route whose errors are pages, not JSON: sign-in redirects, 403, 404, 409 and 422."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except SignInRequired as exc:
                return _sign_in_redirect(request, exc.next_path, exc.expired)
            except CsrfRefused:
                return _error_page(
                    request,
                    403,
                    "Form expired",
                    "This form's security token is missing or out of date (perhaps you signed "
                    "in again in another tab). Reload the page and send it again.",
                )
            except PerfmarkError as exc:
                return _error_page(
                    request, exc.status, _ERROR_TITLES.get(exc.status, "Error"), exc.message
                )
            except RequestValidationError as exc:
                fields = ", ".join(
                    str(error["loc"][-1]) for error in exc.errors() if error.get("loc")
                )
                return _error_page(
                    request,
                    422,
                    "Invalid address",
                    f"These parameters of the address are not valid: {fields or 'unknown'}. "
                    "Go back and use the page's own links and forms.",
                )

        return handler


_ERROR_TITLES = {
    400: "Bad request",
    401: "Sign-in needed",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    422: "Invalid input",
}


def add_sign_in_routes(router: APIRouter) -> None:
    """Sign-in form, its submission, and sign-out."""

    @router.get("/sign-in", include_in_schema=False)
    def sign_in_form(
        request: Request,
        container: Annotated[Container, Depends(get_container)],
        next: str | None = None,
        expired: bool = False,
    ) -> Response:
        session = load_session(container, request.cookies.get(SESSION_COOKIE))
        if session is not None:
            return see_other(safe_next(next))
        return _sign_in_page(request, container, safe_next(next), expired=expired)

    @router.post("/sign-in", include_in_schema=False)
    async def sign_in_submit(
        request: Request, container: Annotated[Container, Depends(get_container)]
    ) -> Response:
        form = await request.form()
        email, password = form_text(form, "email"), form_text(form, "password")
        next_path = safe_next(form_text(form, "next"))
        expected = request.cookies.get(SIGNIN_COOKIE, "")
        presented = form_text(form, CSRF_FIELD)
        if not expected or not hmac.compare_digest(expected.encode(), presented.encode()):
            raise CsrfRefused()
        try:
            token, _session = await run_in_threadpool(sign_in, container, email, password)
        except AuthenticationError as exc:
            return _sign_in_page(
                request, container, next_path, email=email, error=exc.message, status=401
            )
        response = see_other(next_path)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            max_age=SESSION_MAX_AGE_S,
            path="/",
            secure=_secure_cookies(container),
            httponly=True,
            samesite="lax",
        )
        response.delete_cookie(SIGNIN_COOKIE, path=SIGN_IN_PATH)
        return response

    @router.post("/sign-out", include_in_schema=False)
    def sign_out(
        request: Request,
        session: CurrentSession,
        container: Annotated[Container, Depends(get_container)],
    ) -> Response:
        end_session(container, request.cookies.get(SESSION_COOKIE))
        response = see_other(SIGN_IN_PATH)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


def _sign_in_page(
    request: Request,
    container: Container,
    next_path: str,
    *,
    email: str = "",
    error: str = "",
    expired: bool = False,
    status: int = 200,
) -> Response:
    token = secrets.token_urlsafe(_SIGNIN_TOKEN_BYTES)
    response = render(
        request,
        "sign_in.html",
        {
            "title": "Sign in",
            "next": next_path,
            "email": email,
            "error": error,
            "expired": expired,
            "signin_token": token,
        },
        status_code=status,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        max_age=_SIGNIN_COOKIE_MAX_AGE_S,
        path=SIGN_IN_PATH,
        secure=_secure_cookies(container),
        httponly=True,
        samesite="strict",
    )
    return response
