"""``llm2vec-rag serve``: the app under uvicorn, graceful on SIGTERM (in-flight requests
answered, the listening socket closed, the batcher drained, then exit); a second Ctrl-C
forces the stop (requests not answered yet get 503 ``shutting_down``, then exit 130)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..errors import SetupError, UsageError

API_KEY_ENV = "LLM2VEC_RAG_API_KEY"


def served_name(args: argparse.Namespace) -> str:
    """``--served-model-name``, else the id the model is known by (``model_id``): an ONNX
    export is served under the id its source model had (recorded at export), so switching
    to ``--onnx`` or ``--openvino`` does not rename the model clients ask for."""
    from ..default_model import model_id
    from ..flags import exported_backend

    if args.served_model_name:
        return args.served_model_name
    if exported_backend(args):
        recorded = exported_model_id(str(args.model))
        if recorded:
            return recorded
    return model_id(str(args.model), list(args.adapter))


def exported_model_id(folder: str) -> str | None:
    """The ``model_id`` an ONNX export recorded (None for exports that predate it)."""
    import json

    try:
        with open(os.path.join(folder, "onnx_export.json"), encoding="utf-8") as f:
            recorded = json.load(f).get("model_id")
    except (OSError, ValueError, AttributeError):
        return None
    return recorded if isinstance(recorded, str) and recorded else None


def api_key_from_env(environ: dict[str, str] | None = None) -> str | None:
    """The Bearer key from ``LLM2VEC_RAG_API_KEY`` (None: the variable is unset, no auth).

    Set but empty is refused rather than read as "no auth": an unset secret in a deployment
    template must not open the server. Surrounding whitespace (a trailing newline from a key
    file) is removed with a warning, since no client could ever send it. The key itself is
    never printed."""
    environ = os.environ if environ is None else environ
    if API_KEY_ENV not in environ:
        return None
    raw = environ[API_KEY_ENV]
    key = raw.strip()
    if not key:
        raise UsageError(f"{API_KEY_ENV} is set but empty: set it to the key clients must "
                         f"send, or unset it (unset {API_KEY_ENV}) to serve without "
                         f"authentication")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise UsageError(f"{API_KEY_ENV} contains control characters, which no HTTP client "
                         f"can send in a header: use printable characters only")
    if key != raw:
        print(f"llm2vec-rag serve: warning: {API_KEY_ENV} had {len(raw) - len(key)} "
              f"whitespace character(s) around it (a newline from a key file?); they were "
              f"removed, clients send the key without them", file=sys.stderr, flush=True)
    return key


def check_args(args: argparse.Namespace) -> None:
    """Every serving flag checked before anything loads: one line naming the flag."""
    for flag in ("max_batch_tokens", "max_client_batch", "max_queue", "max_chars",
                 "max_body_bytes"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 1, got "
                             f"{getattr(args, flag)}")
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, got {args.port}")
    for flag in ("max_wait_ms", "graceful_timeout"):
        value = getattr(args, flag)
        if not value >= 0:  # also NaN
            raise UsageError(f"--{flag.replace('_', '-')} must be >= 0, got {value}")
    for flag in ("headers_timeout", "body_timeout"):
        value = getattr(args, flag)
        if not value > 0:
            raise UsageError(f"--{flag.replace('_', '-')} must be > 0 seconds, got {value}")


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve embeddings over HTTP: POST /v1/embeddings (OpenAI), POST /embed (TEI),
    GET /v1/models, /health, /metrics. Set LLM2VEC_RAG_API_KEY to require a Bearer key."""
    try:
        import uvicorn

        from .app import ServeSettings, create_app
    except ModuleNotFoundError as err:
        raise SetupError(f"serve needs the [serve] extra ({err.name} is missing): "
                         f"pip install 'llm2vec-rag[serve]'") from None
    from ..flags import spec_from_args
    from .deadlines import protocol_with
    from .server import Server

    check_args(args)
    key = api_key_from_env()
    spec = spec_from_args(args)  # --query-instruction / --document-instruction included
    settings = ServeSettings(
        model_name=served_name(args), max_batch_tokens=args.max_batch_tokens,
        max_wait_ms=args.max_wait_ms, max_client_batch=args.max_client_batch,
        max_queue=args.max_queue, max_chars=args.max_chars, max_body_bytes=args.max_body_bytes,
        batching=not args.no_batching, normalize=not args.no_normalize,
        auto_truncate=args.auto_truncate, api_key=key)
    failed: list[BaseException] = []
    server: Server | None = None

    def on_load_error(err: BaseException) -> None:
        failed.append(err)
        if server is not None:
            server.should_exit = True  # uvicorn shuts down cleanly, then we exit non-zero

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
    app = create_app(spec.load, settings, on_load_error=on_load_error)
    auth = "on" if key else f"OFF ({API_KEY_ENV} unset: anyone who reaches the port may use it)"
    print(f"llm2vec-rag serve: model {settings.model_name!r} (and "
          f"{settings.model_name + '-query'!r}) on http://{args.host}:{args.port}, "
          f"auth {auth}, batching {'on' if settings.batching else 'off'}", file=sys.stderr,
          flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=args.graceful_timeout,
                            access_log=args.access_log,
                            http=protocol_with(args.headers_timeout, args.body_timeout))
    server = Server(config, on_forced_stop=lambda: abort_batcher(app.state.llm2vec.batcher))
    # SIGTERM/SIGINT: uvicorn stops listening, answers in-flight requests (up to
    # --graceful-timeout), runs the app's shutdown (the batcher drains), then re-raises the
    # signal, so the process ends as terminated by it. A second SIGINT forces the stop:
    # uvicorn skips the app's shutdown, the batcher fails what it has not answered (503,
    # serve.server) and is stopped here, before the interpreter exits.
    try:
        server.run()
    except KeyboardInterrupt:
        stop_batcher(app.state.llm2vec.batcher)
        print("llm2vec-rag serve: interrupted", file=sys.stderr, flush=True)
        return 130
    stop_batcher(app.state.llm2vec.batcher)
    if failed:
        err = failed[0]
        if isinstance(err, (UsageError, SetupError, OSError)):  # bad model, no device: one line
            raise SetupError(f"the model failed to load: {err}") from err
        raise err  # a bug keeps its traceback
    return 0


