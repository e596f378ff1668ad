"""``llm2vec-rag serve``: the app under uvicorn, graceful on SIGTERM (in-flight requests
answered, the listening socket closed, the batcher drained, then exit)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

API_KEY_ENV = "LLM2VEC_RAG_API_KEY"


def served_name(args: argparse.Namespace) -> str:
    """``--served-model-name``, else the bundled model's name or the model file/folder name."""
    if args.served_model_name:
        return args.served_model_name
    from ..default_model import BUNDLE, DEFAULT_ADAPTERS

    if list(args.adapter[:len(DEFAULT_ADAPTERS)]) == DEFAULT_ADAPTERS:
        return os.path.basename(BUNDLE)
    name = os.path.basename(str(args.model).rstrip("/\\")) or "llm2vec"
    return name[:-5] if name.endswith(".gguf") else name


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve embeddings over HTTP: POST /v1/embeddings (OpenAI), POST /embed (TEI),
    GET /v1/models, /health, /metrics. Set LLM2VEC_RAG_API_KEY to require a Bearer key."""
    try:
        import uvicorn

        from .app import ServeSettings, create_app
    except ModuleNotFoundError as err:
        raise RuntimeError(f"serve needs the [serve] extra ({err.name} is missing): "
                           f"pip install 'llm2vec-rag[serve]'") from None
    from ..flags import spec_from_args

    for flag in ("max_batch_tokens", "max_client_batch", "max_queue", "max_chars",
                 "max_body_bytes"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be >= 1, got "
                             f"{getattr(args, flag)}")
    if args.max_wait_ms < 0:
        raise ValueError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    spec = spec_from_args(args)  # --query-instruction / --document-instruction included
    key = os.environ.get(API_KEY_ENV) or None
    settings = ServeSettings(
        model_name=served_name(args), max_batch_tokens=args.max_batch_tokens,
        max_wait_ms=args.max_wait_ms, max_client_batch=args.max_client_batch,
        max_queue=args.max_queue, max_chars=args.max_chars, max_body_bytes=args.max_body_bytes,
        batching=not args.no_batching, normalize=not args.no_normalize, api_key=key)
    failed: list[BaseException] = []
    server: uvicorn.Server | None = None

    def on_load_error(err: BaseException) -> None:
        failed.append(err)
        if server is not None:
            server.should_exit = True  # uvicorn shuts down cleanly, then we exit non-zero

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
    app = create_app(spec.load, settings, on_load_error=on_load_error)
    print(f"llm2vec-rag serve: model {settings.model_name!r} (and "
          f"{settings.model_name + '-query'!r}) on http://{args.host}:{args.port}, "
          f"auth {'on' if key else 'off'} ({API_KEY_ENV}), batching "
          f"{'on' if settings.batching else 'off'}", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            timeout_graceful_shutdown=args.graceful_timeout,
                            access_log=args.access_log)
    server = uvicorn.Server(config)
    # SIGTERM/SIGINT: uvicorn stops listening, answers in-flight requests (up to
    # --graceful-timeout), runs the app's shutdown (the batcher drains), then re-raises the
    # signal, so the process ends as terminated by it.
    server.run()
    if failed:
        raise RuntimeError(f"the model failed to load: {failed[0]}")
    return 0


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
    b.add_argument("--no-normalize", action="store_true",
                   help="/v1/embeddings returns raw vectors instead of unit vectors")
    p.set_defaults(func=cmd_serve)
