"""The FastAPI app: routes only. Requests are validated and translated here; the batcher
(``llm2vec_rag.batcher``) merges them and runs the model; errors use OpenAI's format."""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from ..batcher import Batcher, Closed, InputTooLong, Overloaded, Result, WorkerCrashed
from ..errors import UsageError
from ..protocol import Encoder
from .errors import APIError, from_validation, install_handlers
from .late import late_chunk
from .metrics import Metrics
from .schemas import EmbeddingsRequest, EmbeddingsResponse, EmbedRequest, ErrorBody, ModelList

log = logging.getLogger("llm2vec_rag.serve")
OPEN_PATHS = ("/health",)  # answered without the API key (liveness probes)
QUERY_SUFFIX = "-query"


@dataclass
class ServeSettings:
    """Limits and batching knobs; ``api_key`` None = no authentication."""

    model_name: str = "llm2vec"
    max_batch_tokens: int = 8192
    max_wait_ms: float = 5.0
    max_client_batch: int = 2048
    max_queue: int = 512
    max_chars: int = 32768
    max_body_bytes: int = 16 * 2**20
    batching: bool = True
    normalize: bool = True  # OpenAI clients expect unit vectors
    auto_truncate: bool = False  # TEI's default: over-long input is refused unless asked
    api_key: str | None = None

    def __repr__(self) -> str:  # never show the key
        return f"ServeSettings(model_name={self.model_name!r}, auth={self.api_key is not None})"


class State:
    """What the routes read (``request.app.state.llm2vec``): settings, metrics and the encoder
    and batcher once the background load finished."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.encoder: Encoder | None = None
        self.batcher: Batcher | None = None
        self.error: str | None = None
        self.created = int(time.time())
        self.metrics = Metrics(lambda: self.batcher.queue_depth if self.batcher else 0)

    @property
    def query_id(self) -> str:
        return self.settings.model_name + QUERY_SUFFIX

    def load_and_warm(self, load: Callable[[], Encoder],
                      on_load_error: Callable[[BaseException], None] | None) -> None:
        """Build the encoder, run it once, start the batcher (in a background thread)."""
        settings = self.settings
        try:
            encoder = load()
            check_budget(settings.max_batch_tokens, encoder.config.max_length)
            encoder.encode(["warm up"], show_progress=False)
            if encoder.config.query_instruction:
                encoder.encode_queries(["warm up"], show_progress=False)
            self.encoder = encoder
            self.batcher = Batcher(encoder, settings.max_batch_tokens, settings.max_wait_ms,
                                   settings.max_queue, merge=settings.batching,
                                   on_batch=self.metrics.on_batch)
            log.info("model %s ready (dim %d, max_length %d, batching %s)",
                     settings.model_name, encoder.dim, encoder.config.max_length,
                     "on" if settings.batching else "off")
        except BaseException as err:  # noqa: BLE001 - reported on /health and to the CLI
            self.error = f"{type(err).__name__}: {err}"
            log.error("loading the model failed: %s", self.error)
            if on_load_error is not None:
                on_load_error(err)


def check_budget(max_batch_tokens: int, max_length: int) -> None:
    """TEI's rule: a batch must hold at least one text of the model's ``max_length``."""
    if max_batch_tokens < max_length:
        raise UsageError(f"--max-batch-tokens {max_batch_tokens} is smaller than the model's "
                         f"max_length {max_length}: one full-length text would not fit a "
                         f"batch; use at least {max_length}")


def create_app(load: Callable[[], Encoder], settings: ServeSettings,
               on_load_error: Callable[[BaseException], None] | None = None) -> FastAPI:
    """The app; ``load`` builds the encoder in a background thread (``/health`` is 503 until
    it is loaded and warmed), so the port answers while a large model loads."""
    state = State(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=state.load_and_warm, args=(load, on_load_error),
                         name="llm2vec-load", daemon=True).start()
        yield
        if state.batcher is not None:  # after uvicorn answered in-flight requests
            state.batcher.close()

    app = FastAPI(title="llm2vec-rag", lifespan=lifespan,
                  responses={400: {"model": ErrorBody}})
    app.state.llm2vec = state
    install_handlers(app)
    app.middleware("http")(auth_and_metrics)
    app.include_router(router)
    return app


def state_of(request: Request) -> State:
    return request.app.state.llm2vec


async def auth_and_metrics(request: Request, call_next):
    """401 without the right Bearer key (except ``/health``); every answer counted."""
    state = state_of(request)
    start = time.perf_counter()
    path = request.url.path
    key = state.settings.api_key
    if key is not None and path not in OPEN_PATHS and not _authorized(
            request.headers.get("authorization", ""), key):
        response = APIError(401, "missing or wrong API key: send the header "
                            "'Authorization: Bearer <key>'", code="invalid_api_key",
                            headers={"WWW-Authenticate": "Bearer"}).response()
    else:
        response = await call_next(request)
    # /health's 503 while the model loads is the expected start-up answer, not an error
    starting = path == "/health" and state.batcher is None and state.error is None
    state.metrics.observe_request(path, response.status_code, time.perf_counter() - start,
                                  error=not starting)
    return response


async def run(state: State, texts: list[str], instruction: str, normalize: bool,
              truncate: bool, field: str) -> Result:
    """The batcher's answer for one request, its failures as HTTP errors."""
    if state.batcher is None:
        raise not_ready(state)
    check_instruction_chars(instruction, state.settings)
    try:
        return await state.batcher.embed(texts, instruction, normalize, truncate)
    except Overloaded as err:
        raise APIError(429, str(err), code="queue_full",
                       headers={"Retry-After": str(err.retry_after)}) from None
    except Closed as err:
        raise APIError(503, str(err), code="shutting_down") from None
    except WorkerCrashed as err:
        raise APIError(500, str(err), code="worker_crashed") from None
    except InputTooLong as err:
        raise APIError(413, f"{field}[{err.index}]: {err}; or send \"truncate\": true to "
                       f"embed the first {err.limit} tokens", f"{field}[{err.index}]",
                       "input_too_long") from None
    except (ValueError, TypeError) as err:  # e.g. an instruction longer than max_length
        raise APIError(400, str(err), field, "invalid_value") from None


