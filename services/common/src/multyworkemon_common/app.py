"""The application factory every service starts from: middleware, health, metrics, OpenAPI, run."""

from __future__ import annotations

import asyncio
import gc
import hmac
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version as package_version

import aiohttp_pydantic.oas
import structlog
from aiohttp_pydantic.oas import pydantic_schema_to_oas
from aiohttp_pydantic.oas.view import generate_oas
from aiohttp import web

from pydantic import ValidationError

from .contract import ErrorResponse
from .context import REQUEST_ID_HEADER, SERVICE_TOKEN_HEADER, accept_request_id, request_id_var
from .errors import ApiError, ServiceError
from .llm import LLMSettings, StructuredAsker, build_model
from .logging import get_logger, setup_logging
from .metrics import ServiceMetrics
from .responses import error_response
from .settings import ServiceSettings
from .views import describe_validation_error

# A readiness (or liveness) check answers (ok, detail) quickly and never calls an LLM.
ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]

SETTINGS = web.AppKey("settings", ServiceSettings)
METRICS = web.AppKey("metrics", ServiceMetrics)
READINESS_CHECKS = web.AppKey("readiness_checks", dict)
# Only what a restart of the process would cure (a background task that died for good).
LIVENESS_CHECKS = web.AppKey("liveness_checks", dict)
STATE = web.AppKey("state", dict)

ALWAYS_PUBLIC = ("/health", "/metrics", "/oas")
log = get_logger("multyworkemon.http")


class InsecureConfiguration(SystemExit):
    """A service asked to start without a service token: it refuses, in one sentence (no traceback)."""


def service_version(distribution: str) -> str:
    try:
        return package_version(distribution)
    except PackageNotFoundError:
        return "0.0.0"


def create_service_app(
    service: str,
    settings: ServiceSettings,
    *,
    public_paths: tuple[str, ...] = (),
) -> web.Application:
    """A web.Application with the shared middleware and endpoints; the service adds its routes.

    `public_paths` are prefixes reachable without the service token (besides health, metrics and
    the OpenAPI document); every other route needs `X-Service-Token`. Without a token the service
    refuses to start (fail closed), unless ALLOW_INSECURE=1 says an open API is intended.
    """
    if not settings.service_token.get_secret_value() and not settings.allow_insecure:
        raise InsecureConfiguration(
            f"{service}: SERVICE_TOKEN is not set; set it (or SERVICE_TOKEN_FILE) to the secret the services share, "
            "or ALLOW_INSECURE=1 to run with an open API on purpose"
        )
    version = service_version(service)
    setup_logging(service, version, settings.log_level)
    metrics = ServiceMetrics(service, version)
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        # Let long URLs reach the middleware, which answers 413 in the contract's shape.
        handler_args={"max_line_size": settings.max_query_bytes + 8192},
        middlewares=[_core_middleware(settings, metrics, ALWAYS_PUBLIC + public_paths)],
    )
    app[SETTINGS] = settings
    app[METRICS] = metrics
    app[READINESS_CHECKS] = {}
    app[LIVENESS_CHECKS] = {}
    app[STATE] = {"shutting_down": False, "service": service, "version": version}
    app.router.add_get("/health", _health)
    app.router.add_get("/health/live", _live)
    app.router.add_get("/health/ready", _ready)
    app.router.add_get("/metrics", _metrics)
    app.on_shutdown.append(_mark_shutting_down)
    return app


def attach_llm(app: web.Application, settings: LLMSettings) -> StructuredAsker:
    """Give a service app its model (closed with the app) and return the structured asker."""
    model = build_model(settings)

    async def model_lifetime(_app: web.Application):
        yield
        if hasattr(model, "close"):
            await model.close()

    app.cleanup_ctx.append(model_lifetime)
    return StructuredAsker(model, settings, app[METRICS])


