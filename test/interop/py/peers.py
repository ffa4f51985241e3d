"""One WebSocket peer for test/interop/python-peers.test.ts, driven over stdin and reporting on
stdout, both as JSON lines. Three independent implementations behind the same commands: aiohttp,
tornado and autobahn (its asyncio flavour), each in either role.

argv: LIB(aiohttp|tornado|autobahn) ROLE(server|client) CONFIG(JSON)
  server CONFIG: {"deflate": null | {...}, "maxSize": bytes}; prints {"ev": "listening", "port": N}
    on 127.0.0.1, then echoes every message back with its type on every connection it accepts,
    and agrees to the subprotocol "chat.v1" when offered it. Server "deflate" options per library:
    aiohttp: {} (on; it has no parameters of its own, it follows the client's offer);
    tornado: {} (on; it grants the client's offer as made); autobahn: {"requestNoContextTakeover":
    bool, "requestMaxWindowBits": 0|8..15, "noContextTakeover": bool, "windowBits": 8..15}.
  client CONFIG: {} (connections are opened by "connect" commands; they do not echo).

Commands (stdin), "id" naming the connection (the server numbers those it accepts from 1; a client
connection gets the id its "connect" gives):
  {"op": "connect", "id", "url", "protocols": [...], "deflate": null | {...}, "maxSize"}
    client "deflate" options: aiohttp {"compress": 9..15} (15: its default offer); tornado {}
    (its fixed offer); autobahn {"requestNoContextTakeover": bool, "requestMaxWindowBits": int}
  {"op": "send", "id", "text": str} or {"op": "send", "id", "b64": str}
  {"op": "fragments", "id", "text"|"b64", "size": bytes per frame}: one message in frames
  {"op": "badutf8", "id"}: a text message that is not UTF-8 (frame-level access)
  {"op": "ping", "id", "payload": str}
  {"op": "close", "id", "code": int|null, "reason": str|null} (null code: a close frame without one)
  {"op": "burst", "id", "n": N}: sends "burst 0" .. "burst N-1", then closes with 1000 "burst done"
Events (stdout): open {id, protocol, extensions (the Sec-WebSocket-Extensions response header),
  deflate (the library's own view of what was agreed, or null)}; message {id, text|b64}; ping and
  pong {id, payload}; closed {id, code, reason} (the close frame it received, as the library reports
  it); error {id, op, message} when a command cannot be done (e.g. the library cannot send it).
"""
import asyncio
import base64
import json
import sys
import threading

LIB, ROLE = sys.argv[1], sys.argv[2]
CONFIG = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
BAD_UTF8 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"  # "κόσμε" and a UTF-16 surrogate


def report(ev, **fields):
    sys.stdout.write(json.dumps({"ev": ev, **fields}) + "\n")
    sys.stdout.flush()


def message_fields(data):
    if isinstance(data, str):
        return {"text": data}
    return {"b64": base64.b64encode(bytes(data)).decode("ascii")}


def payload_of(cmd):
    """The message a command carries: str for text, bytes for binary."""
    return cmd["text"] if "text" in cmd else base64.b64decode(cmd["b64"])


def as_text(payload):
    return bytes(payload).decode("utf-8", "replace")


def pieces(data, size):
    return [data[i:i + size] for i in range(0, len(data), size)] or [data]


conns = {}
next_server_id = [0]


def server_id():
    next_server_id[0] += 1
    return next_server_id[0]


class Unsupported(Exception):
    pass


# ---- aiohttp ------------------------------------------------------------------------------------

