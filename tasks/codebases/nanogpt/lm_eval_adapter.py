"""
lm-evaluation-harness model backend for a nanoGPT checkpoint (trusted, frozen code).

    from lm_eval_adapter import NanoGPTLM, load_checkpoint_model
    model, ckpt = load_checkpoint_model("out/", device="cpu")
    lm = NanoGPTLM(model, batch_size=32)
    lm_eval.simple_evaluate(model=lm, tasks=[...])

or, through lm-eval's registry: model="nanogpt", model_args="ckpt_dir=out/,batch_size=32".

What it scores:
- loglikelihood: log p(continuation | context) summed over the continuation's tokens; the
  context is truncated from the left so that context+continuation fits the block size.
- loglikelihood_rolling: a whole document split into lm-eval's rolling windows
  (get_rolling_token_windows + make_disjoint_window, context_len=1, the <|endoftext|> token as
  the first window's prefix), every token scored once; the per-document sum is returned.
- generate_until: refused (PretrainBench's tasks are all log-likelihood tasks).

Batching: requests are sorted by length (longest first, so a batch pads little), right-padded
(causal attention: padding on the right cannot change earlier positions; the evaluator checks
causality before it trusts a model), and only the continuation positions are scored. Where the
model returns the output of `self.lm_head(x)` unchanged (checked on every call), the hidden states
at those positions are taken instead and this module applies the 50k-wide head to them, a few rows
at a time; for a small model that head is most of the work. Otherwise the full logits are sliced.

The losses are computed here, with torch functions captured when this module is imported, i.e.
before the evaluator imports any agent code (the saved model_source.py).
"""

import importlib.util
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

# trusted references, taken before any agent code runs in this process: agent code that
# rebinds torch.nn.functional.log_softmax (say) cannot change what we compute
_log_softmax = F.log_softmax
_gather = torch.gather
_argmax = torch.argmax
_no_grad = torch.no_grad
_allclose = torch.allclose

from lm_eval.api.model import TemplateLM  # noqa: E402
from lm_eval.api.registry import register_model  # noqa: E402
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window  # noqa: E402

DEFAULT_BATCH_SIZE = 32  # sequences per forward pass; 1 reproduces unbatched scoring
HEAD_CHUNK_ROWS = {"cpu": 32, "cuda": 2048}  # positions per lm_head + log_softmax call: on CPU
# (32, 50304) fp32 stays in cache; on a GPU bigger chunks keep the matmuls efficient
MODEL_SOURCE_FILE = "model_source.py"  # the custom_pretrain.py that was trained
CKPT_FILE = "ckpt.pt"


class AdapterError(RuntimeError):
    """The checkpoint or the model cannot be evaluated (bad file, broken contract)."""


# -----------------------------------------------------------------------------
# loading the trained model


def _import_model_source(path):
    """Import the saved training script as a fresh module (never as __main__: no training)."""
    name = "pb_model_source"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AdapterError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        raise AdapterError(f"{path}: importing the trained model source failed: {e!r}") from e
    for attr in ("GPT", "GPTConfig"):
        if not hasattr(module, attr):
            raise AdapterError(f"{path}: defines no {attr}")
    return module


