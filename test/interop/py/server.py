"""A python-websockets echo server for the interop test. Prints {"port": N} on stdout once
listening on 127.0.0.1 (port 0), then one JSON line per event. Exits when stdin closes.

Messages: any message is echoed; text "close-me" closes with 4002 "py bye"; text "fragments"
answers a 3-frame fragmented text message; text "ping-you" sends a ping first and reports the pong.
argv: COMPRESSION(deflate|none)
"""
import asyncio
import json
import sys

import websockets


def report(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


async def handler(ws, *_path):
    report("open", extensions=ws.response_headers.get("Sec-WebSocket-Extensions", "") if hasattr(ws, "response_headers") else "")
    try:
        async for message in ws:
            if message == "close-me":
                await ws.close(code=4002, reason="py bye")
                break
            if message == "fragments":
                await ws.send(["one ", "two ", "three"])
                continue
            if message == "ping-you":
                pong = await ws.ping(b"from-py")
                await asyncio.wait_for(pong, 5)
                await ws.send("pong received")
                continue
            await ws.send(message)
    except websockets.ConnectionClosed:
        pass
    report("closed", code=ws.close_code, reason=ws.close_reason)


async def main(compression):
    async with websockets.serve(
        handler,
        "127.0.0.1",
        0,
        compression="deflate" if compression == "deflate" else None,
        max_size=2**24,
        ping_interval=None,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        report("listening", port=port)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "none"))
