"""ONNX Runtime sessions: execution providers, thread settings, IO binding and dtype handling.

ONNX Runtime falls back to the CPU silently when a CUDA session cannot be created (no
onnxruntime-gpu, no driver, a missing cuDNN). :func:`create_session` therefore checks
``session.get_providers()`` after creating the session: ``device="cuda"`` raises when CUDA is
not really active, ``device="auto"`` warns loudly and goes on on the CPU.

Threads: by default a session uses as many intra-op threads as this process may run on
(``os.sched_getaffinity``), one inter-op thread and sequential execution, and does not spin
waiting for work, so that when it shares the cores with the Rust decoding threads (CLIP decodes
the next batch while the current one runs) idle ORT threads give their core back at once.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interleaf._checks import int_arg

DEVICES = ("auto", "cuda", "cpu")

# ONNX tensor element types as ONNX Runtime names them, and their numpy types.
_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


class ProviderWarning(RuntimeWarning):
    """CUDA was asked for (or allowed) and is not active: the session runs on the CPU."""


def available_cores() -> int:
    """Cores this process may run on (``os.sched_getaffinity``, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _ort():
    try:
        import onnxruntime
    except ImportError as e:  # pragma: no cover - a dependency; only a broken install lacks it
        raise ImportError("interleaf.models needs onnxruntime (pip install onnxruntime, or onnxruntime-gpu for CUDA)") from e
    return onnxruntime


def cuda_available() -> bool:
    """True when the installed ONNX Runtime build offers the CUDA provider (onnxruntime-gpu).
    Whether it really works is only known once a session is created; see :func:`create_session`."""
    return "CUDAExecutionProvider" in _ort().get_available_providers()


def require_cuda_provider(device: str) -> None:
    """Raises RuntimeError when ``device`` is ``"cuda"`` and the installed ONNX Runtime has no
    CUDA provider (the CPU-only ``onnxruntime`` package): checked when a model is loaded, before
    any session is made."""
    if device == "cuda" and not cuda_available():
        raise RuntimeError(
            f"device='cuda' but this ONNX Runtime ({_ort().__version__}) has no CUDAExecutionProvider: "
            "replace it with onnxruntime-gpu (pip uninstall -y onnxruntime && pip install onnxruntime-gpu)"
        )


@dataclass
class Session:
    """An ONNX Runtime session with what the model layer needs to feed it.

    Attributes:
        path: the ``.onnx`` file.
        device: ``"cuda"`` or ``"cpu"``: where it really runs (from ``get_providers()``).
        providers: ``session.get_providers()``.
        inputs: input name -> numpy dtype the graph expects.
        input_shapes: input name -> declared shape (ints for fixed axes, strings or None for dynamic).
        outputs: output names, in graph order.
        io_binding: run through IO binding (default on CUDA): inputs are copied to the device
            once and outputs stay there until fetched.
    """

    path: Path
    session: Any
    device: str
    providers: list[str]
    inputs: dict[str, Any]
    input_shapes: dict[str, list]
    outputs: list[str]
    io_binding: bool = False
    device_id: int = 0
    runs: int = field(default=0, repr=False)

    def run(self, feed: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Runs the graph on ``feed`` (only the names the graph declares are passed; each array
        is cast to the dtype the graph expects) and returns the requested outputs (default:
        all) as numpy arrays."""
        names = list(outputs) if outputs is not None else self.outputs
        missing = [n for n in names if n not in self.outputs]
        if missing:
            raise ValueError(f"{self.path.name} has no output {missing}; it has {self.outputs}")
        unfed = [n for n in self.inputs if n not in feed]
        if unfed:
            raise ValueError(f"{self.path.name} needs inputs {unfed}, got {sorted(feed)}")
        arrays = {n: np.ascontiguousarray(feed[n], dtype=self.inputs[n]) for n in self.inputs}
        self.runs += 1
        if not self.io_binding:
            return dict(zip(names, self.session.run(names, arrays)))
        ort = _ort()
        binding = self.session.io_binding()
        device = "cuda" if self.device == "cuda" else "cpu"
        dev_id = self.device_id if device == "cuda" else 0
        for n, a in arrays.items():
            binding.bind_ortvalue_input(n, ort.OrtValue.ortvalue_from_numpy(a, device, dev_id))
        for n in names:
            binding.bind_output(n, device, dev_id)
        self.session.run_with_iobinding(binding)
        return dict(zip(names, binding.copy_outputs_to_cpu()))


def session_options(threads: int | None = None, spin: bool = False):
    """``SessionOptions`` that do not oversubscribe the machine: ``threads`` intra-op threads
    (default: the cores this process may use), one inter-op thread, sequential execution, no
    spin-waiting unless ``spin``, all graph optimisations."""
    ort = _ort()
    int_arg("threads", threads, 1, 1024, optional=True)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or available_cores()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.log_severity_level = 3
    return so


def create_session(path: str | os.PathLike, device: str = "auto", *, threads: int | None = None, io_binding: bool | None = None, spin: bool = False, device_id: int = 0) -> Session:
    """Creates an ONNX Runtime session for ``path`` on ``device``.

    Args:
        device: ``"cuda"`` (raise unless the CUDA provider is really active), ``"cpu"``, or
            ``"auto"`` (CUDA when onnxruntime-gpu is installed and works, with a
            :class:`ProviderWarning` when it is installed but the session fell back to the CPU).
        threads: CPU intra-op threads (default: the cores this process may use).
        io_binding: use IO binding (default: on CUDA only).
        spin: let idle ORT threads spin (lower latency, but it takes CPU from decoding threads).
        device_id: the CUDA device.
    """
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, not {device!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    want_cuda = device == "cuda" or (device == "auto" and cuda_available())
    require_cuda_provider(device)
    providers: list[Any] = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"] if want_cuda else ["CPUExecutionProvider"]
    sess = _inference_session(path, session_options(threads, spin), providers)
    active = sess.get_providers()
    on_cuda = "CUDAExecutionProvider" in active
    if want_cuda and not on_cuda:
        msg = (
            f"CUDA was requested for {path.name} but ONNX Runtime is running it on {active}: "
            "the CUDA provider failed to start (check the CUDA and cuDNN libraries onnxruntime-gpu needs)"
        )
        if device == "cuda":
            raise RuntimeError(msg)
        warnings.warn(msg, ProviderWarning, stacklevel=2)
    inputs, shapes = {}, {}
    for i in sess.get_inputs():
        if i.type not in _ORT_DTYPES:
            raise ValueError(f"{path.name}: input {i.name} has type {i.type}, which interleaf does not feed")
        inputs[i.name] = _ORT_DTYPES[i.type]
        shapes[i.name] = list(i.shape)
    return Session(
        path=path,
        session=sess,
        device="cuda" if on_cuda else "cpu",
        providers=active,
        inputs=inputs,
        input_shapes=shapes,
        outputs=[o.name for o in sess.get_outputs()],
        io_binding=on_cuda if io_binding is None else io_binding,
        device_id=device_id,
    )


def _inference_session(path: str | os.PathLike, options, providers: list):
    """``onnxruntime.InferenceSession``, with a bad file as a ValueError naming it."""
    try:
        return _ort().InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for bad files
        raise ValueError(f"{path} could not be loaded by ONNX Runtime: {type(e).__name__}: {e}") from None


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """Inputs and outputs of an ONNX file (name, type, shape), read by ONNX Runtime on the CPU."""
    ort = _ort()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = _inference_session(path, so, ["CPUExecutionProvider"])
    io = lambda xs: [{"name": x.name, "type": x.type, "shape": list(x.shape)} for x in xs]
    return {"inputs": io(sess.get_inputs()), "outputs": io(sess.get_outputs())}