if LIB == "aiohttp":
    import aiohttp
    from aiohttp import web, WSMsgType

    class AioConn:
        """aiohttp: autoping off so that pings and pongs are seen (answered here); autoclose on."""

        def __init__(self, cid, ws, echo):
            self.cid, self.ws, self.echo = cid, ws, echo
            self.close_done = None
            self.received = 0
            self.received_changed = asyncio.Event()

        async def run(self):
            ws = self.ws
            code, reason = None, None
            while True:
                msg = await ws.receive()
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    report("message", id=self.cid, **message_fields(msg.data))
                    self.received += 1
                    self.received_changed.set()
                    if self.echo:
                        await (ws.send_str(msg.data) if msg.type == WSMsgType.TEXT else ws.send_bytes(msg.data))
                elif msg.type == WSMsgType.PING:
                    report("ping", id=self.cid, payload=as_text(msg.data))
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    report("pong", id=self.cid, payload=as_text(msg.data))
                elif msg.type == WSMsgType.CLOSE:
                    # The peer's close: aiohttp has answered it (autoclose) with 1000 and no reason.
                    code, reason = msg.data, msg.extra
                    break
                else:  # CLOSING (our own close() broke the loop), CLOSED or ERROR
                    break
            if self.close_done is not None:
                # Our close() broke the loop: the handler must not return before it is done, or
                # aiohttp closes the response meanwhile with a close frame of its own (1000).
                await self.close_done
            else:
                report("closed", id=self.cid, code=code if code is not None else ws.close_code, reason=reason)

        async def send(self, payload):
            await (self.ws.send_str(payload) if isinstance(payload, str) else self.ws.send_bytes(payload))

        async def fragments(self, payload, size):
            # WebSocketWriter._send_frame sets FIN on every frame: aiohttp cannot fragment.
            raise Unsupported("aiohttp always sends a message in one frame")

        async def badutf8(self):
            await self.ws._writer._send_frame(BAD_UTF8, WSMsgType.TEXT)

        async def ping(self, payload):
            await self.ws.ping(payload.encode())

        async def close(self, code, reason):
            if code is None:
                raise Unsupported("aiohttp's close() always sends a code (default 1000)")
            self.close_done = asyncio.get_running_loop().create_future()
            await self.ws.close(code=code, message=(reason or "").encode())
            self.close_done.set_result(None)
            # close() called while receive() is pending does not wait for the answer (see QUIRKS in
            # the test): close_code stays None.
            report("closed", id=self.cid, code=self.ws.close_code, reason=None)

    async def aiohttp_server():
        deflate = CONFIG.get("deflate")

        async def handler(request):
            ws = web.WebSocketResponse(protocols=["chat.v1"], compress=deflate is not None,
                                       autoping=False, max_msg_size=CONFIG.get("maxSize", 2**26))
            await ws.prepare(request)
            cid = server_id()
            conn = conns[cid] = AioConn(cid, ws, True)
            report("open", id=cid, protocol=ws.ws_protocol,
                   extensions=ws.headers.get("Sec-WebSocket-Extensions", ""),
                   deflate={"compress": ws._writer.compress, "notakeover": ws._writer.notakeover} if ws.compress else None)
            await conn.run()
            return ws

        app = web.Application()
        app.router.add_get("/", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        report("listening", port=site._server.sockets[0].getsockname()[1])

    session = [None]

    async def aiohttp_connect(cmd):
        if session[0] is None:
            session[0] = aiohttp.ClientSession()
        deflate = cmd.get("deflate")
        ws = await session[0].ws_connect(cmd["url"], protocols=cmd.get("protocols") or (),
                                         compress=deflate.get("compress", 15) if deflate is not None else 0,
                                         autoping=False, max_msg_size=cmd.get("maxSize", 2**26))
        conn = conns[cmd["id"]] = AioConn(cmd["id"], ws, False)
        report("open", id=cmd["id"], protocol=ws.protocol,
               extensions=ws._response.headers.get("Sec-WebSocket-Extensions", ""),
               deflate={"compress": ws.compress, "notakeover": ws.client_notakeover} if ws.compress else None)
        asyncio.ensure_future(conn.run())

# ---- tornado ------------------------------------------------------------------------------------

if LIB == "tornado":
    import tornado.httpclient
    import tornado.web
    import tornado.websocket

    class TornadoConn:
        def __init__(self, cid, target):
            self.cid, self.target = cid, target  # the handler (server) or the client connection

        @property
        def protocol(self):
            return self.target.ws_connection if hasattr(self.target, "ws_connection") else self.target.protocol

        async def send(self, payload):
            await self.target.write_message(payload, binary=not isinstance(payload, str))

        async def fragments(self, payload, size):
            # No public API: WebSocketProtocol13._write_frame(fin, opcode, data) writes one frame.
            data = payload.encode() if isinstance(payload, str) else payload
            parts = pieces(data, size)
            for i, part in enumerate(parts):
                opcode = (0x1 if isinstance(payload, str) else 0x2) if i == 0 else 0x0
                await self.protocol._write_frame(i == len(parts) - 1, opcode, part)

        async def badutf8(self):
            await self.protocol._write_frame(True, 0x1, BAD_UTF8)

        async def ping(self, payload):
            self.target.ping(payload.encode())

        async def close(self, code, reason):
            self.target.close(code, reason)

    def closed_fields(target):
        return {"code": target.close_code, "reason": target.close_reason}

    class Handler(tornado.websocket.WebSocketHandler):
        def select_subprotocol(self, subprotocols):
            return "chat.v1" if "chat.v1" in subprotocols else None

        def get_compression_options(self):
            return CONFIG.get("deflate")

        def open(self):
            self.cid = server_id()
            conns[self.cid] = TornadoConn(self.cid, self)
            compressor = self.ws_connection._compressor
            report("open", id=self.cid, protocol=self.selected_subprotocol,
                   extensions=self._headers.get("Sec-WebSocket-Extensions", ""),
                   deflate=None if compressor is None else {"persistent": compressor._compressor is not None,
                                                            "wbits": compressor._max_wbits})

        async def on_message(self, message):
            report("message", id=self.cid, **message_fields(message))
            await self.write_message(message, binary=not isinstance(message, str))

        def on_ping(self, data):
            report("ping", id=self.cid, payload=as_text(data))

        def on_pong(self, data):
            report("pong", id=self.cid, payload=as_text(data))

        def on_close(self):
            report("closed", id=self.cid, **closed_fields(self))

    async def tornado_server():
        app = tornado.web.Application([("/", Handler)], websocket_max_message_size=CONFIG.get("maxSize", 2**26))
        server = app.listen(0, "127.0.0.1")
        port = next(iter(server._sockets.values())).getsockname()[1]
        report("listening", port=port)

    class Client(tornado.websocket.WebSocketClientConnection):
        cid = None

        def on_ping(self, data):
            report("ping", id=self.cid, payload=as_text(data))

        def on_pong(self, data):
            report("pong", id=self.cid, payload=as_text(data))

        def on_ws_connection_close(self, close_code=None, close_reason=None):
            super().on_ws_connection_close(close_code, close_reason)
            report("closed", id=self.cid, **closed_fields(self))

    async def tornado_connect(cmd):
        cid = cmd["id"]

        def on_message(message):
            if message is not None:
                report("message", id=cid, **message_fields(message))

        request = tornado.httpclient.HTTPRequest(cmd["url"])
        client = Client(request, on_message_callback=on_message, compression_options=cmd.get("deflate"),
                        max_message_size=cmd.get("maxSize", 2**26), subprotocols=cmd.get("protocols") or None)
        client.cid = cid
        await client.connect_future
        conns[cid] = TornadoConn(cid, client)
        compressor = client.protocol._compressor
        report("open", id=cid, protocol=client.selected_subprotocol,
               extensions=client.headers.get("Sec-WebSocket-Extensions", ""),
               deflate=None if compressor is None else {"persistent": compressor._compressor is not None,
                                                        "wbits": compressor._max_wbits})

# ---- autobahn (asyncio) ---------------------------------------------------------------------------

if LIB == "autobahn":
    import txaio
    txaio.use_asyncio()
    from autobahn.asyncio.websocket import (WebSocketClientFactory, WebSocketClientProtocol,
                                            WebSocketServerFactory, WebSocketServerProtocol)
    from autobahn.websocket.compress import (PerMessageDeflateOffer, PerMessageDeflateOfferAccept,
                                             PerMessageDeflateResponse, PerMessageDeflateResponseAccept)

    def deflate_view(proto):
        used = [e for e in proto.websocket_extensions_in_use]
        if not used:
            return None
        e = used[0]
        return {"server_no_context_takeover": e.server_no_context_takeover,
                "client_no_context_takeover": e.client_no_context_takeover,
                "server_max_window_bits": e.server_max_window_bits,
                "client_max_window_bits": e.client_max_window_bits}

    class AutobahnConn:
        def __init__(self, cid, proto):
            self.cid, self.proto = cid, proto

        async def send(self, payload):
            self.proto.sendMessage(payload.encode() if isinstance(payload, str) else payload,
                                   isBinary=not isinstance(payload, str))

        async def fragments(self, payload, size):
            self.proto.sendMessage(payload.encode() if isinstance(payload, str) else payload,
                                   isBinary=not isinstance(payload, str), fragmentSize=size)

        async def badutf8(self):
            # sendFrame "deliberately allows to send invalid frames" (its docstring).
            self.proto.sendFrame(opcode=1, payload=BAD_UTF8)

        async def ping(self, payload):
            self.proto.sendPing(payload.encode())

        async def close(self, code, reason):
            self.proto.sendClose(code, reason)

    class Common:
        cid = None
        echo = False

        def onOpen(self):
            conns[self.cid] = AutobahnConn(self.cid, self)
            report("open", id=self.cid, protocol=self.websocket_protocol_in_use,
                   extensions=self.extensions_header(), deflate=deflate_view(self))

        def onMessage(self, payload, isBinary):
            report("message", id=self.cid, **message_fields(payload if isBinary else payload.decode("utf-8")))
            if self.echo:
                self.sendMessage(payload, isBinary)

        def onPing(self, payload):
            report("ping", id=self.cid, payload=as_text(payload))
            super().onPing(payload)  # answers with a pong

        def onPong(self, payload):
            report("pong", id=self.cid, payload=as_text(payload))

        def onClose(self, wasClean, code, reason):
            if self.cid is not None:
                report("closed", id=self.cid, code=code, reason=reason, clean=wasClean)

    class ServerProto(Common, WebSocketServerProtocol):
        echo = True

        def onConnect(self, request):
            self.cid = server_id()
            return "chat.v1" if "chat.v1" in request.protocols else None

        def extensions_header(self):
            for line in self.http_response_data.split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "sec-websocket-extensions":
                    return value.strip()
            return ""

    class ClientProto(Common, WebSocketClientProtocol):
        def extensions_header(self):
            return self.http_headers.get("sec-websocket-extensions", "")

    async def autobahn_server():
        factory = WebSocketServerFactory("ws://127.0.0.1")
        factory.protocol = ServerProto
        deflate = CONFIG.get("deflate")
        options = {"maxMessagePayloadSize": CONFIG.get("maxSize", 2**26)}
        if deflate is not None:
            def accept(offers):
                for offer in offers:
                    if isinstance(offer, PerMessageDeflateOffer):
                        return PerMessageDeflateOfferAccept(
                            offer,
                            request_no_context_takeover=deflate.get("requestNoContextTakeover", False),
                            request_max_window_bits=deflate.get("requestMaxWindowBits", 0),
                            no_context_takeover=deflate.get("noContextTakeover"),
                            window_bits=deflate.get("windowBits"))
                return None
            options["perMessageCompressionAccept"] = accept
        factory.setProtocolOptions(**options)
        server = await asyncio.get_running_loop().create_server(factory, "127.0.0.1", 0)
        report("listening", port=server.sockets[0].getsockname()[1])

    async def autobahn_connect(cmd):
        url = cmd["url"]
        factory = WebSocketClientFactory(url, protocols=cmd.get("protocols") or None)
        cid = cmd["id"]

        class Proto(ClientProto):
            pass
        Proto.cid = cid
        factory.protocol = Proto
        deflate = cmd.get("deflate")
        options = {"maxMessagePayloadSize": cmd.get("maxSize", 2**26)}
        if deflate is not None:
            options["perMessageCompressionOffers"] = [PerMessageDeflateOffer(
                accept_no_context_takeover=True, accept_max_window_bits=True,
                request_no_context_takeover=deflate.get("requestNoContextTakeover", False),
                request_max_window_bits=deflate.get("requestMaxWindowBits", 0))]
            options["perMessageCompressionAccept"] = lambda response: (
                PerMessageDeflateResponseAccept(response) if isinstance(response, PerMessageDeflateResponse) else None)
        factory.setProtocolOptions(**options)
        host, port = factory.host, factory.port
        await asyncio.get_running_loop().create_connection(factory, host, port)

# ---- commands -----------------------------------------------------------------------------------


async def run_command(cmd):
    op = cmd["op"]
    try:
        if op == "connect":
            await globals()[LIB + "_connect"](cmd)
            return
        conn = conns[cmd["id"]]
        if op == "send":
            await conn.send(payload_of(cmd))
        elif op == "fragments":
            await conn.fragments(payload_of(cmd), cmd["size"])
        elif op == "badutf8":
            await conn.badutf8()
        elif op == "ping":
            await conn.ping(cmd["payload"])
        elif op == "close":
            await conn.close(cmd.get("code"), cmd.get("reason"))
        elif op == "burst":
            # aiohttp's client (our server echoes): its close() with a receive() pending closes the
            # connection right after writing the close frame; with our echoes unread, its kernel
            # resets the connection and may drop its own last frames not yet sent. It takes the
            # echoes first, for an orderly close, which is what the test is about.
            before = conn.received if hasattr(conn, "received_changed") and not conn.echo else None
            for i in range(cmd["n"]):
                await conn.send("burst %d" % i)
            if before is not None:
                while conn.received < before + cmd["n"]:
                    conn.received_changed.clear()
                    await conn.received_changed.wait()
            await conn.close(1000, "burst done")
    except Unsupported as e:
        report("error", id=cmd.get("id"), op=op, message=str(e))
    except Exception as e:  # reported so that the test fails with the cause
        report("error", id=cmd.get("id"), op=op, message="%s: %s" % (type(e).__name__, e))


async def main():
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    def read_stdin():
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, json.loads(line))
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read_stdin, daemon=True).start()
    if ROLE == "server":
        await globals()[LIB + "_server"]()
    while True:
        cmd = await queue.get()
        if cmd is None:
            break
        # A close waits for the answer: other connections' commands go on meanwhile.
        if cmd["op"] == "close":
            asyncio.ensure_future(run_command(cmd))
        else:
            await run_command(cmd)


asyncio.run(main())
