"""The model side of a trial as plain functions: what the worker loop calls to build, price and train a candidate.

The loop takes them from a `TrialFunctions`, never from module attributes, so a test (or a benchmark that times
them) passes a TrialFunctions with its own functions: `dataclasses.replace(default_functions(), train=fake)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TrialFunctions:
    """The functions a trial runs, each with the signature of the real one named beside it."""

    build: Callable[..., Any]  # gcsearch.build_model(spec, num_classes=, in_chans=) -> nn.Module
    measure: Callable[..., Any]  # gcsearch.measure(spec, input_size=, num_classes=, latency=, device=)
    train: Callable[..., Any]  # training.loop.train_candidate(model, data, proxy, seed=, device=, on_epoch=, on_step=)
    seed: Callable[[int], None]  # training.loop.seed_everything: before `build`, so a trial's weights repeat
    warm_up: Callable[[Any], None]  # training.device.warm_up(device): once, before a process's first training
    free_memory: Callable[[], None]  # after a failed trial, once its exception is gone
    weights: Callable[..., bytes]  # model.weights.weights_bytes(model, spec, num_classes=, in_chans=, info=)
    load_start: Callable[[Any, dict[str, Any]], list[str]]  # model.weights.load_shared(model, state_dict)
    read_state: Callable[[bytes], dict[str, Any]]  # a weights file's checked state dict (read_weights(...).state_dict)


def default_functions() -> TrialFunctions:
    """The real functions. Imports torch and fvcore, so call it once the study file is known to be good."""
    from gcsearch.model.cost import measure
    from gcsearch.model.resnet import build_model
    from gcsearch.model.weights import load_shared, read_weights, weights_bytes
    from gcsearch.training.device import free_memory, warm_up
    from gcsearch.training.loop import seed_everything, train_candidate

    return TrialFunctions(build=build_model, measure=measure, train=train_candidate, seed=seed_everything,
                          warm_up=warm_up, free_memory=free_memory, weights=weights_bytes, load_start=load_shared,
                          read_state=lambda content: read_weights(content, "the start's weights").state_dict)
