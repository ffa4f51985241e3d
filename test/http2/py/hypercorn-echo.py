"""An ASGI WebSocket echo app served by Debian's hypercorn (python3-hypercorn 0.13, on python3-h2
and python3-wsproto) for test/http2/hypercorn.test.ts: an independent RFC 8441 server.

Listens on 127.0.0.1 twice: TLS (ALPN h2 and http/1.1, the repo's test certificate) and cleartext
(HTTP/1.1, and h2c with prior knowledge). Prints {"tls": PORT, "clear": PORT, "hypercorn": VERSION}
on stdout once listening, then one JSON line per WebSocket that ends ({"event": "disconnect", ...}).
Exits when stdin closes.

argv: CERT KEY [PING_INTERVAL] (seconds between hypercorn's own pings; none if absent).

Paths:
  /refuse   websocket.close before accept (hypercorn answers 403)
  /deny     ASGI websocket.http.response: 401, x-why: nope, body "no entry"
  /redirect ASGI websocket.http.response: 302 to the query's "to"
  anything else: accepted, with the first of the app's subprotocols (chat.v2, chat.v1) that the
  client offered, and a header x-app: echo. Every message is echoed (text as text, bytes as bytes), except the texts
  "!scope" (answered with the ASGI scope as JSON: http_version, scheme, path, query, headers,
  subprotocols, and the request's HTTP/2 pseudo-headers, null over HTTP/1.1) and "!close CODE REASON" (the app closes with that code and reason).
"""
import asyncio
import contextvars
import json
import socket
import sys
from importlib.metadata import version
from urllib.parse import parse_qs

import hypercorn.protocol.h2 as hypercorn_h2
from hypercorn.asyncio import serve
from hypercorn.config import Config

# The ASGI scope has no pseudo-headers (hypercorn turns :authority into host and drops the rest).
# To report the :method, :protocol, :scheme, :path and :authority the client sent, the function
# hypercorn's HTTP/2 protocol calls on each request's header block records them in a context
# variable before doing its work unchanged; the app's task, started right after, inherits it.
PSEUDO = contextvars.ContextVar("pseudo", default=None)
_filter_pseudo_headers = hypercorn_h2.filter_pseudo_headers


def _recording_pseudo_headers(headers):
    PSEUDO.set([[n.decode("latin-1"), v.decode("latin-1")] for n, v in headers if n.startswith(b":")])
    return _filter_pseudo_headers(headers)


hypercorn_h2.filter_pseudo_headers = _recording_pseudo_headers

APP_PROTOCOLS = ["chat.v2", "chat.v1"]


def report(**fields):
    print(json.dumps(fields), flush=True)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"not here"})
        return
    message = await receive()
    assert message["type"] == "websocket.connect"
    path = scope["path"]
    query = scope["query_string"].decode("latin-1")
    if path == "/refuse":
        await send({"type": "websocket.close"})
        return
    if path == "/deny":
        await send({
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"text/plain"), (b"x-why", b"nope")],
        })
        await send({"type": "websocket.http.response.body", "body": b"no entry"})
        return
    if path == "/redirect":
        to = parse_qs(query)["to"][0]
        await send({
            "type": "websocket.http.response.start",
            "status": 302,
            "headers": [(b"location", to.encode("latin-1"))],
        })
        await send({"type": "websocket.http.response.body", "body": b""})
        return
    chosen = next((p for p in APP_PROTOCOLS if p in scope["subprotocols"]), None)
    await send({"type": "websocket.accept", "subprotocol": chosen, "headers": [(b"x-app", b"echo")]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            report(event="disconnect", path=path, query=query, http_version=scope["http_version"], code=message.get("code"))
            return
        text = message.get("text")
        if text == "!scope":
            await send({"type": "websocket.send", "text": json.dumps({
                "http_version": scope["http_version"],
                "scheme": scope["scheme"],
                "path": path,
                "query": query,
                "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]],
                "subprotocols": scope["subprotocols"],
                "pseudo": PSEUDO.get(),
            })})
        elif text is not None and text.startswith("!close "):
            _, code, reason = text.split(" ", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
        elif text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


def listening_socket():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(100)
    return sock


async def main(cert, key, ping_interval):
    tls, clear = listening_socket(), listening_socket()
    config = Config()
    config.certfile = cert
    config.keyfile = key
    config.bind = [f"fd://{tls.fileno()}"]
    config.insecure_bind = [f"fd://{clear.fileno()}"]
    config.websocket_ping_interval = ping_interval
    config.accesslog = None
    config.errorlog = "-"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def watch_stdin():
        await loop.run_in_executor(None, sys.stdin.read)
        stop.set()

    asyncio.ensure_future(watch_stdin())
    server = asyncio.ensure_future(serve(app, config, shutdown_trigger=stop.wait))
    report(tls=tls.getsockname()[1], clear=clear.getsockname()[1], hypercorn=version("hypercorn"))
    await server


asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else None))
