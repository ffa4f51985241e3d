"""python-websockets client for test/deflate/browser-python.test.ts.

usage: python-client.py URL MODE   (MODE: default | custom | off)
Round-trips compressible text and binary messages and prints one JSON line: the negotiated
extension parameters as python-websockets sees them and whether every echo matched.
"""
import asyncio
import json
import sys

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory


def text(size):
    words = ["alpha", "beta", "gamma", "websocket", "deflate", "window"]
    out, i, length = [], 0, 0
    while length < size:
        word = words[(i * 7 + i // 3) % len(words)]
        out.append(word)
        length += len(word) + 1
        i += 1
    return " ".join(out)[:size]


async def main(url, mode):
    kwargs = {"max_size": 2**24}
    if mode == "custom":
        kwargs["compression"] = None
        kwargs["extensions"] = [
            ClientPerMessageDeflateFactory(
                server_no_context_takeover=True,
                client_no_context_takeover=True,
                server_max_window_bits=10,
                client_max_window_bits=9,
            )
        ]
    elif mode == "off":
        kwargs["compression"] = None
    async with websockets.connect(url, **kwargs) as ws:
        extensions = [
            {
                "name": e.name,
                "server_no_context_takeover": e.remote_no_context_takeover,
                "client_no_context_takeover": e.local_no_context_takeover,
                "server_max_window_bits": e.remote_max_window_bits,
                "client_max_window_bits": e.local_max_window_bits,
            }
            for e in ws.extensions
        ]
        messages = [text(100 * 1024), "small", bytes(i % 100 for i in range(102400)), text(100 * 1024), b""]
        ok = True
        for m in messages:
            await ws.send(m)
            echo = await ws.recv()
            ok = ok and echo == m
        print(json.dumps({"extensions": extensions, "ok": ok, "sent": sum(len(m) for m in messages)}))


asyncio.run(main(sys.argv[1], sys.argv[2]))