def abort_batcher(batcher) -> None:
    """The forced stop (a second Ctrl-C): requests not answered yet get 503 now."""
    if batcher is not None:
        batcher.abort("the server was stopped (forced) before this request was answered: "
                      "retry it")


def stop_batcher(batcher, timeout: float = 10.0) -> None:
    """Stop the model worker before the interpreter exits: a daemon thread still inside a
    forward pass while Python finalizes can abort the process (SIGABRT) instead of exiting.
    If the batch does not finish within ``timeout``, exit at once without finalizing."""
    if batcher is None:
        return
    batcher.close(timeout=timeout)
    if not batcher.stopped:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


def add_commands(subparsers, model_flags: argparse.ArgumentParser) -> None:
    """Register ``serve`` on the main parser."""
    p = subparsers.add_parser("serve", parents=[model_flags], help="serve embeddings over HTTP",
                              description=cmd_serve.__doc__)
    g = p.add_argument_group("server")
    g.add_argument("--host", default="127.0.0.1",
                   help="interface to listen on (default: loopback only)")
    g.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    g.add_argument("--served-model-name", default=None,
                   help="the model id clients send (default: the model's name); "
                        "'<id>-query' embeds with the query instruction")
    g.add_argument("--query-instruction", default=None,
                   help="instruction for input_type=query and the '<id>-query' model "
                        "(default: the model's saved config)")
    g.add_argument("--document-instruction", default=None,
                   help="instruction for input_type=document (default: the model's saved "
                        "config, usually none)")
    g.add_argument("--graceful-timeout", type=float, default=30.0,
                   help="seconds to finish in-flight requests after SIGTERM")
    g.add_argument("--headers-timeout", type=float, default=10.0,
                   help="seconds a client has to send a request's headers; slower "
                        "connections are closed")
    g.add_argument("--body-timeout", type=float, default=60.0,
                   help="seconds a client has to send a request's body after its headers")
    g.add_argument("--log-level", default="info",
                   help="uvicorn log level: critical|error|warning|info|debug|trace")
    g.add_argument("--access-log", action="store_true", help="log every request (no headers)")
    b = p.add_argument_group("batching and limits")
    b.add_argument("--max-batch-tokens", type=int, default=8192,
                   help="real tokens merged into one encode call")
    b.add_argument("--max-wait-ms", type=float, default=5.0,
                   help="how long a batch waits for more requests")
    b.add_argument("--no-batching", action="store_true",
                   help="one request per encode call (the unbatched baseline)")
    b.add_argument("--max-client-batch", type=int, default=2048, help="texts per request")
    b.add_argument("--max-queue", type=int, default=512,
                   help="requests waiting before 429 Too Many Requests")
    b.add_argument("--max-chars", type=int, default=32768, help="characters per text")
    b.add_argument("--max-body-bytes", type=int, default=16 * 2**20, help="request body size")
    b.add_argument("--auto-truncate", action="store_true",
                   help="embed the first max_length tokens of over-long texts when a request "
                        "does not say (default, as TEI: answer 413 unless the request sends "
                        "\"truncate\": true)")
    b.add_argument("--no-normalize", action="store_true",
                   help="/v1/embeddings returns raw vectors instead of unit vectors")
    p.set_defaults(func=cmd_serve)
