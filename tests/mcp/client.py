"""The official MCP Python SDK client against scopegate, from an unauthenticated start.

usage: client.py URL MODE SCENARIO
  MODE      "legacy" (initialize handshake, 2025-11-25) or "2026-07-28" (per-request envelope)
  SCENARIO  "basic":  the SDK follows the 401 to the protected-resource metadata, discovers
                      the authorization server, registers, completes PKCE, lists tools and
                      calls `add`.
            "stepup": a client registered for "mcp write" first gets a token for the 401's
                      scope hint only ("mcp"), so `delete_note` is refused with 403
                      insufficient_scope; the SDK re-authorizes with the wider scope and the
                      call succeeds.

The development authorization server approves automatically: the redirect handler GETs the
authorization URL without following redirects and hands `code`/`state`/`iss` from the
Location header to the callback handler. Every line printed is JSON; the last is the result.
"""

import asyncio
import json
import sys
from urllib.parse import parse_qs, urlparse

import httpx2
from mcp.client import Client
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

REDIRECT_URI = "http://127.0.0.1:9/callback"


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


class MemoryStorage:
    def __init__(self, client_info: OAuthClientInformationFull | None = None) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info = client_info

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        emit(event="token", scope=tokens.scope)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info
        emit(event="registered", client_id=client_info.client_id, scope=client_info.scope)


class AutoApprove:
    """Redirect + callback handlers for an authorization server that approves at once."""

    def __init__(self) -> None:
        self.result: AuthorizationCodeResult | None = None

    async def redirect(self, authorization_url: str) -> None:
        query = parse_qs(urlparse(authorization_url).query)
        emit(event="authorize", scope=query.get("scope", [None])[0], resource=query.get("resource", [None])[0])
        async with httpx2.AsyncClient(follow_redirects=False) as http:
            response = await http.get(authorization_url)
        location = response.headers.get("location", "")
        params = parse_qs(urlparse(location).query)
        if "code" not in params:
            raise RuntimeError(f"authorization refused: {response.status_code} {location}")
        self.result = AuthorizationCodeResult(
            code=params["code"][0],
            state=params.get("state", [None])[0],
            iss=params.get("iss", [None])[0],
        )

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None, "callback before redirect"
        result, self.result = self.result, None
        return result


async def log_response(response: httpx2.Response) -> None:
    request = response.request
    emit(
        event="http",
        method=request.method,
        url=str(request.url),
        status=response.status_code,
        www_authenticate=response.headers.get("www-authenticate"),
        mcp_method=request.headers.get("mcp-method"),
        protocol_version=request.headers.get("mcp-protocol-version"),
    )


async def preregister(url: str, scope: str) -> OAuthClientInformationFull:
    """Registers a client allowed `scope`, the way an operator would before the first run."""
    origin = "{0.scheme}://{0.netloc}".format(urlparse(url))
    path = urlparse(url).path
    async with httpx2.AsyncClient() as http:
        prm = (await http.get(f"{origin}/.well-known/oauth-protected-resource{path}")).json()
        issuer = prm["authorization_servers"][0]
        asm = (await http.get(f"{issuer}/.well-known/oauth-authorization-server")).json()
        registered = await http.post(
            asm["registration_endpoint"],
            json={
                "client_name": "scopegate interop (pre-registered)",
                "redirect_uris": [REDIRECT_URI],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
                "scope": scope,
            },
        )
        registered.raise_for_status()
    info = OAuthClientInformationFull.model_validate(registered.json())
    emit(event="preregistered", client_id=info.client_id, scope=info.scope)
    return info


async def run(url: str, mode: str, scenario: str) -> dict:
    storage = MemoryStorage(await preregister(url, "mcp write") if scenario == "stepup" else None)
    approve = AutoApprove()
    provider = OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="scopegate interop",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=approve.redirect,
        callback_handler=approve.callback,
    )
    http = httpx2.AsyncClient(
        auth=provider,
        timeout=httpx2.Timeout(30.0, read=60.0),
        event_hooks={"response": [log_response]},
    )
    result: dict = {"mode": mode, "scenario": scenario}
    async with http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            result["protocol_version"] = client.protocol_version
            tools = await client.list_tools()
            result["tools"] = sorted(tool.name for tool in tools.tools)
            tool, args = ("add", {"a": 2, "b": 3}) if scenario == "basic" else ("delete_note", {"note_id": 1})
            called = await client.call_tool(tool, args)
            result["call"] = tool
            result["is_error"] = bool(called.is_error)
            result["text"] = " ".join(getattr(c, "text", "") for c in called.content)
    result["final_scope"] = storage.tokens.scope if storage.tokens else None
    return result


def main() -> int:
    url, mode, scenario = sys.argv[1:4]
    result = asyncio.run(run(url, mode, scenario))
    emit(event="result", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