async def run_late(state: State, texts: list[str], instruction: str, normalize: bool,
                   field: str) -> Result:
    """``late_chunking``: the texts are one document's chunks (``serve.late``)."""
    if state.encoder is None or state.batcher is None:
        raise not_ready(state)
    check_instruction_chars(instruction, state.settings)
    try:
        vectors, tokens = await asyncio.to_thread(late_chunk, state.encoder, texts,
                                                  instruction, normalize)
    except (ValueError, TypeError) as err:
        raise APIError(400, f"late_chunking: {err}", field, "invalid_value") from None
    return Result(vectors, [tokens])


async def embed_texts(state: State, texts: list[str], instruction: str, normalize: bool,
                      truncate: bool | None, late_chunking: bool, is_query: bool,
                      field: str) -> Result:
    """One route's texts embedded: batched, or in one pass as a document's chunks."""
    if late_chunking and is_query:
        raise APIError(400, "late_chunking embeds the chunks of a document: it does not "
                       "apply to queries", "late_chunking", "invalid_value")
    if late_chunking:
        return await run_late(state, texts, instruction, normalize, field)
    truncate = state.settings.auto_truncate if truncate is None else truncate
    return await run(state, texts, instruction, normalize, truncate, field)


def instruction_for(state: State, input_type: str | None, instruction: str | None) -> str:
    if instruction is not None:
        return instruction
    config = state.encoder.config if state.encoder else None
    if config is None:
        return ""
    chosen = config.query_instruction if input_type == "query" else config.document_instruction
    return chosen or ""


router = APIRouter()


@router.post("/v1/embeddings", response_model=EmbeddingsResponse,
             responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody},
                        413: {"model": ErrorBody}, 429: {"model": ErrorBody}})
