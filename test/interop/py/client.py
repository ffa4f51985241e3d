"""A python-websockets client for the interop test: connects to argv[1] and runs a fixed scenario
against an echo server, printing one JSON object per step on stdout.

argv: URL COMPRESSION(deflate|none)
Works with websockets >= 10 (legacy asyncio API, still present in later versions).
"""
import asyncio
import json
import sys

import websockets


def report(step, **fields):
    print(json.dumps({"step": step, **fields}), flush=True)


async def main(url, compression):
    async with websockets.connect(
        url,
        compression="deflate" if compression == "deflate" else None,
        max_size=2**24,
        ping_interval=None,
        subprotocols=["chat"],
    ) as ws:
        report("open", subprotocol=ws.subprotocol,
               extensions=ws.response_headers.get("Sec-WebSocket-Extensions", ""))

        await ws.send("héllo ✓")
        report("text", echo=await ws.recv())

        data = bytes(range(256)) * 16
        await ws.send(data)
        echo = await ws.recv()
        report("binary", ok=isinstance(echo, bytes) and echo == data, length=len(echo))

        # A fragmented text message: one frame per item (RFC 6455 §5.4).
        await ws.send(["frag", "mented ", "€ message"])
        report("fragmented", echo=await ws.recv())

        big = "x" * 300_000
        await ws.send(big)
        echo = await ws.recv()
        report("big", ok=echo == big)

        pong = await ws.ping(b"py-ping")
        await asyncio.wait_for(pong, 5)
        report("ping", ok=True)

        # The server pings us on request; websockets answers automatically.
        await ws.send("ping me")
        report("pinged", echo=await ws.recv())

        await ws.close(code=4001, reason="bye ✓")
        report("closed", code=ws.close_code, reason=ws.close_reason)


asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "none"))