def finish_app(app: web.Application, title: str) -> web.Application:
    """Serve the OpenAPI document once every route is added (call last)."""
    version = app[STATE]["version"]

    async def openapi_document(_request: web.Request) -> web.Response:
        return web.json_response(_with_shared_errors(generate_oas([app], version, title)))

    # Registered before the OpenAPI sub-app, whose own /spec it replaces.
    app.router.add_get("/oas/spec", openapi_document)
    aiohttp_pydantic.oas.setup(app, url_prefix="/oas", title_spec=title, version_spec=version)
    return app


# aiohttp-pydantic's own translation, which this one runs after its fix-up.
_translate_oas_3_0 = pydantic_schema_to_oas.translater("3.0.0")


def _nullable_refs_to_oas_3_0(schema: dict) -> None:
    """Write `Model | None` fields as OpenAPI 3.0 spells them (allOf + nullable) before aiohttp-pydantic's
    own translation, which expects a "type" in every anyOf branch and fails on a $ref."""
    for property_ in (schema.get("properties") or {}).values():
        branches = property_.get("anyOf")
        if branches and len(branches) == 2 and {"type": "null"} in branches:
            other = next(b for b in branches if b != {"type": "null"})
            if "$ref" in other:
                del property_["anyOf"]
                property_.update(allOf=[other], nullable=True)
                if property_.get("default", ...) is None:
                    del property_["default"]
    _translate_oas_3_0(schema)


pydantic_schema_to_oas.add_or_replace_translater("3.0.0", _nullable_refs_to_oas_3_0)


