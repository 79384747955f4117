"""ladder's HTTP front: a Starlette app on uvicorn (``pip install 'ladder[serve]'``).

Routes: ``POST /v1/chat/completions`` (whole, or streamed as server-sent events),
``GET /v1/models``, ``GET /health``. With an API key every ``/v1`` route wants
``Authorization: Bearer KEY``; ``/health`` stays open for load balancers, as in vLLM.

Hostile clients are answered and dropped without disturbing the others: a body needs a
``Content-Length`` (411) of at most :data:`~ladder.serve.schema.MAX_BODY_BYTES` (413; a negative or malformed one is
malformed HTTP, 400), headers and body must each arrive within ``request_timeout`` (408, then
the connection is closed: a client sending a byte now and then cannot hold it open), and a
client that goes away while it waits for the model or reads a stream stops its generation.
The event loop only moves bytes; generation runs on worker threads, one at a time
(see :mod:`ladder.serve.chat_server`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from ladder.errors import ConfigError
from ladder.serve.chat_server import ChatServer
from ladder.serve.schema import DEFAULT_REQUEST_TIMEOUT, MAX_BODY_BYTES, ChatRequest, RequestError

__all__ = ["create_app", "run_server"]

logger = logging.getLogger(__name__)

_END = object()  # the generating thread is done
T = TypeVar("T")


def _error(exc: RequestError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def _read_json(request: Request, limit: int, timeout: float) -> Any:
    length = request.headers.get("content-length")
    if length is None and "chunked" not in request.headers.get("transfer-encoding", "").lower():
        raise RequestError("the request has a body but no Content-Length header; send one (or use chunked "
                           "transfer encoding)", status=411, code="length_required")
    # h11 has already refused a Content-Length that is not one non-negative integer (400).
    if length is not None and int(length) > limit:
        raise RequestError(f"the body is {length} bytes; this server accepts at most {limit}",
                           status=413, code="request_too_large")
    body = bytearray()

    async def read() -> None:
        async for part in request.stream():
            body.extend(part)
            if len(body) > limit:  # chunked bodies have no length to check up front
                raise RequestError(f"the body is over {limit} bytes, the most this server accepts",
                                   status=413, code="request_too_large")

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise RequestError(f"the body did not arrive within {timeout:g} s", status=408, code="request_timeout",
                           headers={"Connection": "close"}) from None
    except ClientDisconnect:
        raise RequestError("the client closed the connection before sending the whole body") from None
    try:
        return json.loads(bytes(body), parse_constant=_reject_constant)
    except ValueError as exc:
        raise RequestError(f"the body is not valid JSON: {exc}") from exc


async def _disconnected(request: Request) -> None:
    """Return once the client has gone (the body has been read, so only a disconnect is left)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _unless_gone(request: Request, work: Awaitable[T], cancelled: threading.Event) -> T:
    """Await ``work``; if the client leaves first, set ``cancelled`` (the generation stops) and still await it."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if not task.done():
        cancelled.set()
    return await task


async def _stream(chat: ChatServer, parsed: ChatRequest, request: Request) -> Response:
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Any] = asyncio.Queue()
    cancelled = threading.Event()

    def put(item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: the server is stopping
            loop.call_soon_threadsafe(events.put_nowait, item)

    def work() -> None:
        try:
            chat.stream(parsed, put, cancelled)
        except RequestError as exc:
            put(exc)
        except Exception as exc:  # answered (as an error event once streaming), logged, server keeps serving
            logger.exception("generation failed")
            put(exc)
        finally:
            put(_END)

    threading.Thread(target=work, name="ladder-generate", daemon=True).start()
    # Nothing is sent until the request has the model and its prompt fits: a RequestError
    # (context too long) is still a plain 400.
    first = await _unless_gone(request, events.get(), cancelled)
    if isinstance(first, RequestError):
        raise first
    if isinstance(first, Exception):  # (logged by the generating thread)
        return _error(_server_error(first))

    async def sse() -> AsyncIterator[str]:
        try:
            item = first
            while item is not _END:
                if isinstance(item, Exception):
                    error = item if isinstance(item, RequestError) else _server_error(item)
                    yield f"data: {json.dumps(error.body())}\n\n"
                    return
                yield f"data: {json.dumps(item)}\n\n"
                item = await events.get()
            yield "data: [DONE]\n\n"
        finally:  # also when the client disconnects mid-stream (Starlette cancels this generator)
            cancelled.set()

    return StreamingResponse(sse(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _server_error(exc: Exception) -> RequestError:
    return RequestError(f"{type(exc).__name__}: {exc}", status=500)


def create_app(
    chat: ChatServer,
    *,
    api_key: str | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> Starlette:
    """The ASGI app serving ``chat``.

    Args:
        chat: the loaded model.
        api_key: when set, ``/v1`` routes answer 401 unless sent ``Authorization: Bearer <api_key>``.
        request_timeout: seconds a client has to send a request's body (its headers: see
            :func:`run_server`).
        max_body_bytes: the largest request body accepted.
    """
    expected = api_key.encode() if api_key else None

    def authorize(request: Request) -> None:
        if expected is None:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if not token:
            raise RequestError("no API key: send the header `Authorization: Bearer YOUR_KEY` (the key given to "
                               "ladder serve's --api-key or LADDER_API_KEY)", status=401, code="invalid_api_key",
                               headers=challenge)
        # compare_digest: the time taken does not reveal how much of a guess was right.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise RequestError("incorrect API key provided", status=401, code="invalid_api_key", headers=challenge)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def models(request: Request) -> Response:
        authorize(request)
        return JSONResponse(chat.models())

    async def completions(request: Request) -> Response:
        authorize(request)  # before reading a body: a client without the key cannot make us read 8 MB
        parsed = chat.parse(await _read_json(request, max_body_bytes, request_timeout))
        try:
            if parsed.stream:
                return await _stream(chat, parsed, request)
            cancelled = threading.Event()
            response = await _unless_gone(request, run_in_threadpool(chat.complete, parsed, cancelled), cancelled)
        except RequestError:
            raise
        except Exception as exc:  # a failure while generating: answer, log, keep serving
            logger.exception("generation failed")
            return _error(_server_error(exc))
        return JSONResponse(response) if response is not None else Response(status_code=499)

    async def request_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestError)
        return _error(exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        where = f"{request.method} {request.url.path}"
        message = (f"no route {where}; ladder serves POST /v1/chat/completions, GET /v1/models, GET /health"
                   if exc.status_code == 404 else f"{where}: {exc.detail}")
        return _error(RequestError(message, status=exc.status_code, headers=exc.headers))

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/chat/completions", completions, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={RequestError: request_error, HTTPException: http_error})


def _raw_response(status: int, reason: str, error: RequestError) -> bytes:
    body = json.dumps(error.body()).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("ascii") + body


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for request headers and JSON error bodies.

    uvicorn closes idle keep-alive connections, but waits for ever on a new connection that
    sends nothing, or on a client that sends the start of a request and then a byte every few
    seconds (slowloris). Here a request's headers must be complete within
    :attr:`header_timeout` seconds of the connection opening, or (on a kept-alive connection)
    of the request's first byte; otherwise the client gets a 408 and the connection is closed.
    """

    header_timeout = DEFAULT_REQUEST_TIMEOUT

    def connection_made(self, transport: asyncio.BaseTransport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._awaited: Any = None  # the cycle that was current when we began waiting for headers
        self._between = True  # no request in progress: waiting for the next one's headers
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm(got_bytes=False)

    def data_received(self, data: bytes) -> None:
        if self._between and self._deadline is None and data:  # a kept-alive connection's next request begins
            self._arm(got_bytes=True)
        self._got_bytes = self._got_bytes or bool(data)
        super().data_received(data)
        if self._between and self.cycle is not self._awaited:  # its headers are in
            self._between = False
            self._disarm()

    def on_response_complete(self) -> None:
        before = self.cycle
        super().on_response_complete()
        if self.cycle is before:  # (else a pipelined request has already started)
            self._between, self._awaited = True, before

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        error = RequestError(f"{msg} A header is malformed (Content-Length must be one non-negative integer) "
                             f"or the request line is.", code="malformed_request")
        self.transport.write(_raw_response(400, "Bad Request", error))
        self.transport.close()

    def _arm(self, *, got_bytes: bool) -> None:
        self._got_bytes = got_bytes
        self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._got_bytes:  # a request started and stalled; a connection that sent nothing is just closed
            logger.warning("%s: request headers not complete within %g s; closing", self.client, self.header_timeout)
            error = RequestError(f"the request headers did not arrive within {self.header_timeout:g} s",
                                 status=408, code="request_timeout")
            self.transport.write(_raw_response(408, "Request Timeout", error))
        self.transport.close()


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"--host {host}: cannot listen there ({exc}); use an address of this machine") from exc
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port "
                          f"(0 picks a free one)") from exc
    return sock


def run_server(
    chat: ChatServer,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``chat`` on ``host:port`` until SIGINT/SIGTERM; ``ready(base_url)`` once it accepts requests.

    Raises:
        ConfigError: the address cannot be listened on (in use, not this machine's).
    """
    sock = _bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{sock.getsockname()[1]}/v1"
    protocol = type("GuardedH11Protocol", (_GuardedH11Protocol,), {"header_timeout": request_timeout})
    config = uvicorn.Config(
        create_app(chat, api_key=api_key, request_timeout=request_timeout),
        http=protocol, ws="none", lifespan="off", loop="asyncio",
        log_config=None,  # the CLI configures logging; uvicorn's loggers propagate to it
        access_log=False, server_header=False,
        timeout_graceful_shutdown=5,  # an open stream does not keep Ctrl-C waiting
    )
    server = _Server(config, on_ready=lambda: ready(url) if ready is not None else None)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
