"""`gmlm serve`: the HTTP JSON service (FastAPI + uvicorn) on one Scheduler (gmlm_engine.serving).

    GET  /                      a page that shows refinement as it happens (web/: HTML, CSS, a script)
    POST /v1/translate          {"text": ["...", ...], "iterations": 4, ...} -> {"translations": [...]}
    POST /v1/translate/stream   the same request; server-sent events: a "draft" after every
                                refinement pass (AR: step) of every text, with every candidate's
                                pieces, confidences and masked positions, a "result" per text, then "done"
    GET  /v1/models             the models served ("gmlm" and/or "ar"), their defaults and the limits
    GET  /health                {"status": "ok", ...}
    GET  /metrics               Prometheus text: queue depth, live rows, passes, request latency
    GET  /openapi.json, /docs   the schema

Errors are JSON {"error": message}, as /openapi.json declares them: 422 for a bad option or text
(the Python API's message, naming the option or text[i]) and for malformed requests (not JSON, not
UTF-8, missing fields); 413 for a body over --max-body-bytes (read no further than that), more texts
than --max-texts, a text longer than --max-chars, or more work than --max-cost (decoder positions:
candidates x passes x positions, estimated from each text's length); 503 when the queue is full or the server is shutting down; 500 only for a model
error; 408 when a body stalls for --body-timeout seconds. A request picks a model with "model": "gmlm" or "ar" (default: --model's; --ar-model serves an
AR model beside a GMLM). A client that disconnects frees its rows. SIGTERM: new connections are refused, in-flight
requests finish if they can within --shutdown-grace seconds, the others get a JSON 503; exit
status 0.
"""
# (no `from __future__ import annotations`: FastAPI reads the endpoints' annotations, local classes)
import asyncio
import json
import signal
from pathlib import Path
from typing import Literal, Optional

from ..options import OPTIONS, request_fields, strategy
from . import DEFAULT_MAX_POSITIONS, DEFAULT_MAX_COST, QueueFull, Scheduler, SchedulerClosed, TooLarge

DEFAULT_LIMITS = {"max_texts": 64, "max_chars": 2000, "max_queue": 1024, "max_cost": DEFAULT_MAX_COST,
                  "max_positions": DEFAULT_MAX_POSITIONS, "shutdown_grace": 30.0,
                  "header_timeout": 10.0, "body_timeout": 10.0}


