#!/usr/bin/env python3
"""Drive scopegate's development issuer with authlib, a third-party OAuth client.

Usage: authlib_flow.py <issuer-url>

Checks discovery, dynamic registration, authorization code + PKCE (S256),
the token exchange, JWT verification against the JWKS (joserfc), refresh
with rotation, client credentials and introspection. Prints one result line
per check and a final "authlib interop: N passed, M failed" line; exits
non-zero on any failure.
"""

import os
import sys
import traceback
from urllib.parse import parse_qs, urlparse

# The dev issuer only listens on loopback over plain HTTP.
os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")

import requests  # noqa: E402
from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402

REDIRECT_URI = "http://127.0.0.1:8765/callback"
RESOURCE = "https://api.example/mcp"


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: authlib_flow.py <issuer-url>", file=sys.stderr)
        return 2
    issuer = sys.argv[1]
    ctx = {}
    passed = failed = 0

    def check(name, fn):
        nonlocal passed, failed
        try:
            fn()
        except Exception as exc:  # report every failure, keep going
            failed += 1
            print(f"FAIL {name}: {exc!r}")
            traceback.print_exc(file=sys.stderr)
        else:
            passed += 1
            print(f"ok   {name}")

    def discovery():
        meta = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).json()
        assert meta["issuer"] == issuer, meta["issuer"]
        assert "S256" in meta["code_challenge_methods_supported"]
        for scope in ("read", "write", "mcp"):
            assert scope in meta["scopes_supported"], scope
        oidc = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=10).json()
        assert oidc["jwks_uri"] == meta["jwks_uri"]
        ctx["meta"] = meta

    def registration():
        meta = ctx["meta"]
        resp = requests.post(
            meta["registration_endpoint"],
            json={
                "redirect_uris": [REDIRECT_URI],
                "token_endpoint_auth_method": "none",
                "client_name": "authlib interop",
                "scope": "read write mcp",
            },
            timeout=10,
        )
        assert resp.status_code == 201, resp.text
        client = resp.json()
        assert "client_secret" not in client
        assert client["grant_types"] == ["authorization_code", "refresh_token"]
        ctx["public_id"] = client["client_id"]

    def code_flow():
        meta = ctx["meta"]
        session = OAuth2Session(
            ctx["public_id"],
            redirect_uri=REDIRECT_URI,
            scope="read mcp",
            code_challenge_method="S256",
            token_endpoint_auth_method="none",
        )
        verifier = generate_token(64)
        url, state = session.create_authorization_url(
            meta["authorization_endpoint"], code_verifier=verifier, resource=RESOURCE
        )
        resp = requests.get(url, allow_redirects=False, timeout=10)
        assert resp.status_code == 302, resp.text
        location = resp.headers["Location"]
        params = parse_qs(urlparse(location).query)
        assert params["state"] == [state], params
        assert params["iss"] == [issuer], params
        assert params["code"][0]
        token = session.fetch_token(
            meta["token_endpoint"], authorization_response=location, code_verifier=verifier
        )
        assert token["token_type"].lower() == "bearer"
        assert token["scope"] == "read mcp"
        assert token.get("refresh_token")
        ctx["session"] = session
        ctx["token"] = token

    def jwt_verifies():
        from joserfc import jwt
        from joserfc.jwk import KeySet

        jwks = requests.get(ctx["meta"]["jwks_uri"], timeout=10).json()
        decoded = jwt.decode(ctx["token"]["access_token"], KeySet.import_key_set(jwks))
        assert decoded.header["typ"] == "at+jwt", decoded.header
        claims = decoded.claims
        assert claims["iss"] == issuer
        assert claims["aud"] == RESOURCE
        assert claims["scope"] == "read mcp"
        assert claims["client_id"] == ctx["public_id"]

    def refresh():
        session = ctx["session"]
        old = ctx["token"]
        new = session.refresh_token(ctx["meta"]["token_endpoint"], refresh_token=old["refresh_token"])
        assert new["access_token"] != old["access_token"]
        assert new["refresh_token"] != old["refresh_token"], "refresh tokens rotate"
        ctx["refreshed"] = new
        # The rotated-out refresh token must not work again.
        replay = requests.post(
            ctx["meta"]["token_endpoint"],
            data={
                "grant_type": "refresh_token",
                "refresh_token": old["refresh_token"],
                "client_id": ctx["public_id"],
            },
            timeout=10,
        )
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant", replay.text
        ctx["family_revoked"] = True

    def confidential_introspection():
        meta = ctx["meta"]
        resp = requests.post(
            meta["registration_endpoint"],
            json={"grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic"},
            timeout=10,
        )
        assert resp.status_code == 201, resp.text
        client = resp.json()
        rs = OAuth2Session(client["client_id"], client["client_secret"], scope="read")
        own = rs.fetch_token(meta["token_endpoint"], grant_type="client_credentials")
        assert own["scope"] == "read"
        info = rs.introspect_token(meta["introspection_endpoint"], token=own["access_token"]).json()
        assert info["active"] is True and info["client_id"] == client["client_id"], info
        # The refreshed token's family was revoked by the replay above.
        stale = rs.introspect_token(
            meta["introspection_endpoint"], token=ctx["refreshed"]["access_token"]
        ).json()
        assert stale == {"active": False}, stale
        unauthenticated = requests.post(
            meta["introspection_endpoint"], data={"token": own["access_token"]}, timeout=10
        )
        assert unauthenticated.status_code == 401, unauthenticated.text

    check("discovery", discovery)
    check("dynamic client registration", registration)
    check("authorization code + PKCE + token exchange", code_flow)
    check("access token JWT verifies against JWKS", jwt_verifies)
    check("refresh with rotation", refresh)
    check("client credentials + introspection", confidential_introspection)

    print(f"authlib interop: {passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
