"""GradCache (Gao et al., 2021): a contrastive batch larger than memory, with exact gradients.

1. Embed every chunk without a graph, recording each chunk's RNG state (dropout masks).
2. Compute the loss on the detached embeddings; take its gradient w.r.t. the embeddings.
3. Re-embed each chunk with a graph under the recorded RNG state and backpropagate
   ``(embeddings * their gradient).sum()``: the same parameter gradient as one big batch,
   with activation memory of one chunk.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

Embed = Callable[[dict[str, torch.Tensor]], torch.Tensor]


class RNGState:
    """The CPU and CUDA RNG state at construction, replayable later."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    @contextlib.contextmanager
    def replay(self):
        devices = list(range(len(self.cuda))) if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state_all(self.cuda)
            yield


def chunks(inputs: dict[str, torch.Tensor], size: int) -> list[dict[str, torch.Tensor]]:
    """Split every tensor of a batch along dim 0 into pieces of ``size`` rows."""
    n = next(iter(inputs.values())).shape[0]
    return [{k: v[i: i + size] for k, v in inputs.items()} for i in range(0, n, size)]


def grad_cache_step(groups: list[dict[str, torch.Tensor]], embed: Embed,
                    loss_on_embeddings: Callable[[list[torch.Tensor]], torch.Tensor],
                    backward: Callable[[torch.Tensor], None], chunk_size: int,
                    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None
                    ) -> torch.Tensor:
    """One GradCache forward/backward over ``groups`` (e.g. queries, documents); returns the loss.

    ``backward`` is called once per chunk; ``no_sync`` (DDP's) keeps gradient all-reduce to the
    last call.
    """
    pieces = [chunks(group, chunk_size) for group in groups]
    states: list[list[RNGState]] = []
    cached: list[torch.Tensor] = []
    with torch.no_grad():
        for group in pieces:
            states.append([])
            outs = []
            for piece in group:
                states[-1].append(RNGState())
                outs.append(embed(piece))
            cached.append(torch.cat(outs).detach().requires_grad_())  # [N_group, D]
    loss = loss_on_embeddings(cached)
    grads = torch.autograd.grad(loss, cached)
    todo = [(g, c) for g in range(len(pieces)) for c in range(len(pieces[g]))]
    for n, (g, c) in enumerate(todo):
        start = c * chunk_size
        grad = grads[g][start: start + chunk_size]
        sync = contextlib.nullcontext() if no_sync is None or n == len(todo) - 1 else no_sync()
        with sync, states[g][c].replay():
            backward((embed(pieces[g][c]) * grad).sum())
    return loss.detach()