def default_max_connections() -> int:
    """1024, or fewer where the process may open fewer files: room for a burst of accepts (ACCEPT_BURST),
    the model, logs and the listening socket, so that accept() never fails for want of a descriptor (it
    then stops the server answering)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return 1024
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(8, min(1024, soft - ACCEPT_BURST - 32))


def default_max_body(max_texts: int, max_chars: int) -> int:
    """Bytes a valid request can need: every text at its longest, each character JSON-escaped as a
    surrogate pair (12 bytes), plus room for the options."""
    return 12 * max_texts * max_chars + 65536


def body_problem(headers: dict, body: bytes) -> str | None:
    """Why a request body is not UTF-8 JSON we accept, or None. json.loads would guess UTF-16 and UTF-32
    from the bytes and let the last of two equal keys win silently; the service takes UTF-8 only (a
    Content-Type charset, if given, must say so) and refuses duplicate keys, like the model loader."""
    if not body:
        return None
    ctype = headers.get(b"content-type", b"").decode("latin-1")
    for param in ctype.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return f"the body's charset is {value.strip()}: send UTF-8 JSON"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"the body is not UTF-8 (byte {e.start}): send UTF-8 JSON"
    if "\x00" in text:   # raw NUL: UTF-16 / UTF-32 bytes, never JSON
        return "the body contains NUL bytes (UTF-16 or UTF-32?): send UTF-8 JSON"

    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        dup = next((k for i, k in enumerate(keys) if k in keys[:i]), None)
        if dup is not None:
            raise DuplicateKey(dup)
        return dict(pairs)

    try:
        json.loads(text, object_pairs_hook=no_duplicates)
    except DuplicateKey as e:
        return f"the key {e.args[0]!r} appears twice in a JSON object of the body"
    except (ValueError, RecursionError):
        return None      # not JSON at all: the app's own parser answers it (422, with its reason)
    return None


class DuplicateKey(Exception):
    pass


class BodyLimit:
    """ASGI middleware that reads a request body before the app: over max_bytes (when given) it gets a
    JSON 413 without being read further (by its Content-Length when it has one, else as it streams in);
    a body whose next bytes do not arrive within timeout seconds gets a JSON 408 and the connection is
    closed (a stalled body would hold its socket forever); a body that is not UTF-8 JSON we accept
    (body_problem) gets a JSON 422."""

    def __init__(self, app, max_bytes: int | None, timeout: float | None = None):
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or (self.max_bytes and int(length) > self.max_bytes)):
            return await self._reject(send, 413, f"the request body exceeds {self.max_bytes} bytes")
        body, more = b"", True                 # read it here, up to the limit, then hand it on
        while more:
            try:
                msg = await asyncio.wait_for(receive(), self.timeout)
            except asyncio.TimeoutError:
                return await self._reject(send, 408, f"the request body stalled: no bytes for {self.timeout:g} s")
            if msg["type"] != "http.request":   # the client left
                return
            body += msg.get("body", b"")
            more = msg.get("more_body", False)
            if self.max_bytes and len(body) > self.max_bytes:
                return await self._reject(send, 413, f"the request body exceeds {self.max_bytes} bytes")
        problem = body_problem(headers, body) if scope.get("method") == "POST" else None
        if problem:
            return await self._reject(send, 422, f"malformed request body: {problem}")
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send, status: int, message: str):
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


# Connections asyncio accepts in one go (the listen backlog; asyncio's accept loop takes at most this many
# before the accepted ones run): the open descriptors stay below max_connections + this + a few.
ACCEPT_BURST = 64


def header_timeout_protocol(seconds: float, max_connections: int | None = None):
    """uvicorn's h11 protocol where a connection must send a complete request head within `seconds`
    of opening it or of its previous response; else it is closed. (uvicorn arms its keep-alive timer
    only after a first response and disarms it at the first byte, so a half-open connection, or one
    that sends a header a byte at a time, would be held forever.) A connection beyond max_connections
    open ones is closed at once, before it is read: uvicorn's own limit answers 503 only after a request
    head, so a crowd of stalled sockets could otherwise hold every descriptor (accept() then fails with
    'Too many open files' and the server stops answering)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutH11(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            if max_connections is not None and len(self.connections) > max_connections:
                transport.close()          # connection_lost forgets it
                return
            self.timeout_keep_alive_task = self.loop.call_later(seconds, self.timeout_keep_alive_handler)

        def data_received(self, data: bytes) -> None:
            # the timer stays armed until a whole request head arrives (handle_events disarms it then)
            self.conn.receive_data(data)
            self.handle_events()

    return HeaderTimeoutH11


WEB = Path(__file__).parent / "web"    # the page: index.html, app.js, style.css


def _api_types():
    """The request and response models of the API (pydantic), the stream's response class and the error table of
    the OpenAPI schema; imported and built when an app is made (serving needs FastAPI, the package does not)."""
    from types import SimpleNamespace

    from fastapi.responses import StreamingResponse
    from pydantic import BaseModel, ConfigDict, StrictStr, create_model

    # translate_batch's options (options.OPTIONS, those with http=True); absent ones take the Translator's defaults
    TranslateRequest = create_model(
        "TranslateRequest", __config__=ConfigDict(extra="forbid"), text=(list[StrictStr], ...),
        model=(Optional[Literal["gmlm", "ar"]], None),   # which served model (default: the first)
        **request_fields())

    class Translation(BaseModel):
        text: str
        tokens: list[str]
        score: float
        iterations: int
        history: Optional[list[list[str]]] = None

    class TranslateResponse(BaseModel):
        translations: list[Translation]

    class ErrorResponse(BaseModel):
        error: str

    class EventStream(StreamingResponse):
        media_type = "text/event-stream"

    class Health(BaseModel):
        status: str
        model: str
        mode: str
        queue_depth: int
        live_requests: int

    class ModelInfo(BaseModel):
        objective: Literal["gmlm", "ar", "ctc"]
        name: str
        defaults: dict

    class Models(BaseModel):
        models: list[ModelInfo]
        default: str
        max_texts: int
        max_chars: int

    def errors(*codes: int) -> dict:
        what = {413: "too large: body, texts, characters or work (decoder positions, --max-cost)",
                422: "a bad option or text, or a malformed request", 499: "the client disconnected",
                500: "the model failed on this request", 503: "the queue is full or the server is shutting down"}
        # an explicit application/json (the stream route's own media type is text/event-stream); the
        # ErrorResponse schema is registered by /v1/translate's `model`
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}
        return {c: {"model": ErrorResponse, "description": what[c], "content": ref} for c in codes}

    return SimpleNamespace(TranslateRequest=TranslateRequest, TranslateResponse=TranslateResponse,
                           EventStream=EventStream, Health=Health, Models=Models, errors=errors)


