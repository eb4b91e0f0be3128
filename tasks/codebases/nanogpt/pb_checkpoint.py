"""
The outputs of a training job, and how the jobs after it read them without running any code the
training wrote: ckpt.pt through torch.load(weights_only=True) (tensors and plain data only, no
pickled objects), .training_complete as JSON, model_source.py (the trained custom_pretrain.py) as
text. Only a logits worker ever imports model_source.py (import_model_source); the evaluator
builds the trusted architecture from its own custom_pretrain.py.
"""

import importlib.util
import json
import sys
from pathlib import Path

import torch

CKPT_FILE = "ckpt.pt"
MARKER_FILE = ".training_complete"  # written last by training: the run finished
MODEL_SOURCE_FILE = "model_source.py"  # the custom_pretrain.py that was trained
MAX_MARKER_BYTES = 1 << 20
MAX_SOURCE_BYTES = 4 << 20
COMPILE_PREFIX = "_orig_mod."  # torch.compile's prefix of parameter names; the weights are the same


class CheckpointError(RuntimeError):
    """A training output that cannot be evaluated (missing, malformed, or not what it claims)."""


def load_checkpoint(ckpt_dir):
    """ckpt.pt of a training output directory, loaded without running any pickled code."""
    path = Path(ckpt_dir) / CKPT_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a loadable checkpoint: {e}") from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path}: the checkpoint is not a dict")
    for key in ("model", "model_config"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{path}: the checkpoint has no {key!r} dict")
    return ckpt


def read_marker(ckpt_dir):
    """The JSON object of .training_complete; CheckpointError if training did not complete."""
    path = Path(ckpt_dir) / MARKER_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: training did not complete, nothing to evaluate")
    try:
        if path.stat().st_size > MAX_MARKER_BYTES:
            raise ValueError("too large")
        marker = json.loads(path.read_text() or "{}")
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} is not valid JSON: {e}") from e
    if type(marker) is not dict:
        raise CheckpointError(f"{path} must hold a JSON object")
    return marker


def model_state(ckpt):
    """The saved weights by parameter name, without torch.compile's prefix."""
    return {k.removeprefix(COMPILE_PREFIX): v for k, v in ckpt["model"].items()}


def head_weight(ckpt, vocab_size, n_embd):
    """The lm_head matrix (vocab_size, n_embd) in fp32, checked: finite, and the token embedding
    it is tied to in GPT (frozen code) holds the same values."""
    state = model_state(ckpt)
    w = state.get("lm_head.weight")
    if not torch.is_tensor(w) or tuple(w.shape) != (vocab_size, n_embd) or not w.is_floating_point():
        shape = tuple(w.shape) if torch.is_tensor(w) else type(w).__name__
        raise CheckpointError(f"the checkpoint's lm_head.weight is {shape}, expected a ({vocab_size}, {n_embd}) float matrix")
    w = w.float()
    if not torch.isfinite(w).all():
        raise CheckpointError("the checkpoint's lm_head.weight holds non-finite values")
    wte = state.get("transformer.wte.weight")
    if not torch.is_tensor(wte) or tuple(wte.shape) != tuple(w.shape) or not torch.equal(wte.float(), w):
        raise CheckpointError("the checkpoint's lm_head.weight and transformer.wte.weight differ, but GPT ties them")
    return w


def read_model_source(ckpt_dir):
    """model_source.py as text (read, never run)."""
    path = Path(ckpt_dir) / MODEL_SOURCE_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: the trained model source is missing")
    if path.stat().st_size > MAX_SOURCE_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_SOURCE_BYTES} bytes")
    return path.read_text(encoding="utf-8", errors="replace")


def import_model_source(ckpt_dir, name="pb_model_source"):
    """model_source.py imported as a fresh module (never as __main__: nothing trains). Agent code:
    only a logits worker calls this."""
    path = Path(ckpt_dir) / MODEL_SOURCE_FILE
    read_model_source(ckpt_dir)  # present and of a sane size
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CheckpointError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise CheckpointError(f"{MODEL_SOURCE_FILE}: importing the trained model source failed: {e!r}") from e
    for attr in ("GPT", "GPTConfig"):
        if not hasattr(module, attr):
            raise CheckpointError(f"{MODEL_SOURCE_FILE}: defines no {attr}")
    return module


class CaptureHead(torch.nn.Module):
    """Stands in for model.lm_head: keeps its input (B, T, C) and returns an empty tensor, so the
    vocabulary-wide head is never computed there (the trusted evaluator applies it itself)."""

    def __init__(self, head):
        super().__init__()
        self.head = head
        self.captured = None

    def forward(self, x):
        self.captured = x
        return x.new_empty(0)


def build_model(module, ckpt, device):
    """module.GPT(module.GPTConfig(**model_config)) with the checkpoint's weights (strict), in
    eval mode on device."""
    try:
        model = module.GPT(module.GPTConfig(**ckpt["model_config"]))
        model.load_state_dict(model_state(ckpt), strict=True)
    except Exception as e:
        raise CheckpointError(f"rebuilding the model from the checkpoint failed: {e}") from e
    return model.to(device).eval()
