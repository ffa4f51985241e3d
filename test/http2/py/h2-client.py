"""An RFC 8441 client that is not Node's: python3-h2 (HTTP/2) and python3-wsproto (RFC 6455
frames), the extended CONNECT written by hand, for test/http2/hypercorn.test.ts. It opens one TLS
connection (ALPN h2, trusting the repo's test certificate) to our serve({ http2 }) and prints one
JSON line per step ({"step": NAME, ...}) on stdout. Its receive window is 4 KiB, so the server's
sends wait for its WINDOW_UPDATEs.

argv: PORT CA_FILE

Two WebSockets on the one connection, interleaved: "a" (chat.v1, chat.v2 offered, with
permessage-deflate) and "b" (no subprotocol, no extension). Then a CONNECT with a refused Origin,
a ping each way, a close the server starts on "b" (text "close-me") and one the client starts on
"a" (4001 "py bye ✓").
"""
import json
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events
import h2.settings
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, Pong, TextMessage
from wsproto.extensions import PerMessageDeflate

ORIGIN = "https://py.example"


def report(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


class Stream:
    def __init__(self):
        self.response = None
        self.ws = None
        self.events = []
        self.ended = False
        self.reset = None
        self.body = b""


class Client:
    def __init__(self, port, ca):
        context = ssl.create_default_context(cafile=ca)
        context.set_alpn_protocols(["h2"])
        self.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        self.alpn = self.sock.selected_alpn_protocol()
        self.authority = f"127.0.0.1:{port}"
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        # A small receive window (the default is 65535): what the server sends waits for our
        # WINDOW_UPDATEs, a slow reader as seen by the server's flow control.
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 4096})
        self.h2.initiate_connection()
        self.flush()
        self.streams = {}
        self.settings = False

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                self.settings = True
            elif isinstance(event, h2.events.ResponseReceived):
                self.streams[event.stream_id].response = dict(event.headers)
            elif isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                st = self.streams[event.stream_id]
                if st.ws is None:
                    st.body += event.data
                elif event.data:
                    # (Not the empty DATA frame that carries an END_STREAM: wsproto, closed by
                    # then, raises on any data, even none. Bytes after the close frame would raise.)
                    st.ws.receive_data(event.data)
                    st.events.extend(st.ws.events())
            elif isinstance(event, h2.events.StreamEnded):
                self.streams[event.stream_id].ended = True
            elif isinstance(event, h2.events.StreamReset):
                self.streams[event.stream_id].reset = event.error_code
        self.flush()

    def wait(self, condition):
        while not condition():
            self.pump()

    def connect(self, path, protocols=(), deflate=False, origin=ORIGIN):
        """Extended CONNECT (RFC 8441 §4); returns the stream id and its Stream."""
        stream_id = self.h2.get_next_available_stream_id()
        st = self.streams[stream_id] = Stream()
        headers = [
            (":method", "CONNECT"),
            (":protocol", "websocket"),
            (":scheme", "https"),
            (":path", path),
            (":authority", self.authority),
            ("sec-websocket-version", "13"),
            ("origin", origin),
        ]
        if protocols:
            headers.append(("sec-websocket-protocol", ", ".join(protocols)))
        if deflate:
            headers.append(("sec-websocket-extensions", "permessage-deflate; client_max_window_bits"))
        self.h2.send_headers(stream_id, headers)
        self.flush()
        self.wait(lambda: st.response is not None or st.reset is not None)
        if st.response is not None and st.response[":status"] == "200":
            extensions = []
            answered = st.response.get("sec-websocket-extensions")
            if answered:
                ext = PerMessageDeflate()
                ext.finalize(answered)
                extensions.append(ext)
            st.ws = Connection(ConnectionType.CLIENT, extensions=extensions)
        else:
            self.wait(lambda: st.ended or st.reset is not None)
        return stream_id, st

    def send(self, stream_id, event, frame_size=None):
        """`frame_size`: the most bytes per DATA frame (the WebSocket frames split across them)."""
        data = self.streams[stream_id].ws.send(event)
        while data:
            window = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size, frame_size or 1 << 30)
            if window <= 0:
                self.pump()
                continue
            self.h2.send_data(stream_id, data[:window])
            data = data[window:]
            self.flush()

    def next_event(self, stream_id):
        st = self.streams[stream_id]
        self.wait(lambda: st.events)
        return st.events.pop(0)

    def recv(self, stream_id, on_ping=None):
        """The next whole message; pings on the way are answered (and passed to on_ping)."""
        parts = []
        while True:
            event = self.next_event(stream_id)
            if isinstance(event, Ping):
                self.send(stream_id, event.response())
                if on_ping:
                    on_ping(event.payload)
            elif isinstance(event, Message):
                parts.append(event.data)
                if event.message_finished:
                    return "".join(parts) if isinstance(event, TextMessage) else b"".join(parts)
            else:
                return event