def load_checkpoint(ckpt_dir):
    """ckpt.pt of a training output directory, loaded without running any pickled code."""
    path = Path(ckpt_dir) / CKPT_FILE
    if not path.is_file():
        raise AdapterError(f"{path}: no checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise AdapterError(f"{path}: not a loadable checkpoint: {e}") from e
    for key in ("model", "model_config"):
        if not isinstance(ckpt, dict) or key not in ckpt:
            raise AdapterError(f"{path}: the checkpoint has no {key!r} entry")
    return ckpt


def load_checkpoint_model(ckpt_dir, device="cpu", ckpt=None):
    """(model, ckpt): GPT rebuilt from ckpt_dir/model_source.py with the saved weights, in eval mode."""
    ckpt_dir = Path(ckpt_dir)
    if ckpt is None:
        ckpt = load_checkpoint(ckpt_dir)
    source = ckpt_dir / MODEL_SOURCE_FILE
    if not source.is_file():
        raise AdapterError(f"{source}: the trained model source is missing")
    module = _import_model_source(source)
    try:
        model = module.GPT(module.GPTConfig(**ckpt["model_config"]))
        # torch.compile prefixes parameter names; the weights are the same
        state = {k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()}
        model.load_state_dict(state, strict=True)
    except Exception as e:
        raise AdapterError(f"{ckpt_dir}: rebuilding the model from the checkpoint failed: {e}") from e
    model.to(device)
    model.eval()
    return model, ckpt


def model_logits(model, idx):
    """The (B, T, V) logits of model(idx), checking the model contract."""
    out = model(idx)
    logits = out[0] if isinstance(out, (tuple, list)) else out
    if not torch.is_tensor(logits) or logits.dim() != 3 or tuple(logits.shape[:2]) != tuple(idx.shape):
        shape = tuple(logits.shape) if torch.is_tensor(logits) else type(logits).__name__
        raise AdapterError(
            f"model(idx) must return logits for every position, shape (B, T, vocab); got {shape} "
            f"for idx of shape {tuple(idx.shape)}"
        )
    return logits


@_no_grad()
def check_causal(model, vocab_size, block_size, device="cpu", seed=1234):
    """Raise AdapterError if a position's logits depend on later tokens (a leak of the answer).

    Changes the tokens from a few cut points on and checks that the logits before each cut stay
    the same. Cheap; run once per evaluation, before any metric is computed.
    """
    T = min(block_size, 32)
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, min(vocab_size, 50257), (2, T), generator=g).to(device)
    base = model_logits(model, idx).float()
    for cut in sorted({1, T // 2, T - 1}):
        if cut < 1:
            continue
        other = idx.clone()
        other[:, cut:] = torch.randint(0, min(vocab_size, 50257), (2, T - cut), generator=g).to(device)
        changed = model_logits(model, other).float()
        # a leak moves logits by far more than kernel rounding (TF32 on GPUs) ever does
        if not _allclose(base[:, :cut], changed[:, :cut], atol=1e-3, rtol=1e-3):
            raise AdapterError(
                f"the model is not causal: logits at positions < {cut} change when tokens from "
                f"position {cut} on change, so its losses would not be next-token predictions"
            )


class _PositionHead(nn.Module):
    """Wraps model.lm_head. Armed with (rows, cols), it keeps the hidden states at those positions
    and returns a marker tensor instead of logits; the adapter then applies the head itself, only
    there and a few rows at a time. Unarmed, it is the head."""

    def __init__(self, head):
        super().__init__()
        self.head = head
        self.rows = None
        self.cols = None
        self.captured = None
        self.marker = None

    def forward(self, x):
        if self.rows is None:
            return self.head(x)
        self.captured = x[self.rows, self.cols]  # (K, C)
        self.marker = torch.empty(0, device=x.device)
        return self.marker


# -----------------------------------------------------------------------------
# the lm-eval model


@register_model("nanogpt")
class NanoGPTLM(TemplateLM):
    """A nanoGPT model (GPT(config), model(idx) -> (logits, None)) with the GPT-2 tokenizer."""

    def __init__(self, model=None, ckpt_dir=None, encoding=None, device=None, batch_size=DEFAULT_BATCH_SIZE,
                 block_size=None, select_head=True, **kwargs):
        super().__init__()
        if device in (None, ""):
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._device = torch.device(device)
        if model is None:
            if not ckpt_dir:
                raise AdapterError("NanoGPTLM needs a model or ckpt_dir=<training output dir>")
            model, _ = load_checkpoint_model(ckpt_dir, device=self.device)
        self.model = model.to(self.device).eval()
        if encoding is None:
            import pb_tokenizer  # sibling module; resolves PB_TOKENIZER_DIR
            encoding = pb_tokenizer.get_gpt2_encoding()
        self.enc = encoding
        cfg = getattr(model, "config", None)
        self.block_size = int(block_size or getattr(cfg, "block_size", 0) or 0)
        if self.block_size < 1:
            raise AdapterError("block size unknown: the model has no config.block_size; pass block_size=")
        self.vocab_size = int(getattr(cfg, "vocab_size", 0) or 0)
        self.batch_size = int(batch_size) if str(batch_size) not in ("", "auto") else DEFAULT_BATCH_SIZE
        if self.batch_size < 1:
            raise AdapterError(f"batch_size must be >= 1, got {batch_size}")
        self._head = None
        self._head = self._install_position_head() if select_head else None

    # --- tokenizer ---------------------------------------------------------------

    @property
    def eot_token_id(self):
        return self.enc.eot_token

    @property
    def max_length(self):
        return self.block_size

    def tok_encode(self, string, add_special_tokens=None, **kwargs):
        # text is text: "<|endoftext|>" inside a document is not the special token
        return self.enc.encode_ordinary(string)

    def tok_decode(self, tokens, **kwargs):
        return self.enc.decode(tokens)

    # --- forward on selected positions ---------------------------------------------

    @_no_grad()
    def _install_position_head(self):
        """Wrap model.lm_head if the model's output is demonstrably the head's; else None."""
        head = getattr(self.model, "lm_head", None)
        if isinstance(head, _PositionHead):  # a second adapter on the same model
            head = head.head
            self.model.lm_head = head
        if not isinstance(head, nn.Module):
            return None
        wrapper = _PositionHead(head)
        self.model.lm_head = wrapper
        self._head = wrapper
        T = min(self.block_size, 8)
        high = min(self.vocab_size or 50257, 50257)
        idx = torch.randint(0, high, (2, T), generator=torch.Generator().manual_seed(0)).to(self.device)
        full = model_logits(self.model, idx).float()
        rows = torch.tensor([0, 1, 1], device=self.device)
        cols = torch.tensor([T - 1, 0, T - 1], device=self.device)
        hidden = self._hidden_at(idx, rows, cols)
        ok = hidden is not None and _allclose(head(hidden).float(), full[rows, cols], atol=1e-5, rtol=1e-4)
        if not ok:
            self.model.lm_head = head
            return None
        return wrapper

    def _hidden_at(self, idx, rows, cols):
        """The hidden states (K, C) entering lm_head at positions (rows[k], cols[k]) of idx (B, T),
        or None when the model's output is not the head's output unchanged (then logits are sliced)."""
        head = self._head
        head.rows, head.cols, head.captured, head.marker = rows, cols, None, None
        try:
            out = self.model(idx)
        except Exception:
            return None  # a forward that reshapes or post-processes the head's output
        finally:
            head.rows = head.cols = None
        returned = out[0] if isinstance(out, (tuple, list)) else out
        captured, marker = head.captured, head.marker
        head.captured = head.marker = None
        return captured if returned is marker and marker is not None else None

    def _logit_chunks(self, idx, rows, cols):
        """(k0, k1, fp32 logits of positions k0..k1-1), a few rows at a time (the vocab is wide)."""
        hidden = self._hidden_at(idx, rows, cols) if self._head is not None else None
        if hidden is None:
            full = model_logits(self.model, idx)
            hidden, head = full[rows, cols], None
        else:
            head = self._head.head
        step = HEAD_CHUNK_ROWS.get(self.device.type, 32)
        for k0 in range(0, hidden.size(0), step):
            k1 = min(k0 + step, hidden.size(0))
            chunk = hidden[k0:k1]
            yield k0, k1, (head(chunk) if head is not None else chunk).float()

    # --- scoring ---------------------------------------------------------------------

    @_no_grad()
    def score_token_pairs(self, pairs, batch_size=None):
        """[(sum log p(cont | ctx), cont is the greedy continuation)] for (ctx, cont) token lists.

        The input is (ctx + cont)[-(block_size + 1):][:-1]: the context is truncated from the left.
        """
        bs = int(batch_size or self.batch_size)
        items = []  # (request index, input tokens, continuation tokens)
        for i, (ctx, cont) in enumerate(pairs):
            cont = list(cont)
            if len(cont) > self.block_size:
                raise AdapterError(
                    f"a continuation of {len(cont)} tokens does not fit the block size {self.block_size}"
                )
            whole = (list(ctx) + cont)[-(self.block_size + 1):]
            items.append((i, whole[:-1], cont))
        results = [(0.0, True)] * len(items)
        # longest first: a batch's members have similar lengths, and an out-of-memory shows up at once
        order = sorted((it for it in items if it[2]), key=lambda it: -len(it[1]))
        for start in range(0, len(order), bs):
            batch = order[start:start + bs]
            T = len(batch[0][1])
            idx = torch.full((len(batch), T), self.eot_token_id, dtype=torch.long)
            rows, cols, targets, counts = [], [], [], []
            for r, (_, inp, cont) in enumerate(batch):
                L, n = len(inp), len(cont)
                idx[r, :L] = torch.tensor(inp, dtype=torch.long)  # right padding
                rows += [r] * n
                cols += range(L - n, L)  # logits at position p predict token p + 1
                targets += cont
                counts.append(n)
            idx = idx.to(self.device)
            rows_t = torch.tensor(rows, device=self.device)
            cols_t = torch.tensor(cols, device=self.device)
            tgt = torch.tensor(targets, device=self.device)
            tok_logp = torch.empty(len(targets), dtype=torch.float64)
            greedy = torch.empty(len(targets), dtype=torch.bool)
            for k0, k1, logits in self._logit_chunks(idx, rows_t, cols_t):
                logp = _log_softmax(logits, dim=-1)  # fp32, over the whole vocabulary
                tok_logp[k0:k1] = _gather(logp, 1, tgt[k0:k1, None])[:, 0].double().cpu()
                greedy[k0:k1] = (_argmax(logits, dim=-1) == tgt[k0:k1]).cpu()
            k = 0
            for (i, _, _), n in zip(batch, counts, strict=True):
                results[i] = (float(tok_logp[k:k + n].sum()), bool(greedy[k:k + n].all()))
                k += n
        return results

    def _loglikelihood_tokens(self, requests, disable_tqdm=False, **kwargs):
        return self.score_token_pairs([(ctx, cont) for _, ctx, cont in requests])

    def rolling_windows(self, tokens):
        """lm-eval's disjoint rolling windows of a token list, as (context, continuation) pairs."""
        return [
            make_disjoint_window(w)
            for w in get_rolling_token_windows(
                token_list=list(tokens), prefix_token=self.eot_token_id,
                max_seq_len=self.block_size, context_len=1,
            )
        ]

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        """Per request, the total log-likelihood of its whole string (a float, as HFLM returns)."""
        owners, pairs = [], []
        for n, req in enumerate(requests):
            (string,) = req.args
            for window in self.rolling_windows(self.tok_encode(string)):
                owners.append(n)
                pairs.append(window)
        totals = [0.0] * len(requests)
        for n, (logp, _) in zip(owners, self.score_token_pairs(pairs), strict=True):
            totals[n] += logp
        for req, total in zip(requests, totals, strict=True):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm=False):
        raise NotImplementedError(
            "the nanogpt adapter scores log-likelihoods only (loglikelihood, loglikelihood_rolling); "
            "generation tasks are not part of PretrainBench's evaluation"
        )
