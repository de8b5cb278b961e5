#!/usr/bin/env python3
"""Holds N streamed chat requests open at once against the gateway and measures them.

Used by benches/streams.sh. Each request asks the fake Kiro for a slow answer
(`[fake:drip:DELTAS:MS]`: one text delta every MS milliseconds). Reports, as one JSON line:
time to first delta (p50/p99), the p99 gap between consecutive deltas of a stream, how many
streams completed, and errors. While every stream is open it writes `open` to stdout so the
driver can sample the gateway's memory and CPU.
"""
import asyncio
import json
import sys
import time

HOST, PORT, KEY, N, DELTAS, MS = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
RAMP_BATCH = 250

ttfb, gaps, errors, done = [], [], [], 0
opened = 0
all_open = asyncio.Event()


async def one(i):
    global done, opened
    body = json.dumps({
        "model": "claude-sonnet-4.5", "stream": True,
        "messages": [{"role": "user", "content": f"[fake:drip:{DELTAS}:{MS}] stream {i}"}],
    }).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    try:
        reader, writer = await asyncio.open_connection(HOST, PORT, limit=1 << 20)
        sent = time.monotonic()
        writer.write(head + body)
        await writer.drain()
        status = await reader.readline()
        if b" 200 " not in status:
            errors.append(status.decode(errors="replace").strip())
            writer.close()
            return
        last = None
        counted = False
        while True:
            line = await reader.readline()
            if not line:
                break
            if line.startswith(b"data: {") and b'"content":"' in line:
                now = time.monotonic()
                if last is None:
                    ttfb.append(now - sent)
                    if not counted:
                        counted = True
                        opened += 1
                        if opened == N:
                            all_open.set()
                else:
                    gaps.append(now - last)
                last = now
            elif line.startswith(b"data: [DONE]"):
                done += 1
                break
        writer.close()
    except Exception as error:  # noqa: BLE001 - a bench reports every failure kind
        errors.append(repr(error))


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(len(values) * p))] * 1000, 1)


async def main():
    tasks = []
    for i in range(N):
        tasks.append(asyncio.create_task(one(i)))
        if (i + 1) % RAMP_BATCH == 0:
            await asyncio.sleep(0.05)
    waiter = asyncio.create_task(all_open.wait())
    await asyncio.wait({waiter}, timeout=DELTAS * MS / 1000)
    print("open", opened, flush=True)
    await asyncio.gather(*tasks)
    print(json.dumps({
        "streams": N, "completed": done, "errors": len(errors), "first_errors": errors[:3],
        "ttfb_p50_ms": pct(ttfb, 0.5), "ttfb_p99_ms": pct(ttfb, 0.99),
        "gap_p50_ms": pct(gaps, 0.5), "gap_p99_ms": pct(gaps, 0.99), "gap_max_ms": pct(gaps, 1.0),
    }), flush=True)


asyncio.run(main())