def main(port, ca):
    c = Client(port, ca)
    c.wait(lambda: c.settings)
    report("settings", alpn=c.alpn, enable_connect_protocol=c.h2.remote_settings.enable_connect_protocol)

    a, sa = c.connect("/chat?n=a", protocols=["chat.v1", "chat.v2"], deflate=True)
    b, sb = c.connect("/chat?n=b")
    for name, st in (("a", sa), ("b", sb)):
        r = st.response
        report("open", name=name, status=r[":status"], protocol=r.get("sec-websocket-protocol"), extensions=r.get("sec-websocket-extensions"), accept=r.get("sec-websocket-accept"))

    # Interleaved on the one connection: both sent before either answer is read.
    big_text = "grüße ✓ " * 130_000
    big_bytes = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(300_000))
    c.send(a, TextMessage(data=big_text))
    c.send(b, BytesMessage(data=big_bytes))
    c.send(a, TextMessage(data="héllo ✓"))
    c.send(b, BytesMessage(data=b""))
    report("echo", a_big=c.recv(a) == big_text, b_big=c.recv(b) == big_bytes, a_small=c.recv(a), b_empty=c.recv(b) == b"")
    # One DATA frame per byte: a WebSocket frame's header and payload split every way.
    c.send(b, TextMessage(data="one byte per DATA frame ✓"), frame_size=1)
    report("split", echo=c.recv(b))

    _, refused = c.connect("/chat?n=refused", origin="https://evil.example")
    report("refused", status=refused.response[":status"] if refused.response else None, ended=refused.ended, reset=refused.reset)

    c.send(a, Ping(payload=b"py-ping"))
    pong = c.recv(a)
    report("pong", ok=isinstance(pong, Pong) and pong.payload == b"py-ping")
    pings = []
    c.send(a, TextMessage(data="ping me"))
    echoed = c.recv(a, on_ping=pings.append)
    report("pinged", pings=[p.decode() for p in pings], echo=echoed)

    # The server closes "b": we answer, and the server (RFC 6455 §7.1.1) ends the stream first.
    c.send(b, TextMessage(data="close-me"))
    close = c.recv(b)
    c.send(b, close.response())
    c.wait(lambda: sb.ended or sb.reset is not None)
    c.h2.end_stream(b)
    c.flush()
    report("server-closed", code=close.code, reason=close.reason, ended=sb.ended, reset=sb.reset)

    # We close "a": the server answers with the same code and reason, then ends the stream.
    c.send(a, CloseConnection(code=4001, reason="py bye ✓"))
    reply = c.recv(a)
    c.wait(lambda: sa.ended or sa.reset is not None)
    c.h2.end_stream(a)
    c.flush()
    report("client-closed", code=reply.code, reason=reply.reason, ended=sa.ended, reset=sa.reset)

    c.h2.close_connection()
    c.flush()
    c.sock.close()


main(int(sys.argv[1]), sys.argv[2])
