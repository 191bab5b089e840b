"""`cowest view`: the page of `cowest.view.data`'s resources, served on 127.0.0.1 or written as a static folder.

The page (static/index.html, app.js, app.css: no build step, no CDN) loads each resource as a script,
`data/<name>.js`, which calls `cowestData(name, value)`. A script tag works from a server and from `file://`
alike (a `fetch` of a local file is blocked by the browser), so the export is the same page with the resources
written out. Plots are `plots/r<i>/<file>.png`, only files the run lists. No other URL maps to a file: the routes
take a resource name or a plot name, never a path.
"""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from cowest.view.data import View, ViewError

STATIC = ("index.html", "app.js", "app.css")


def static_text(name: str) -> str:
    return resources.files("cowest.view").joinpath("static", name).read_text(encoding="utf-8")


def data_script(name: str, value: Any) -> str:
    """A resource as the script the page loads (`</` escaped: a question holding `</script>` cannot end it; NaN, a
    metric of an evaluation with no samples, is a JavaScript literal, so it stays one)."""
    body = json.dumps(value, ensure_ascii=False, default=str).replace("</", "<\\/")
    return f"cowestData({json.dumps(name)}, {body});\n"


def resource_script(view: View, name: str) -> str:
    """The resource, or its error as the page shows it (a missing page, a run still writing)."""
    try:
        return data_script(name, view.resource(name))
    except ViewError as e:
        return data_script(name, {"error": str(e)})
    except (ValueError, OSError) as e:  # a record the types refuse (another layout), a file removed under the run
        first = (str(e).splitlines() or [type(e).__name__])[0][:200]
        return data_script(name, {"error": f"cannot read this run's files ({first})"})


def build_app(view: View) -> Any:
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, PlainTextResponse, Response
    from starlette.routing import Route

    types = {"html": "text/html", "js": "text/javascript", "css": "text/css"}

    async def page(request: Any) -> Response:
        name = request.path_params.get("file", "index.html")
        if name not in STATIC:
            return PlainTextResponse("not found", status_code=404)
        return Response(static_text(name), media_type=f"{types[name.rsplit('.', 1)[1]]}; charset=utf-8")

    async def data(request: Any) -> Response:
        import anyio

        script = await anyio.to_thread.run_sync(resource_script, view, request.path_params["name"])
        return Response(script, media_type="text/javascript; charset=utf-8", headers={"Cache-Control": "no-store"})

    async def plot(request: Any) -> Response:
        i, name = request.path_params["run"], request.path_params["file"]
        path = view.runs[i].plot(name) if i < len(view.runs) else None
        if path is None:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path, media_type="image/png")

    return Starlette(routes=[Route("/", page), Route("/{file:str}", page), Route("/data/{name:str}.js", data),
                             Route("/plots/r{run:int}/{file:str}", plot)])


def export(view: View, out: Path) -> int:
    """Write the page, every resource and every plot into `out`; returns the number of files written."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "data").mkdir(exist_ok=True)
    for name in STATIC:
        (out / name).write_text(static_text(name), encoding="utf-8")
    names = view.names()
    for name in names:
        (out / "data" / f"{name}.js").write_text(resource_script(view, name), encoding="utf-8")
    plots = 0
    for run in view.runs:
        for p in run._plots():
            (out / "plots" / f"r{run.i}").mkdir(parents=True, exist_ok=True)
            shutil.copyfile(p, out / "plots" / f"r{run.i}" / p.name)
            plots += 1
    return len(STATIC) + len(names) + plots
