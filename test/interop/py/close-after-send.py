"""A python-websockets client that sends one message and closes right after, then reports what
the server sent before its close frame (websockets keeps what arrived while closing for recv()).

argv: URL COMPRESSION(deflate|none) SIZE
"""
import asyncio
import json
import sys

import websockets


async def main(url, compression, size):
    async with websockets.connect(
        url,
        compression="deflate" if compression == "deflate" else None,
        max_size=2**24,
        ping_interval=None,
    ) as ws:
        await ws.send("x" * size)
        await ws.close(code=1000, reason="done")
        received = []
        while True:
            try:
                message = await ws.recv()
            except websockets.ConnectionClosed:
                break
            received.append(len(message))
        print(json.dumps({"received": received, "code": ws.close_code, "reason": ws.close_reason}), flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