class _Served:
    """What the routes share: the served models' schedulers, the request limits, the metrics, and the error
    responses (each counted by status)."""

    def __init__(self, scheduler: Scheduler, model_name: str, ar_scheduler, ar_model_name: str, max_texts: int,
                 max_chars: int):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.default = scheduler.tr.cfg.objective
        self.scheds = {self.default: (scheduler, model_name)}
        if ar_scheduler is not None:
            if strategy(self.default) != "gmlm" or ar_scheduler.tr.cfg.objective != "ar":
                raise ValueError("ar_scheduler serves an ar model beside a gmlm or ctc model")
            self.scheds["ar"] = (ar_scheduler, ar_model_name)
        self.every = [sc for sc, _ in self.scheds.values()]
        self.max_texts, self.max_chars = max_texts, max_chars
        self.registry = r = CollectorRegistry()
        self.gauges = {
            "queue": Gauge("gmlm_queue_depth", "texts waiting to join the batch", registry=r),
            "rows": Gauge("gmlm_live_rows", "decoder rows of the next pass", registry=r),
            "live": Gauge("gmlm_live_requests", "texts in the running batch", registry=r),
            "passes": Gauge("gmlm_passes_total", "decoder passes since start", registry=r),
            "busy": Gauge("gmlm_busy_seconds_total", "seconds the scheduler spent in passes", registry=r)}
        self.requests = Counter("gmlm_requests", "HTTP translation requests by status", ["status"], registry=r)
        self.latency = Histogram("gmlm_request_latency_seconds", "time from request to response",
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)

    def error(self, status: int, msg: str):
        from fastapi.responses import JSONResponse

        self.requests.labels(str(status)).inc()
        return JSONResponse({"error": msg}, status_code=status)

    def check(self, req):
        if len(req.text) > self.max_texts:
            return self.error(413, f"text has {len(req.text)} entries; at most {self.max_texts} per request")
        for i, t in enumerate(req.text):
            if len(t) > self.max_chars:
                return self.error(413, f"text[{i}] has {len(t)} characters; at most {self.max_chars}")
        return None

    def submit(self, req, stream: bool = False):
        """The model's scheduler.submit (or .stream) with the request's options, and the scheduler; errors as
        responses."""
        opts = req.model_dump(exclude_none=True, exclude={"text", "model"})
        try:
            name = req.model or self.default
            if name not in self.scheds:
                raise ValueError(f"model {name!r} is not served here; this server has {' and '.join(self.scheds)}")
            sched = self.scheds[name][0]
            return (sched.stream if stream else sched.submit)(req.text, **opts), sched, None
        except TooLarge as e:
            return None, None, self.error(413, str(e))
        except ValueError as e:
            msg = str(e).replace("source[", "text[")
            return None, None, self.error(422, msg)
        except (QueueFull, SchedulerClosed) as e:
            return None, None, self.error(503, str(e))

    @staticmethod
    def as_json(r) -> dict:
        d = {"text": r.text, "tokens": r.tokens, "score": r.score, "iterations": r.iterations}
        if r.history is not None:
            d["history"] = r.history
        return d


