"""A local stand-in for a Slack incoming webhook: where ops alerts are POSTed in `make run` and the tests.

`POST /services/{path}` takes Slack's JSON (`{"text": ..., "blocks"?: [...]}`) and answers `ok` as Slack
does (400 `invalid_payload` without `text`). `GET /_control/messages` lists what arrived, oldest first;
`DELETE /_control/messages` forgets it; `POST /_control/faults {"status", "count"?}` makes the next
posts fail with that status.

Imports nothing of ours: the sandbox is the outside world.
"""

from __future__ import annotations

from aiohttp import web

from sandbox.control import take_fault

MESSAGES = web.AppKey("messages", list)
FAULTS = web.AppKey("faults", list)


async def post(request: web.Request) -> web.Response:
    fault = take_fault(request.app[FAULTS], default_count=1)
    if fault is not None:
        return web.Response(status=int(fault.get("status", 500)), text="sandbox_fault")
    try:
        body = await request.json()
    except ValueError:
        return web.Response(status=400, text="invalid_payload")
    if not isinstance(body, dict) or not isinstance(body.get("text"), str) or not body["text"]:
        return web.Response(status=400, text="invalid_payload")
    request.app[MESSAGES].append({"path": request.match_info["path"], **body})
    return web.Response(text="ok")


async def list_messages(request: web.Request) -> web.Response:
    return web.json_response(request.app[MESSAGES])


async def clear(request: web.Request) -> web.Response:
    request.app[MESSAGES].clear()
    return web.Response(status=204)


async def set_fault(request: web.Request) -> web.Response:
    request.app[FAULTS].append(dict(await request.json()))
    return web.Response(status=204)


def create_app() -> web.Application:
    app = web.Application()
    app[MESSAGES] = []
    app[FAULTS] = []
    app.router.add_post("/services/{path:.+}", post)
    app.router.add_get("/_control/messages", list_messages)
    app.router.add_delete("/_control/messages", clear)
    app.router.add_post("/_control/faults", set_fault)
    return app
