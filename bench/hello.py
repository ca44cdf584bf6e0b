"""The yardstick: a bare aiohttp server answering "hello" on the benchmark's path, nothing else."""

import sys

from aiohttp import web


async def hello(_request: web.Request) -> web.Response:
    return web.Response(text="hello")


app = web.Application()
app.router.add_post("/analyze-request", hello)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
