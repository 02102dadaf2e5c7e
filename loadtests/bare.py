"""A bare Sanic endpoint that returns a fixed JSON document from memory.

The yardstick for our own overhead: ``python -m loadtests.bare FILE PORT`` serves the
bytes of FILE at ``/bare`` with nothing else in the way.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sanic import HTTPResponse, Request, Sanic


def main() -> None:
    body, port = Path(sys.argv[1]).read_bytes(), int(sys.argv[2])
    app = Sanic("bare")

    @app.get("/bare")
    async def bare(request: Request) -> HTTPResponse:
        return HTTPResponse(body, content_type="application/json")

    app.run(host="127.0.0.1", port=port, single_process=True, access_log=False, motd=False)


if __name__ == "__main__":
    main()