async def embeddings(request: Request) -> JSONResponse:
    """OpenAI's create embeddings (body: ``EmbeddingsRequest``)."""
    state = state_of(request)
    settings = state.settings
    req = await parse(request, EmbeddingsRequest, settings.max_body_bytes)
    if req.model not in (settings.model_name, state.query_id):
        raise APIError(404, f"model {req.model!r} is not served here: use "
                       f"{settings.model_name!r} (documents) or {state.query_id!r} (queries); "
                       f"see GET /v1/models", "model", "model_not_found")
    input_type = req.input_type
    if req.model == state.query_id:
        if input_type not in (None, "query"):
            raise APIError(400, f"model {state.query_id!r} embeds queries: drop input_type="
                           f"{input_type!r} or use model {settings.model_name!r}",
                           "input_type", "invalid_value")
        input_type = "query"
    if state.encoder is None:
        raise not_ready(state)
    if req.dimensions is not None and req.dimensions != state.encoder.dim:
        raise APIError(400, f"dimensions={req.dimensions} is not supported: this model "
                       f"returns {state.encoder.dim}-dimensional vectors; omit "
                       f"dimensions", "dimensions", "unsupported_value")
    texts = check_inputs(req.input, "input", settings, status=400)
    result = await embed_texts(state, texts, instruction_for(state, input_type, req.instruction),
                               settings.normalize, req.truncate, req.late_chunking,
                               input_type == "query", "input")
    as_base64 = req.encoding_format == "base64"
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(v.astype("<f4").tobytes()).decode("ascii")
             if as_base64 else v.tolist()} for i, v in enumerate(result.vectors)]
    tokens = sum(result.tokens)
    return JSONResponse({"object": "list", "data": data, "model": req.model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


router.add_api_route("/embeddings", embeddings, methods=["POST"], include_in_schema=False)


@router.post("/embed", response_model=list[list[float]],
             responses={413: {"model": ErrorBody}, 429: {"model": ErrorBody}})
async def embed(request: Request) -> JSONResponse:
    """TEI's ``/embed`` (body: ``EmbedRequest``): a list of vectors."""
    state = state_of(request)
    settings = state.settings
    req = await parse(request, EmbedRequest, settings.max_body_bytes)
    texts = check_inputs(req.inputs, "inputs", settings, status=413)
    result = await embed_texts(state, texts,
                               instruction_for(state, req.prompt_name, req.instruction),
                               req.normalize, req.truncate, req.late_chunking,
                               req.prompt_name == "query", "inputs")
    return JSONResponse(result.vectors.tolist())


@router.get("/v1/models", response_model=ModelList)
async def models(request: Request) -> dict:
    """The model id (documents) and ``<id>-query`` (the model's query instruction)."""
    state = state_of(request)
    return {"object": "list", "data": [
        {"id": name, "object": "model", "created": state.created, "owned_by": "llm2vec-rag"}
        for name in (state.settings.model_name, state.query_id)]}


@router.get("/health")
async def health(request: Request) -> dict:
    """200 once the model is loaded and warmed; 503 before, if loading failed, or once the
    batcher's worker gave up."""
    state = state_of(request)
    if state.batcher is None:
        raise not_ready(state)
    if not state.batcher.healthy:
        raise APIError(503, f"the model worker stopped ({state.batcher.failed}): restart "
                       f"the server", code="worker_failed")
    return {"status": "ok", "model": state.settings.model_name}


@router.get("/metrics")
async def prometheus(request: Request) -> Response:
    body, content_type = state_of(request).metrics.render()
    return Response(body, media_type=content_type)


def _authorized(header: str, key: str) -> bool:
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode("utf-8"), key.encode("utf-8"))


def not_ready(state: State) -> APIError:
    if state.error:
        return APIError(503, f"the model failed to load: {state.error}", code="load_failed")
    return APIError(503, "the model is still loading: retry shortly", code="not_ready",
                    headers={"Retry-After": "1"})


async def parse(request: Request, schema: type[BaseModel], limit: int) -> BaseModel:
    """The body as ``schema``: 413 over ``limit`` bytes (counted as it streams), 400 if it is
    not JSON or does not fit the schema."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"the body has {declared} bytes, more than the limit of {limit} "
                       f"(--max-body-bytes): send fewer or shorter texts per request",
                       "body", "request_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise APIError(413, f"the body exceeds the limit of {limit} bytes "
                           f"(--max-body-bytes)", "body", "request_too_large")
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise APIError(400, f"the body is not valid JSON: {err}", "body",
                       "invalid_json") from None
    except RecursionError:
        raise APIError(400, "the body's JSON is nested too deeply: send a flat object as "
                       "the schema describes", "body", "invalid_json") from None
    if not isinstance(raw, dict):
        raise APIError(400, f"the body must be a JSON object, got {type(raw).__name__}",
                       "body", "invalid_json")
    try:
        return schema.model_validate(raw)
    except RecursionError:
        raise APIError(400, "the body's JSON is nested too deeply: send a flat object as "
                       "the schema describes", "body", "invalid_json") from None
    except ValidationError as err:
        raise from_validation(err, list(schema.model_fields)) from None


def check_inputs(value: str | list[str], field: str, settings: ServeSettings,
                 status: int) -> list[str]:
    """Texts within the limits, or an error naming the item and the limit."""
    texts = [value] if isinstance(value, str) else list(value)
    if not texts:
        raise APIError(400, f"{field} is an empty list: send at least one text", field,
                       "empty_input")
    if len(texts) > settings.max_client_batch:
        raise APIError(status, f"{field} has {len(texts)} texts, more than the limit of "
                       f"{settings.max_client_batch} per request (--max-client-batch): split "
                       f"the request", field, "too_many_inputs")
    for i, text in enumerate(texts):
        where = f"{field}[{i}]" if not isinstance(value, str) else field
        if not text.strip():
            raise APIError(400, f"{where} is empty: send non-empty text", where, "empty_input")
        if len(text) > settings.max_chars:
            raise APIError(status, f"{where} has {len(text)} characters, more than the limit "
                           f"of {settings.max_chars} (--max-chars): split the text",
                           where, "input_too_long")
    return texts


def check_instruction_chars(instruction: str, settings: ServeSettings) -> None:
    """The character cap, before the instruction reaches the tokenizer (a huge one would keep
    the worker busy for minutes before the token limit refused it)."""
    if len(instruction) > settings.max_chars:
        raise APIError(413, f"instruction has {len(instruction)} characters, more than the "
                       f"limit of {settings.max_chars} (--max-chars): shorten it",
                       "instruction", "input_too_long")
