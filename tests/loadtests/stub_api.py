"""A stand-in API for testing the SLO gate itself: ``python stub_api.py PORT DELAY_MS
[READ_STATUS]``.

GET /read answers READ_STATUS (200) after DELAY_MS (the injected slowness); POST /write
at once.
"""

from __future__ import annotations

import asyncio
import sys

from sanic import HTTPResponse, Request, Sanic

port, delay_ms = int(sys.argv[1]), int(sys.argv[2])
read_status = int(sys.argv[3]) if len(sys.argv) > 3 else 200
app = Sanic("stub")


@app.get("/read")
async def read(request: Request) -> HTTPResponse:
    await asyncio.sleep(delay_ms / 1000)
    return HTTPResponse(b"{}", status=read_status, content_type="application/json")


@app.post("/write")
async def write(request: Request) -> HTTPResponse:
    return HTTPResponse(b"{}", status=201, content_type="application/json")


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)
