"""The lm-eval adapter: batched scoring equals unbatched scoring equals a naive reference, and
the perplexity metrics equal hand computations for a model whose probabilities are known.

Models are scored through ``LocalModel`` (the hidden states entering ``lm_head`` of a model in this
process; the adapter applies the head itself), as the evaluator scores its own GPT."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tests._fixtures.codebase import CODEBASE_DIR, EVAL_SETS_DIR, codebase_module
from tests._fixtures.evaluation import TOY_MODEL_SOURCE, import_source

BLOCK = 16  # a short block so that contexts and documents overflow it


@pytest.fixture(scope="module")
def adapter() -> Any:
    return codebase_module("lm_eval_adapter")


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> nn.Module:
    path = tmp_path_factory.mktemp("toy") / "model_source.py"
    path.write_text(TOY_MODEL_SOURCE)
    module = import_source(path, name="pb_test_toy_adapter")
    torch.manual_seed(0)
    cfg = module.GPTConfig(block_size=BLOCK, vocab_size=50304, n_layer=2, n_head=2, n_embd=32)
    return module.GPT(cfg).eval()


class BigramGPT(nn.Module):
    """p(next = v | previous token u) = softmax_v(E[u] . E[v]): probabilities known in closed form."""

    def __init__(
        self, vocab: int = 50304, dim: int = 8, block_size: int = BLOCK, seed: int = 0
    ) -> None:
        super().__init__()
        self.config = SimpleNamespace(block_size=block_size, vocab_size=vocab)
        g = torch.Generator().manual_seed(seed)
        self.wte = nn.Embedding(vocab, dim)
        with torch.no_grad():
            self.wte.weight.copy_(torch.randn(vocab, dim, generator=g))
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, None]:
        return self.lm_head(self.wte(idx)), None

    def log_table(self, prev: int) -> np.ndarray:
        """log p(. | prev) in float64, computed by hand with numpy."""
        e = self.wte.weight.detach().double().numpy()
        z = e @ e[prev]
        return z - (z.max() + np.log(np.exp(z - z.max()).sum()))


def naive_score(model: nn.Module, ctx: list[int], cont: list[int], block: int) -> float:
    """Reference: one forward per request, full logits, log_softmax over all positions."""
    whole = (ctx + cont)[-(block + 1) :]
    inp = torch.tensor([whole[:-1]])
    with torch.no_grad():
        logp = F.log_softmax(model(inp)[0].double(), dim=-1)[0]
    n = len(cont)
    L = inp.shape[1]
    return float(sum(logp[L - n + j, cont[j]] for j in range(n)))


def random_pairs(n: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        ctx_len = int(rng.integers(1, 3 * BLOCK))  # many longer than the block
        cont_len = int(rng.integers(1, 6)) if i % 5 else BLOCK  # and a continuation filling it
        pairs.append(
            (rng.integers(0, 50257, ctx_len).tolist(), rng.integers(0, 50257, cont_len).tolist())
        )
    return pairs


def scorer(adapter: Any, model: nn.Module, encoding: Any, batch_size: int = 32) -> Any:
    return adapter.NanoGPTLM(adapter.LocalModel(model), encoding=encoding, batch_size=batch_size)


def test_batched_equals_unbatched_and_reference(
    adapter: Any, toy_model: nn.Module, gpt2_encoding: Any
) -> None:
    reference = [naive_score(toy_model, c, n, BLOCK) for c, n in random_pairs(40)]
    lm = scorer(adapter, toy_model, gpt2_encoding, batch_size=8)
    pairs = random_pairs(40)
    batched = lm.score_token_pairs(pairs, batch_size=8)
    single = lm.score_token_pairs(pairs, batch_size=1)
    for (b, gb), (s, gs) in zip(batched, single, strict=True):
        assert abs(b - s) < 1e-4
        assert gb == gs
    for (b, _), want in zip(batched, reference, strict=True):
        assert abs(b - want) < 1e-4


def test_the_head_is_applied_from_the_sources_weights(adapter: Any, gpt2_encoding: Any) -> None:
    model = BigramGPT()
    source = adapter.LocalModel(model)
    assert source.head_weight is model.lm_head.head.weight and source.n_embd == 8
    tokens = np.array([[1, 2, 3], [4, 5, 6]])
    source.submit(tokens, np.array([0, 4, 5]))
    hidden = source.fetch()
    want = model.wte.weight[[1, 5, 6]]
    assert torch.equal(hidden, want)  # the inputs of lm_head at those positions, nothing else
    again = adapter.LocalModel(model)  # a second adapter on the same model unwraps the first
    assert again.head_weight is source.head_weight


def test_rolling_scores_every_token_once(adapter: Any, gpt2_encoding: Any) -> None:
    model = BigramGPT()
    lm = scorer(adapter, model, gpt2_encoding, batch_size=4)
    text = "The river rises on a moor and flows east to the sea. " * 12
    tokens = gpt2_encoding.encode_ordinary(text)
    assert len(tokens) > 3 * BLOCK
    windows = lm.rolling_windows(tokens)
    assert [t for _, cont in windows for t in cont] == tokens  # disjoint and complete
    (got,) = lm.loglikelihood_rolling([SimpleNamespace(args=(text,))])
    prev = [gpt2_encoding.eot_token, *tokens[:-1]]
    want = sum(model.log_table(p)[t] for p, t in zip(prev, tokens, strict=True))
    assert got == pytest.approx(want, rel=1e-5)


def test_generation_is_refused(adapter: Any, gpt2_encoding: Any) -> None:
    lm = scorer(adapter, BigramGPT(), gpt2_encoding)
    with pytest.raises(NotImplementedError, match="log-likelihoods only"):
        lm.generate_until([SimpleNamespace(args=("Hello", {"until": ["\n"]}))])


# -----------------------------------------------------------------------------
# the perplexity definitions, by hand, through lm-eval's own task pipeline


@pytest.fixture(scope="module")
def offline_results(
    adapter: Any, gpt2_encoding: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BigramGPT, dict[str, Any]]]:
    import lm_eval
    from lm_eval.tasks import TaskManager

    model = BigramGPT(block_size=BLOCK)
    lm = scorer(adapter, model, gpt2_encoding, batch_size=16)
    tm = TaskManager(
        include_path=str(CODEBASE_DIR / "lm_eval_tasks"),
        include_defaults=False,
        metadata={"pb_eval_data_dir": str(EVAL_SETS_DIR)},
    )
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=["pb_wikitext", "pb_lambada_openai"],
        task_manager=tm,
        num_fewshot=0,
        bootstrap_iters=0,
        log_samples=False,
    )
    yield model, out["results"]


def read_jsonl(name: str) -> list[dict[str, Any]]:
    import json

    path = EVAL_SETS_DIR / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def detokenize(page: str) -> str:
    # the definition is lm-eval's wikitext detokenizer (METRICS.md); use the installed one
    from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer

    return wikitext_detokenizer({"page": page})


def test_wikitext_word_perplexity_by_hand(
    offline_results: tuple[BigramGPT, dict[str, Any]], gpt2_encoding: Any
) -> None:
    model, results = offline_results
    total_logp, total_words = 0.0, 0
    for doc in read_jsonl("wikitext.jsonl"):
        tokens = gpt2_encoding.encode_ordinary(detokenize(doc["page"]))
        prev = [
            gpt2_encoding.eot_token,
            *tokens[:-1],
        ]  # a bigram model needs only one token of context
        total_logp += sum(model.log_table(p)[t] for p, t in zip(prev, tokens, strict=True))
        total_words += len(re.split(r"\s+", doc["page"]))  # words of the raw page
    want = math.exp(-total_logp / total_words)
    assert results["pb_wikitext"]["word_perplexity,none"] == pytest.approx(want, rel=1e-4)


def test_lambada_perplexity_by_hand(
    offline_results: tuple[BigramGPT, dict[str, Any]], gpt2_encoding: Any
) -> None:
    model, results = offline_results
    logps, hits = [], []
    for doc in read_jsonl("lambada_openai.jsonl"):
        words = doc["text"].split(" ")
        ctx, cont = " ".join(words[:-1]), " " + words[-1]
        ctx_tokens = gpt2_encoding.encode_ordinary(ctx)
        cont_tokens = gpt2_encoding.encode_ordinary(ctx + cont)[len(ctx_tokens) :]
        prev = [ctx_tokens[-1], *cont_tokens[:-1]]
        tables = [model.log_table(p) for p in prev]
        logps.append(sum(t[c] for t, c in zip(tables, cont_tokens, strict=True)))
        hits.append(all(int(np.argmax(t)) == c for t, c in zip(tables, cont_tokens, strict=True)))
    want = math.exp(-sum(logps) / len(logps))  # exp of the mean negative log-likelihood per passage
    assert results["pb_lambada_openai"]["perplexity,none"] == pytest.approx(want, rel=1e-4)
    assert results["pb_lambada_openai"]["acc,none"] == pytest.approx(sum(hits) / len(hits))


def test_uniform_model_perplexities(adapter: Any, gpt2_encoding: Any) -> None:
    """A model with all-zero logits: every token costs ln(V), so word_ppl = V ** (tokens / words)."""
    uniform = BigramGPT()
    with torch.no_grad():
        uniform.wte.weight.zero_()  # zero hidden states and a zero head: zero logits
    lm = scorer(adapter, uniform, gpt2_encoding, batch_size=16)
    docs = read_jsonl("wikitext.jsonl")[:2]
    got = lm.loglikelihood_rolling([SimpleNamespace(args=(detokenize(d["page"]),)) for d in docs])
    for total, doc in zip(got, docs, strict=True):
        n_tokens = len(gpt2_encoding.encode_ordinary(detokenize(doc["page"])))
        assert total == pytest.approx(-n_tokens * math.log(50304), rel=1e-6)


def test_registered_with_lm_eval_and_built_from_a_checkpoint(
    adapter: Any, pb_tokenizer_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lm_eval.api.registry import get_model

    from tests._fixtures.evaluation import make_checkpoint

    assert get_model("nanogpt") is adapter.NanoGPTLM
    make_checkpoint(tmp_path, {"PB_PROFILE": "tiny"})  # built by the codebase's own GPT
    monkeypatch.setenv("PB_TOKENIZER_DIR", str(pb_tokenizer_dir))
    lm = adapter.NanoGPTLM.create_from_arg_string(
        f"ckpt_dir={tmp_path},batch_size=4", {"device": "cpu"}
    )
    assert lm.batch_size == 4 and lm.block_size == 64 and lm.device.type == "cpu"
    ((logp, _),) = lm.loglikelihood([SimpleNamespace(args=("The sky is", " blue"))])
    assert -30.0 < logp < 0.0
