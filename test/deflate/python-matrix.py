"""python-websockets peer for test/deflate/python-matrix.test.ts: every permessage-deflate
parameter of python-websockets, one connection per configuration.

usage: python-matrix.py client RUNS   RUNS: a JSON list of [url, config]; connects to each url in
           turn with ClientPerMessageDeflateFactory(**config), round-trips MESSAGES against an
           echo server and prints one JSON line per run: the parameters as python sees them
           (null when nothing was negotiated) and whether every echo matched, or the error.
       python-matrix.py server CONFIGS   CONFIGS: a JSON list of keyword arguments; one echo
           server per configuration, with ServerPerMessageDeflateFactory(**config) only; prints
           {"ports": [...]} once listening, then one JSON line per connection with the parameters
           python agreed to; exits when stdin closes.
"""
import asyncio
import json
import sys

import websockets
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)


def text(size, seed):
    words = ["alpha", "beta", "gamma", "websocket", "deflate", "window", "takeover"]
    out, length, x = [], 0, seed
    while length < size:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        word = words[x % len(words)]
        out.append(word)
        length += len(word) + 1
    return " ".join(out)[:size]


# The same text twice (the second refers back to the first with context takeover), binary, a
# message python fragments (each fragment compressed on its own, RSV1 on the first only), an
# empty one, and a short one.
MESSAGES = [
    text(3000, 1),
    text(3000, 1),
    bytes((i % 100) * 2 for i in range(2000)),
    [text(700, 2), text(900, 3), text(500, 4)],
    "",
    "short ✓",
]


def params(ws):
    if not ws.extensions:
        return None
    e = ws.extensions[0]
    return {
        "local_no_context_takeover": e.local_no_context_takeover,
        "remote_no_context_takeover": e.remote_no_context_takeover,
        "local_max_window_bits": e.local_max_window_bits,
        "remote_max_window_bits": e.remote_max_window_bits,
    }


async def client(runs):
    for url, config in runs:
        try:
            async with websockets.connect(
                url,
                compression=None,
                extensions=[ClientPerMessageDeflateFactory(**config)],
                max_size=2**24,
                ping_interval=None,
            ) as ws:
                ok = True
                for m in MESSAGES:
                    await ws.send(m)
                    echo = await ws.recv()
                    ok = ok and echo == ("".join(m) if isinstance(m, list) else m)
                print(json.dumps({"params": params(ws), "ok": ok}), flush=True)
        except Exception as exc:  # reported, judged by the test
            print(json.dumps({"error": repr(exc)}), flush=True)


async def server(configs):
    def handler_for(index):
        async def handler(ws, *_path):
            print(json.dumps({"server": index, "params": params(ws)}), flush=True)
            try:
                async for message in ws:
                    await ws.send(message)
            except websockets.ConnectionClosed:
                pass

        return handler

    servers = []
    for index, config in enumerate(configs):
        servers.append(
            await websockets.serve(
                handler_for(index),
                "127.0.0.1",
                0,
                compression=None,
                extensions=[ServerPerMessageDeflateFactory(**config)],
                max_size=2**24,
                ping_interval=None,
            )
        )
    ports = [next(iter(s.sockets)).getsockname()[1] for s in servers]
    print(json.dumps({"ports": ports}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for s in servers:
        s.close()


if sys.argv[1] == "client":
    asyncio.run(client(json.loads(sys.argv[2])))
else:
    asyncio.run(server(json.loads(sys.argv[2])))
