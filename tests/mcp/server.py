"""A small MCP server (the SDK's MCPServer, formerly FastMCP) over streamable HTTP.

Binds 127.0.0.1 on a free port, prints "LISTENING <port>" and serves until killed. It has no
authorization of its own: scopegate in front of it does all of that.
"""

import socket
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer

server = MCPServer("notes")
NOTES = {1: "buy milk"}


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@server.tool()
def delete_note(note_id: int) -> str:
    """Delete a note (scopegate requires the write scope for delete_*)."""
    NOTES.pop(note_id, None)
    return f"deleted {note_id}"


def main() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    app = server.streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    print(f"LISTENING {port}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