def _error_handlers(app, served: _Served) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, exc):
        parts = []
        for e in exc.errors():
            where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
            if not where:
                where = "body (a JSON object with a 'text' list of strings)"
            parts.append(f"{where}: {e.get('msg')}")
        return served.error(422, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):
        # FastAPI answers a body it cannot parse (not UTF-8, another charset, an integer over 4300 digits,
        # JSON nested too deeply) with 400: that is a malformed request, 422 like the others.
        if exc.status_code == 400:
            return served.error(422, f"malformed request body ({exc.detail}): send UTF-8 JSON")
        return served.error(exc.status_code, str(exc.detail))


def _translation_routes(app, served: _Served, api) -> None:
    from fastapi import Request

    TranslateRequest = api.TranslateRequest

    @app.post("/v1/translate", response_model=api.TranslateResponse, responses=api.errors(413, 422, 499, 500, 503))
    async def translate(req: TranslateRequest, request: Request):
        with served.latency.time():
            bad = served.check(req)
            if bad:
                return bad
            fut, sched, bad = served.submit(req)
            if bad:
                return bad
            waiter = asyncio.wrap_future(fut)
            while True:   # wait, and free the rows if the client goes away meanwhile
                done, _ = await asyncio.wait({waiter}, timeout=0.25)
                if done:
                    break
                if await request.is_disconnected():
                    sched.cancel(fut)
                    return served.error(499, "client disconnected")
            try:
                results = waiter.result()
            except SchedulerClosed as e:
                return served.error(503, str(e))
            except Exception as e:  # noqa: BLE001  (a model error: the server stays up)
                return served.error(500, f"{type(e).__name__}: {e}")
            served.requests.labels("200").inc()
            return {"translations": [served.as_json(r) for r in results]}

    @app.post("/v1/translate/stream", response_class=api.EventStream, responses={
        200: {"description": "server-sent events: draft (after each pass: index, text, iterations, best, "
                             "candidates [{pieces, confidences, masked, score, passes, done, pruned}]), result, "
                             "error, done (docs/serving.md, 'The stream')", "content": {
            "text/event-stream": {"schema": {  # one event: its kind, and its data (a JSON object, as text)
                "type": "object", "required": ["event", "data"],
                "properties": {"event": {"type": "string", "enum": ["draft", "result", "error", "done"]},
                               "data": {"type": "string"}}}}}}, **api.errors(413, 422, 503)})
    async def translate_stream(req: TranslateRequest):
        bad = served.check(req)
        if bad:
            return bad
        stream, _, bad = served.submit(req, stream=True)   # leaving the stream early frees the rows
        if bad:
            return bad

        def event(kind: str, payload: dict) -> str:
            return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n"

        async def events():
            try:
                async for kind, i, r in stream:
                    if kind == "draft":
                        yield event("draft", {"index": i, "text": r.text, "iterations": r.iterations, "best": r.best,
                                              "candidates": [c.__dict__ for c in r.candidates]})
                    else:
                        yield event("result", {"index": i, **served.as_json(r)})
            except Exception as e:  # noqa: BLE001  (a model error: the server stays up)
                yield event("error", {"error": f"{type(e).__name__}: {e}"})
                return
            finally:
                await stream.aclose()       # a client that left: cancel the job now, not at garbage collection
            yield event("done", {})
            served.requests.labels("200").inc()

        return api.EventStream(events())


