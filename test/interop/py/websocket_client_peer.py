"""websocket-client (Debian's python3-websocket, `import websocket`) as a client peer for
test/interop/more-peers.test.ts, driven by line commands on stdin, reporting JSON lines on stdout.
The command and event formats are those of the other more-peers scripts (see more-peers.test.ts):

  connect ID URL PROTOCOLS(comma-separated) DEFLATE(ignored: websocket-client has none)
  send ID t|b BASE64 / fragments ID t|b BASE64 SIZE (frames of SIZE bytes, characters split)
  badutf8 ID / ping ID BASE64 / close ID CODE('' for none) BASE64-REASON / burst ID N

websocket-client is synchronous: one thread, a select() over stdin and every connection's socket.
A readable socket is read with recv_data_frame(control_frame=True), the library's own reassembly,
UTF-8 check and automatic pong (and its automatic answer to a close frame: 1000, no reason).
"""
import base64
import json
import os
import select
import sys

import websocket
from websocket import ABNF

BAD_UTF8 = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"  # "κόσμε" and a UTF-16 surrogate


def report(ev, **fields):
    sys.stdout.write(json.dumps({"ev": ev, **fields}) + "\n")
    sys.stdout.flush()


def b64(data):
    return base64.b64encode(bytes(data)).decode("ascii")


class Ws(websocket.WebSocket):
    """Keeps the close frame it received, which close() reads and does not return."""
    last_close = None

    def recv_frame(self):
        frame = super().recv_frame()
        if frame is not None and frame.opcode == ABNF.OPCODE_CLOSE:
            self.last_close = frame
        return frame


conns = {}


def closed(cid, ws):
    frame = ws.last_close
    code, reason = None, None
    if frame is not None and len(frame.data) >= 2:
        code = int.from_bytes(frame.data[:2], "big")
        reason = b64(frame.data[2:])
    report("closed", id=cid, code=code, reason=reason)
    conns.pop(cid, None)
    ws.shutdown()


def on_readable(cid, ws):
    try:
        opcode, data = ws.recv_data_frame(True)
    except Exception as e:  # the connection ended without a close frame, or a protocol error
        report("error", id=cid, op="recv", message="%s: %s" % (type(e).__name__, e))
        closed(cid, ws)
        return
    if opcode == ABNF.OPCODE_TEXT:
        report("message", id=cid, type="t", b64=b64(data.data if isinstance(data, ABNF) else data))
    elif opcode == ABNF.OPCODE_BINARY:
        report("message", id=cid, type="b", b64=b64(data.data if isinstance(data, ABNF) else data))
    elif opcode == ABNF.OPCODE_PING:
        report("ping", id=cid, b64=b64(data.data))
    elif opcode == ABNF.OPCODE_PONG:
        report("pong", id=cid, b64=b64(data.data))
    elif opcode == ABNF.OPCODE_CLOSE:
        closed(cid, ws)  # recv_data_frame has answered it


def command(words):
    op, cid = words[0], int(words[1])
    if op == "connect":
        protocols = [p for p in words[3].split(",") if p]
        ws = websocket.create_connection(words[2], class_=Ws, subprotocols=protocols or None)
        conns[cid] = ws
        headers = ws.getheaders() or {}
        report("open", id=cid, protocol=ws.getsubprotocol(), extensions=headers.get("sec-websocket-extensions", ""))
        return
    ws = conns[cid]
    if op == "send":
        data = base64.b64decode(words[3])
        ws.send(data, ABNF.OPCODE_TEXT if words[2] == "t" else ABNF.OPCODE_BINARY)
    elif op == "fragments":
        data, size = base64.b64decode(words[3]), int(words[4])
        parts = [data[i:i + size] for i in range(0, len(data), size)] or [data]
        for i, part in enumerate(parts):
            opcode = (ABNF.OPCODE_TEXT if words[2] == "t" else ABNF.OPCODE_BINARY) if i == 0 else ABNF.OPCODE_CONT
            ws.send_frame(ABNF.create_frame(part, opcode, fin=1 if i == len(parts) - 1 else 0))
    elif op == "badutf8":
        # ABNF sends bytes as they are: nothing checks that a text frame's payload is UTF-8.
        ws.send_frame(ABNF.create_frame(BAD_UTF8, ABNF.OPCODE_TEXT))
    elif op == "ping":
        ws.ping(base64.b64decode(words[2]))
    elif op == "close":
        # close() sends the close frame, reads until the answer (dropping what comes before it,
        # for at most 3 s), then shuts the socket down.
        ws.close(int(words[2]), base64.b64decode(words[3]))
        closed(cid, ws)
    elif op == "burst":
        for i in range(int(words[2])):
            ws.send("burst %d" % i)
        ws.close(1000, b"burst done")
        closed(cid, ws)


def main():
    stdin = sys.stdin.fileno()
    pending = b""
    while True:
        socks = {ws.sock: cid for cid, ws in conns.items() if ws.sock is not None}
        readable, _, _ = select.select([stdin, *socks], [], [])
        for r in readable:
            if r == stdin:
                chunk = os.read(stdin, 1 << 20)
                if not chunk:
                    return
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    words = line.decode().split(" ")
                    try:
                        command(words)
                    except Exception as e:  # reported so that the test fails with the cause
                        report("error", id=int(words[1]), op=words[0], message="%s: %s" % (type(e).__name__, e))
            elif socks[r] in conns:
                on_readable(socks[r], conns[socks[r]])


main()
