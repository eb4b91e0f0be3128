"""
lm-evaluation-harness model backend for a nanoGPT checkpoint (trusted, frozen code).

    from lm_eval_adapter import LocalModel, NanoGPTLM, load_trusted_model
    lm = NanoGPTLM(LocalModel(load_trusted_model("train_out/", device="cpu")), batch_size=32)
    lm_eval.simple_evaluate(model=lm, tasks=[...])

or, through lm-eval's registry: model="nanogpt", model_args="ckpt_dir=train_out/,batch_size=32".

What is scored is a source of hidden states: an object with `n_embd`, `head_weight` (the lm_head
matrix, (vocab, n_embd), fp32, on `device`), `submit(tokens, positions)` (tokens (B, T) and flat
positions (K,), int64 numpy) and `fetch()` -> the (K, n_embd) fp32 inputs of lm_head at those
positions, one fetch per submit, in order. LocalModel is a GPT in this process, built from this
codebase's own custom_pretrain.py (the trusted architecture); evaluate.py's WorkerModel asks a
logits worker, where the agent's architecture runs (logits_worker.py). This module applies the
head itself, only at the scored positions and a few rows at a time (for a small model the 50k-wide
head is most of the work), and computes the log-probabilities with torch functions captured when
it is imported.

What it scores:
- loglikelihood: log p(continuation | context) summed over the continuation's tokens; the
  context is truncated from the left so that context+continuation fits the block size.
- loglikelihood_rolling: a whole document split into lm-eval's rolling windows
  (get_rolling_token_windows + make_disjoint_window, context_len=1, the <|endoftext|> token as
  the first window's prefix), every token scored once; the per-document sum is returned.
- generate_until: refused (PretrainBench's tasks are all log-likelihood tasks).

Batching: requests are sorted by length (longest first, so a batch pads little), right-padded
(causal attention: padding on the right cannot change earlier positions; the evaluator checks
causality wherever the architecture is not its own), and only the continuation positions are
scored. The next batch is submitted before the current one is scored, so a worker computes while
this process applies the head.
"""

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# trusted references, taken when this module is imported: code that rebinds
# torch.nn.functional.log_softmax (say) later cannot change what we compute
_linear = F.linear
_log_softmax = F.log_softmax
_gather = torch.gather
_argmax = torch.argmax
_no_grad = torch.no_grad
_from_numpy = torch.from_numpy

from lm_eval.api.model import TemplateLM  # noqa: E402
from lm_eval.api.registry import register_model  # noqa: E402
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window  # noqa: E402

import pb_checkpoint  # noqa: E402

DEFAULT_BATCH_SIZE = 32  # sequences per forward pass; 1 reproduces unbatched scoring
HEAD_CHUNK_ROWS = {"cpu": 32, "cuda": 2048}  # positions per lm_head + log_softmax call: on CPU
# (32, 50304) fp32 stays in cache; on a GPU bigger chunks keep the matmuls efficient


class AdapterError(RuntimeError):
    """The model cannot be scored (broken contract, bad arguments)."""


# -----------------------------------------------------------------------------
# a GPT of this process as a source of hidden states


def load_trusted_model(ckpt_dir=None, device="cpu", ckpt=None):
    """GPT of this codebase's own custom_pretrain.py (never the saved model source) with the
    checkpoint's weights, in eval mode: the trusted architecture."""
    import custom_pretrain  # the sibling file of this one: the evaluator's own copy

    if ckpt is None:
        ckpt = pb_checkpoint.load_checkpoint(ckpt_dir)
    return pb_checkpoint.build_model(custom_pretrain, ckpt, device)



class LocalModel:
    """Hidden states from a GPT in this process (GPT.forward ends in lm_head: frozen code)."""

    def __init__(self, model):
        self.model = model.eval()
        head = model.lm_head.head if isinstance(model.lm_head, pb_checkpoint.CaptureHead) else model.lm_head
        self.capture = pb_checkpoint.CaptureHead(head)
        self.model.lm_head = self.capture
        self.head_weight = head.weight
        self.device = self.head_weight.device
        self.n_embd = self.head_weight.shape[1]
        self.pending = []

    def submit(self, tokens, positions):
        self.pending.append((tokens, positions))

    @_no_grad()
    def fetch(self):
        tokens, positions = self.pending.pop(0)
        idx = _from_numpy(tokens).to(self.device)
        self.capture.captured = None
        self.model(idx)
        h = self.capture.captured
        return h.reshape(-1, h.size(-1))[_from_numpy(positions).to(self.device)].float()


# -----------------------------------------------------------------------------
# the lm-eval model


@register_model("nanogpt")
class NanoGPTLM(TemplateLM):
    """A GPT-2-tokenized causal LM scored through a source of hidden states (see the module doc)."""

    def __init__(self, source=None, ckpt_dir=None, encoding=None, device=None, batch_size=DEFAULT_BATCH_SIZE,
                 block_size=None, **kwargs):
        super().__init__()
        if source is None:
            if not ckpt_dir:
                raise AdapterError("NanoGPTLM needs a source of hidden states or ckpt_dir=<training output dir>")
            if device in (None, ""):
                device = "cuda" if torch.cuda.is_available() else "cpu"
            source = LocalModel(load_trusted_model(ckpt_dir, device=device))
        self.source = source
        self._device = torch.device(source.head_weight.device)
        self.head_weight = source.head_weight.float()
        if encoding is None:
            import pb_tokenizer  # sibling module; resolves PB_TOKENIZER_DIR

            encoding = pb_tokenizer.get_gpt2_encoding()
        self.enc = encoding
        cfg = getattr(getattr(source, "model", None), "config", None)
        self.block_size = int(block_size or getattr(cfg, "block_size", 0) or 0)
        if self.block_size < 1:
            raise AdapterError("block size unknown: pass block_size=")
        self.batch_size = int(batch_size) if str(batch_size) not in ("", "auto") else DEFAULT_BATCH_SIZE
        if self.batch_size < 1:
            raise AdapterError(f"batch_size must be >= 1, got {batch_size}")

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

    # --- scoring ---------------------------------------------------------------------

    def _batches(self, order, bs):
        """(members, tokens (B, T), flat positions, targets, counts) per batch of `order`."""
        for start in range(0, len(order), bs):
            batch = order[start:start + bs]
            T = len(batch[0][1])
            tokens = np.full((len(batch), T), self.eot_token_id, dtype=np.int64)
            positions, targets, counts = [], [], []
            for r, (_, inp, cont) in enumerate(batch):
                L, n = len(inp), len(cont)
                tokens[r, :L] = inp  # right padding
                positions += range(r * T + L - n, r * T + L)  # logits at position p predict token p + 1
                targets += cont
                counts.append(n)
            yield batch, tokens, np.array(positions, dtype=np.int64), targets, counts

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
        batches = self._batches(order, bs)
        step = HEAD_CHUNK_ROWS.get(self._device.type, 32)
        current = next(batches, None)
        if current is not None:
            self.source.submit(current[1], current[2])
        while current is not None:
            batch, _, _, targets, counts = current
            hidden = self.source.fetch()
            current = next(batches, None)
            if current is not None:  # the source works on the next batch while this one is scored
                self.source.submit(current[1], current[2])
            tgt = torch.tensor(targets, device=self._device)
            tok_logp = torch.empty(len(targets), dtype=torch.float64)
            greedy = torch.empty(len(targets), dtype=torch.bool)
            for k0 in range(0, len(targets), step):
                k1 = min(k0 + step, len(targets))
                logits = _linear(hidden[k0:k1], self.head_weight).float()
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