def _with_shared_errors(spec: dict) -> dict:
    """Document the answers the shared middleware gives on any operation: 400 for parameters or a body
    that do not parse, 413 for a body or query string over the limit."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("ErrorResponse", ErrorResponse.model_json_schema())
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            if operation.get("parameters") or "requestBody" in operation:
                responses.setdefault("400", {**error, "description": "Bad parameters or body"})
            if "requestBody" in operation or any(p.get("in") == "query" for p in operation.get("parameters", [])):
                responses.setdefault("413", {**error, "description": "Body or query string too large"})
    return spec


def run_service(app: web.Application) -> None:
    settings = app[SETTINGS]
    log.info("starting", labels={"port": str(settings.port)})
    # Everything imported and built so far lives as long as the process: keep the cyclic garbage
    # collector from walking it again and again under load (shorter pauses, a shorter latency tail).
    gc.collect()
    gc.freeze()
    # aiohttp stops listening on SIGTERM, runs on_shutdown (readiness goes 503), then lets
    # in-flight requests finish for up to shutdown_timeout before it closes connections.
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        shutdown_timeout=settings.shutdown_timeout,
        access_log=None,
        print=None,
        loop=_new_event_loop(),
    )


def _new_event_loop() -> asyncio.AbstractEventLoop:
    # uvloop: the same asyncio API for about a tenth less CPU per request here (docs/performance.md).
    try:
        import uvloop
    except ImportError:  # not on this platform
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _mark_shutting_down(app: web.Application) -> None:
    app[STATE]["shutting_down"] = True
    app[METRICS].ready.set({}, 0)
    log.info("shutting down: draining in-flight requests")


async def readiness(app: web.Application) -> tuple[bool, dict[str, dict]]:
    checks: dict[str, dict] = {}
    if app[STATE]["shutting_down"]:
        checks["shutdown"] = {"ok": False, "detail": "shutting down"}
    checks.update(await _run_checks(app[READINESS_CHECKS]))
    ok = all(check["ok"] for check in checks.values())
    app[METRICS].ready.set({}, 1 if ok else 0)
    return ok, checks


async def _run_checks(registered: dict[str, ReadinessCheck]) -> dict[str, dict]:
    results = await asyncio.gather(*(check() for check in registered.values()), return_exceptions=True)
    checks: dict[str, dict] = {}
    for name, result in zip(registered, results):
        if isinstance(result, BaseException):
            checks[name] = {"ok": False, "detail": type(result).__name__}
        else:
            ok, detail = result
            checks[name] = {"ok": ok, "detail": detail}
    return checks


async def _health(request: web.Request) -> web.Response:
    ok, checks = await readiness(request.app)
    state = request.app[STATE]
    body = {"status": "ok" if ok else "down", "service": state["service"], "version": state["version"], "checks": checks}
    return web.json_response(body, status=200 if ok else 503)


async def _metrics(request: web.Request) -> web.Response:
    # Check readiness on every scrape so mw_ready and mw_db_up are current even where no probe runs.
    await readiness(request.app)
    return await request.app[METRICS].handle_metrics(request)


async def _live(request: web.Request) -> web.Response:
    checks = await _run_checks(request.app[LIVENESS_CHECKS])
    if all(check["ok"] for check in checks.values()):
        return web.json_response({"status": "ok", **({"checks": checks} if checks else {})})
    return web.json_response({"status": "down", "checks": checks}, status=503)


async def _ready(request: web.Request) -> web.Response:
    ok, checks = await readiness(request.app)
    return web.json_response({"status": "ok" if ok else "not ready", "checks": checks}, status=200 if ok else 503)


def _core_middleware(settings: ServiceSettings, metrics: ServiceMetrics, public: tuple[str, ...]):
    token = settings.service_token.get_secret_value().encode()

    @web.middleware
    async def middleware(request: web.Request, handler):
        request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        request_id_var.set(request_id)
        # A keep-alive connection serves many requests in one task: nothing bound for the last one may leak.
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(trace_id=request_id)
        started = time.perf_counter()
        metrics.http_in_flight.inc({})
        try:
            response = await _guarded(request, handler, settings, token, public)
        finally:
            metrics.http_in_flight.dec({})
        elapsed = time.perf_counter() - started
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        metrics.http_requests.inc({"route": route, "method": request.method, "status": str(response.status)})
        metrics.http_duration.observe({"route": route, "method": request.method}, elapsed)
        response.headers[REQUEST_ID_HEADER] = request_id
        if not route.startswith(("/health", "/metrics")):
            log.info(
                "request served",
                http={"request": {"method": request.method}, "response": {"status_code": response.status}},
                # The route template, not the path: a path can hold a user name (/users/{username}).
                url={"path": route},
                duration_ns=int(elapsed * 1e9),
            )
        return response

    return middleware


async def _guarded(request, handler, settings, token: bytes, public: tuple[str, ...]) -> web.StreamResponse:
    try:
        if len(request.query_string) > settings.max_query_bytes:
            raise ApiError(413, f"Query string is longer than {settings.max_query_bytes} bytes; send the fields as a JSON body with POST")
        if token and not request.path.startswith(public):
            given = request.headers.get(SERVICE_TOKEN_HEADER, "").encode()
            if not hmac.compare_digest(given, token):
                raise ApiError(401, f"Missing or wrong {SERVICE_TOKEN_HEADER}")
        return await handler(request)
    except ServiceError as exc:
        return error_response(exc.status, exc.message, exc.headers)
    except UnicodeDecodeError:
        return error_response(400, "Request body must be UTF-8 text")
    except RecursionError:
        if request.body_exists:
            # The JSON decoder gives up on arrays or objects nested thousands deep.
            return error_response(400, "Request body is nested too deeply")
        return _internal_error()
    except ValidationError as exc:
        # Checks a handler makes beyond its signature (lengths, either-or fields).
        return error_response(400, describe_validation_error(exc, "query" if request.method == "GET" else "body"))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        if exc.status == 400 and message.lstrip().startswith(("{", "[")):
            # aiohttp-pydantic's own body errors: say it plainly instead of echoing its JSON.
            message = "Request body must be a JSON object with the documented fields"
        elif exc.status == 413:
            message = f"Request body is larger than {settings.max_body_bytes} bytes"
        return error_response(exc.status, message, {k: v for k, v in exc.headers.items() if k == "Allow"})
    except asyncio.CancelledError:
        raise
    except Exception:
        return _internal_error()


def _internal_error() -> web.Response:
    log.exception("unhandled error")
    return error_response(500, f"Internal error; quote request id {request_id_var.get()} to the operators")
