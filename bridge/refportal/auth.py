"""Clients and tokens of the reference portal: the demo client, ``POST /oauth/token``
(client credentials, in the form or HTTP Basic), bearer-token checks, and what the portal keeps
of a token (its digest, never the token). The functions act on a :class:`PortalService`'s
clients and tokens, under its lock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote

from bridge.refportal.wire import Reply, Request, error, not_allowed, to_json, unauthorized

if TYPE_CHECKING:
    from bridge.refportal.service import PortalService

DEMO_CLIENT = ("asiou-bridge", "demo-secret")
"""(client_id, client_secret) of the demo client."""
DEMO_CLIENTS: dict[str, tuple[str, str]] = {"demo": DEMO_CLIENT}
"""school → (client_id, client_secret) the portal accepts unless told otherwise."""


def digest(token: str) -> str:
    """What the portal keeps of a token (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(service: PortalService, request: Request) -> Reply:
    """``POST /oauth/token``: a bearer token for valid client credentials."""
    with service.lock:
        service.stats.token_requests += 1
    if request.method != "POST":
        return not_allowed("POST")
    form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
    if form.get("grant_type") != "client_credentials":
        return error(400, "badRequest", "grant_type must be client_credentials")
    client_id, secret = credentials(form, request.authorization)
    if not schools_of(service.clients, client_id, secret):
        return error(401, "authorizationFailed", "unknown client or wrong secret")
    token = secrets.token_urlsafe(32)
    expires_at = service.clock() + service.token_ttl
    with service.lock:
        service.tokens[digest(token)] = (client_id, expires_at)
        service.file.save_token(digest(token), client_id, expires_at)
    service.log.info("token issued", client_id=client_id, expires_in=service.token_ttl)
    return to_json(
        200,
        {"access_token": token, "token_type": "Bearer", "expires_in": service.token_ttl},
        ("Cache-Control", "no-store"),
    )


def schools_of(
    clients: Mapping[str, tuple[str, str]], client_id: str, secret: str | None = None
) -> list[str]:
    """Schools the client may write (checking the secret when one is given)."""
    return [
        school
        for school, (cid, known) in clients.items()
        if cid == client_id and (secret is None or hmac.compare_digest(known, secret))
    ]


def authorize(service: PortalService, request: Request) -> str | Reply:
    """The client id of a valid bearer token, or the 401 to answer."""
    token = bearer_token(request.authorization)
    if not token:
        return unauthorized("authorizationFailed", "Authorization: Bearer TOKEN is required")
    with service.lock:
        entry = service.tokens.get(digest(token))
        if entry is not None:
            service.used.add(digest(token))
    if entry is None:
        return unauthorized("authorizationFailed", "unknown token")
    if service.clock() >= entry[1]:
        return unauthorized("tokenExpired", "the token has expired; get a new one")
    return entry[0]


def is_fresh(service: PortalService, authorization: str | None) -> bool:
    """True when the request bears a known token no request has used yet (call locked)."""
    key = digest(bearer_token(authorization))
    return key in service.tokens and key not in service.used


def revoke(service: PortalService, authorization: str | None) -> None:
    """Expire the presented token now: after tokenExpired it stays expired."""
    key = digest(bearer_token(authorization))
    with service.lock:
        entry = service.tokens.get(key)
        if entry is not None:
            service.tokens[key] = (entry[0], 0.0)
            service.file.save_token(key, entry[0], 0.0)


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer TOKEN`` header, or ""."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def credentials(form: Mapping[str, str], authorization: str | None) -> tuple[str, str]:
    """client_id and client_secret from the form, or from HTTP Basic auth."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() == "basic" and "client_id" not in form:
        try:
            pair = base64.b64decode(encoded.strip(), validate=True).decode()
        except ValueError:
            return "", ""
        client_id, _, secret = pair.partition(":")
        return unquote(client_id), unquote(secret)
    return form.get("client_id", ""), form.get("client_secret", "")