def _info_routes(app, served: _Served, api, model_name: str, mode: str) -> None:
    from fastapi.responses import FileResponse, PlainTextResponse
    from prometheus_client import generate_latest
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    every = served.every

    @app.get("/health", response_model=api.Health)
    async def health():
        return {"status": "ok", "model": model_name, "mode": mode,
                "queue_depth": sum(s.queue_depth for s in every), "live_requests": sum(s.live_requests for s in every)}

    def defaults(objective: str) -> dict:
        return {o.name: o.default_for(objective) for o in OPTIONS if o.http and o.models in (strategy(objective), "both")}

    @app.get("/v1/models", response_model=api.Models)
    async def models():
        return {"models": [{"objective": o, "name": n, "defaults": defaults(o)} for o, (_, n) in served.scheds.items()],
                "default": served.default, "max_texts": served.max_texts, "max_chars": served.max_chars}

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(WEB / "index.html")

    @app.get("/web/{name}", include_in_schema=False)
    async def web(name: str):
        if name not in ("app.js", "style.css"):
            return served.error(404, f"no such file: {name}")
        return FileResponse(WEB / name)

    @app.get("/metrics", response_class=PlainTextResponse, responses={200: {
        "description": "Prometheus text exposition", "content": {CONTENT_TYPE_LATEST.split(";")[0]: {
            "schema": {"type": "string"}}}}})
    async def metrics():
        g = served.gauges
        g["queue"].set(sum(s.queue_depth for s in every))
        g["rows"].set(sum(s.live_rows for s in every))
        g["live"].set(sum(s.live_requests for s in every))
        g["passes"].set(sum(s.stats["passes"] for s in every))
        g["busy"].set(sum(s.stats["busy_seconds"] for s in every))
        return PlainTextResponse(generate_latest(served.registry), media_type=CONTENT_TYPE_LATEST)


def create_app(scheduler: Scheduler, max_texts: int = 64, max_chars: int = 2000, model_name: str = "",
               max_body_bytes: int | None = None, ar_scheduler: Scheduler | None = None, ar_model_name: str = "",
               body_timeout: float | None = DEFAULT_LIMITS["body_timeout"]):
    """The app on `scheduler` (its model is the default) and, optionally, an ar model's scheduler beside a gmlm one."""
    from fastapi import FastAPI

    served = _Served(scheduler, model_name, ar_scheduler, ar_model_name, max_texts, max_chars)
    api = _api_types()
    app = FastAPI(title="gmlm-engine", description="GMLM translation by iterative parallel refinement",
                  version="1")
    _error_handlers(app, served)
    _translation_routes(app, served, api)
    _info_routes(app, served, api, model_name, scheduler.mode)

    @app.on_event("shutdown")
    def drain():
        for s in served.every:
            s.close(drain=True)

    if max_body_bytes is None:
        max_body_bytes = default_max_body(max_texts, max_chars)
    return BodyLimit(app, max_body_bytes or None, body_timeout)


def _int_in(lo: int, hi: int | None = None):
    """An argparse type: an integer in [lo, hi] (a bad value is argparse's one-line error, exit status 2)."""
    import argparse

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be in [{lo}, {hi}], got {v}" if hi is not None
                                             else f"must be >= {lo}, got {v}")
        return v
    return parse


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def add_arguments(p) -> None:
    p.add_argument("--model", default="default", help="model directory (default: the shipped default model, the "
                   "ctc model)")
    p.add_argument("--ar-model", default=None,
                   help="an ar model directory to serve beside a gmlm --model (requests pick it with \"model\": \"ar\")")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_int_in(0, 65535), default=8000, help="TCP port (0: any free port)")
    p.add_argument("--threads", type=_int_in(0), default=0, help="engine threads (0: the cores available)")
    p.add_argument("--device", default="cpu", help="cpu, or cuda / cuda:N in a CUDA build (docs/cuda.md)")
    p.add_argument("--compute-type", choices=("auto", "float32", "bfloat16", "int8", "float16"), default="auto",
                   help="GEMM precision (cpu: auto = the fastest this CPU runs natively; cuda: float32 (auto), "
                        "float16 or bfloat16)")
    p.add_argument("--mode", default="continuous", choices=("continuous", "static", "single"),
                   help="how requests are batched (see gmlm_engine.serving)")
    p.add_argument("--max-texts", type=_int_in(1), default=DEFAULT_LIMITS["max_texts"],
                   help="texts per request (413 above)")
    p.add_argument("--max-chars", type=_int_in(1), default=DEFAULT_LIMITS["max_chars"],
                   help="characters per text (413 above)")
    p.add_argument("--max-queue", type=_int_in(1), default=DEFAULT_LIMITS["max_queue"], help="queued texts (503 above)")
    p.add_argument("--max-cost", type=_int_in(1), default=DEFAULT_LIMITS["max_cost"],
                   help="work per request in decoder positions: for each text, length_beam x iterations x its estimated "
                        "length (AR: beam_size x its length); 413 above")
    p.add_argument("--max-positions", type=_int_in(1), default=DEFAULT_LIMITS["max_positions"],
                   help="decoder positions in one pass, all requests together (each text: length_beam or beam_size x "
                        "its estimated length); one request holds at most half")
    p.add_argument("--max-body-bytes", type=_int_in(0), default=None,
                   help="request body limit (413 above; default: what --max-texts x --max-chars can need)")
    p.add_argument("--shutdown-grace", type=float, default=DEFAULT_LIMITS["shutdown_grace"],
                   help="seconds in-flight requests get to finish after SIGTERM; then they get a 503")
    p.add_argument("--header-timeout", type=float, default=DEFAULT_LIMITS["header_timeout"],
                   help="seconds a connection has to send a complete request head (then it is closed)")
    p.add_argument("--body-timeout", type=float, default=DEFAULT_LIMITS["body_timeout"],
                   help="seconds a request body may pause between its bytes (then 408 and the connection is closed)")
    p.add_argument("--max-connections", type=_int_in(1), default=None,
                   help="open connections and requests at once (503 above; default: 1024, or fewer where the "
                        "process may open fewer files)")
    p.add_argument("--max-batch", type=_int_in(1), default=64, help="static mode: batch size")
    p.add_argument("--max-wait-ms", type=float, default=20.0, help="static mode: wait for a full batch at most this")
    p.add_argument("--log-level", default="info", choices=LOG_LEVELS)


