"""The worker side of isolation (fla_check.engine.worker): serving requests in this process."""
import pickle

import torch

from device import DEVICE
from fla_check.cases import CaseConfig, build_case
from fla_check.engine.worker import CallRequest, is_fatal_device_error, serve, to_device
from fla_check.ops import get_mode, get_op

CFG = CaseConfig(op="gla", dtype="float32", B=1, T=6, H=1, K=16, V=16, seed=1)


def _request(mode="recurrent", spec=True, **kw):
    s = get_mode(get_op("gla"), mode)
    return CallRequest("gla", s.qualified, pickle.dumps(s) if spec else None, (), (), build_case(CFG), **kw)


def test_serve_runs_the_mode_and_returns_cpu_tensors():
    kind, raw, grads, seconds, kernels = serve(_request(), DEVICE, set())
    assert kind == "ok" and grads == {} and seconds > 0 and kernels == {}  # no autotuned kernel
    o, ht = raw
    assert o.shape == (1, 6, 1, 16) and ht.shape == (1, 1, 16, 16) and not o.requires_grad


def test_serve_resolves_by_name_without_a_pickle_and_reports_unknown_modes():
    assert serve(_request(spec=False), DEVICE, set())[0] == "ok"
    req = _request(spec=False)
    req.mode = "nowhere:chunk"
    kind, reason = serve(req, DEVICE, set())
    assert kind == "unportable" and "nowhere:chunk" in reason


def test_fatal_device_errors_are_recognised():
    assert is_fatal_device_error(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert is_fatal_device_error(RuntimeError("Triton Error [CUDA]: misaligned address"))
    assert is_fatal_device_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert not is_fatal_device_error(RuntimeError("shape mismatch"))
    assert not is_fatal_device_error(ValueError("CUDA out of memory"))  # recoverable


def test_to_device_moves_nested_tensors_and_detaches():
    x = torch.ones(2, requires_grad=True)
    moved = to_device({"a": (x * 2, None), "b": [x]}, "cpu")
    assert not moved["a"][0].requires_grad and moved["a"][1] is None and torch.equal(moved["b"][0], x.detach())


def test_serve_applies_the_autotune_policy_in_the_worker():
    """The config policy crosses to the worker: the autotuned kernels seen come back, a forced
    config is applied there, and one out of range is a usage error, not a verdict."""
    from fla_check.engine.configs import parse_policy

    cfg = CaseConfig(op="simple_gla", dtype="float32", B=1, T=6, H=1, K=16, V=16, seed=1)
    spec = get_mode(get_op("simple_gla"), "chunk")
    req = CallRequest("simple_gla", spec.qualified, pickle.dumps(spec), (), (), build_case(cfg))
    kind, _, _, _, kernels = serve(req, DEVICE, set())
    assert kind == "ok" and KERNEL in kernels and len(kernels[KERNEL].configs) > 1
    req.policy = parse_policy("first", [f"{KERNEL}:1"])
    assert serve(req, DEVICE, set())[0] == "ok"
    req.policy = parse_policy("first", [f"{KERNEL}:999"])
    kind, message = serve(req, DEVICE, set())
    assert kind == "policy" and f"{KERNEL}:999" in message


KERNEL = "simple_gla_fwd_o_kernel"
