"""A sanctions list publisher: the files OFAC, the UN Security Council and the UK FCDO publish, over
plain HTTP GET as they do (no authentication, the file as the body, 200 or an error status).

It serves a directory in the shipped layout (`ofac/sdn.csv`, `un/consolidated.xml`,
`uk/UK_Sanctions_List.csv`, …) at the same paths, and the directory can be switched to publish a new
edition (`POST /_control/edition {"path": "<dir>"}`).

Faults (`POST /_control/faults {"kind", "count"?}`, `DELETE /_control/faults`): `http_500` (the
publisher's server fails), `truncate` (200, but the body stops a tenth of the way through, as a
dropped connection behind a proxy delivers it), `empty` (200 with no body). `count` is how many
requests the fault affects (default 1).
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from sandbox.control import take_fault

EDITION = web.AppKey("edition", dict)


def create_app(root: Path | None = None) -> web.Application:
    app = web.Application()
    app[EDITION] = {"root": root, "faults": []}

    def next_fault() -> str | None:
        fault = take_fault(app[EDITION]["faults"], default_count=1)
        return None if fault is None else str(fault["kind"])

    async def serve_file(request: web.Request) -> web.StreamResponse:
        root: Path | None = app[EDITION]["root"]
        relative = request.match_info["path"]
        if root is None or ".." in Path(relative).parts:
            raise web.HTTPNotFound()
        path = (root / relative).resolve()
        if not path.is_file() or root.resolve() not in path.parents:
            raise web.HTTPNotFound()
        fault = next_fault()
        if fault == "http_500":
            raise web.HTTPInternalServerError(text="publisher unavailable")
        body = path.read_bytes()
        if fault == "truncate":
            body = body[: len(body) // 10]
        elif fault == "empty":
            body = b""
        return web.Response(body=body, content_type="application/octet-stream")

    async def edition(request: web.Request) -> web.Response:
        data = await request.json()
        app[EDITION]["root"] = Path(data["path"])
        return web.json_response({"root": data["path"]})

    async def add_fault(request: web.Request) -> web.Response:
        data = await request.json()
        if data.get("kind") not in ("http_500", "truncate", "empty"):
            raise web.HTTPUnprocessableEntity(text="unknown fault")
        app[EDITION]["faults"].append({"kind": data["kind"], "count": int(data.get("count", 1))})
        return web.json_response({"faults": app[EDITION]["faults"]})

    async def clear_faults(request: web.Request) -> web.Response:
        app[EDITION]["faults"].clear()
        return web.json_response({"faults": []})

    app.router.add_post("/_control/edition", edition)
    app.router.add_post("/_control/faults", add_fault)
    app.router.add_delete("/_control/faults", clear_faults)
    app.router.add_get("/{path:.+}", serve_file)
    return app