def run(args) -> int:
    import uvicorn

    from ..engine import Translator

    import math
    import threading

    if not (math.isfinite(args.shutdown_grace) and args.shutdown_grace >= 0):
        raise ValueError(f"--shutdown-grace must be a number of seconds >= 0, got {args.shutdown_grace}")
    for flag in ("header_timeout", "body_timeout"):
        v = getattr(args, flag)
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"--{flag.replace('_', '-')} must be a number of seconds > 0, got {v}")
    def scheduler(model):
        tr = Translator(model, device=args.device, intra_threads=args.threads, compute_type=args.compute_type)
        return Scheduler(tr, mode=args.mode, max_queue=args.max_queue, max_batch=args.max_batch,
                         max_wait_ms=args.max_wait_ms, max_cost=args.max_cost, max_positions=args.max_positions)

    sched = scheduler(args.model)
    ar = scheduler(args.ar_model) if args.ar_model else None
    if ar is not None and (strategy(sched.tr.cfg.objective), ar.tr.cfg.objective) != ("gmlm", "ar"):
        raise ValueError(f"--ar-model serves an ar model beside a gmlm or ctc --model; got {sched.tr.cfg.objective} "
                         f"{args.model} and {ar.tr.cfg.objective} {args.ar_model}")
    app = create_app(sched, max_texts=args.max_texts, max_chars=args.max_chars, model_name=sched.tr.model_name,
                     max_body_bytes=args.max_body_bytes, ar_scheduler=ar,
                     ar_model_name=ar.tr.model_name if ar else "", body_timeout=args.body_timeout)
    grace = args.shutdown_grace

    class Server(uvicorn.Server):
        """On SIGTERM/SIGINT: past the grace period, whatever still runs fails with a 503 (its rows are
        freed), so uvicorn's graceful shutdown ends with answers, never with cancelled tasks."""

        def handle_exit(self, sig, frame):
            if not self.should_exit:
                closed = SchedulerClosed(
                    f"the server shut down before this request finished (after a {grace:g} s grace period)")
                timer = threading.Timer(grace, lambda: [s.abort(closed) for s in (sched, ar) if s is not None])
                timer.daemon = True
                timer.start()
            super().handle_exit(sig, frame)

    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal under the handler that
    # was installed before it: with this one the process returns normally and exits 0.
    stopped = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, f: stopped.append(s))
    max_connections = args.max_connections or default_max_connections()
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=grace + 10, timeout_keep_alive=5,
                            http=header_timeout_protocol(args.header_timeout, max_connections),
                            limit_concurrency=max_connections, backlog=ACCEPT_BURST)
    Server(config).run()
    for s in (sched, ar):
        if s is not None:
            s.close(drain=True)
    return 0
