"""
GPT-2 pretraining in one file, read top to bottom: the model, the learning-rate schedule, the
training loop.

Run on one CPU or GPU:
$ PB_PROFILE=tiny PB_DATA_DIR=data/offline PB_OUT_DIR=out python custom_pretrain.py
Run with DDP on the GPUs of one node:
$ PB_PROFILE=full PB_DATA_DIR=... PB_OUT_DIR=... torchrun --standalone --nproc_per_node=2 custom_pretrain.py

The model is GPT-2: learned positional embeddings, input and output embeddings tied, Pre-LN
blocks with a 4x GELU MLP, no biases, no dropout. Training uses AdamW, gradient clipping, bf16
autocast and TF32 on CUDA, torch.compile and SDPA (flash) attention.

Everything that sets the size of a run (profile, seed, iterations, batch, data, output) is read
by pb_config.py from PB_* environment variables: see docs/INTERFACES.md. The marked editable
regions are what a task lets you change; the rest of the file is frozen. CONFIG_OVERRIDES is data:
the training loop takes it from PB_CONFIG_OVERRIDES (or parses its region as a literal), never
from the running module. With PB_LR_SCHEDULE_JOB set, the learning rates come from the table that
job wrote (schedule.py ran get_lr there) and get_lr is not called here.

This file only trains: the trusted evaluator (evaluate.py) scores the checkpoint in its own job.
"""

import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

import pb_config
import pb_data
import pb_jobs
import pb_memory

# -----------------------------------------------------------------------------
# the model

# ── EDITABLE REGION START: layernorm ──
class LayerNorm(nn.Module):
    """LayerNorm with an optional bias (nn.LayerNorm cannot turn its bias off)."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, input):
        return F.layer_norm(input, self.weight.shape, self.weight, self.bias, 1e-5)
# ── EDITABLE REGION END: layernorm ──


class CausalSelfAttention(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        # query, key and value projections for all heads, in one matmul
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        # output projection (a residual projection: scaled init, see GPT.__init__)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.dropout = config.dropout

    def forward(self, x):
        B, T, C = x.size()  # batch, sequence length, embedding dim (n_embd)
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        # causal attention through SDPA (flash attention kernels on CUDA)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=None, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):

    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


# ── EDITABLE REGION START: block ──
class Block(nn.Module):
    """A Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        x = x + self.mlp(self.ln_2(x))
        return x
# ── EDITABLE REGION END: block ──


class ChunkedCrossEntropy(torch.autograd.Function):
    """The mean cross-entropy of the logits x @ weight.T (rows with target -1 ignored), computed
    chunk_rows rows at a time so the (rows, vocab) logits never exist all at once: for GPT-2
    Medium at micro-batch 96 they would take 9 GiB in bf16 and 18 GiB more as fp32. Each chunk's
    gradients with respect to x and weight are computed in forward, while its logits exist, so
    backward only scales them and no logits are recomputed."""

    @staticmethod
    def forward(ctx, x, weight, targets, chunk_rows):
        # x: (N, C) fp32, weight: (vocab, C), targets: (N,); the matmuls follow the ambient
        # autocast (bf16 on CUDA), softmax and loss are in fp32 as F.cross_entropy(logits.float())
        valid = targets != -1
        n_valid = valid.sum()
        loss = torch.zeros((), dtype=torch.float32, device=x.device)
        grad_x = torch.empty_like(x)
        grad_w = torch.zeros_like(weight)
        for i in range(0, x.size(0), chunk_rows):
            xc, vc = x[i:i + chunk_rows], valid[i:i + chunk_rows]
            tc = torch.where(vc, targets[i:i + chunk_rows], 0).unsqueeze(1)  # (rows, 1)
            logits = F.linear(xc, weight)  # (rows, vocab)
            # at least fp32 (the logits themselves when they are fp32: overwritten in place below)
            probs = logits.to(torch.promote_types(logits.dtype, torch.float32))
            lse = torch.logsumexp(probs, dim=1)
            loss += ((lse - probs.gather(1, tc).squeeze(1)) * vc).sum()
            # d(mean loss)/d(logits) = (softmax - one_hot(target)) / n_valid, zero on ignored rows;
            # in place, so a chunk holds one fp32 (rows, vocab) tensor
            probs.sub_(lse.unsqueeze(1)).exp_()
            probs.scatter_add_(1, tc, torch.full_like(lse, -1.0).unsqueeze(1))
            g = probs.mul_((vc / n_valid).unsqueeze(1)).to(logits.dtype)
            grad_x[i:i + chunk_rows] = g @ weight
            grad_w += g.t() @ xc
        ctx.save_for_backward(grad_x, grad_w)
        return loss / n_valid

    @staticmethod
    def backward(ctx, grad_loss):
        grad_x, grad_w = ctx.saved_tensors
        return grad_x * grad_loss, grad_w * grad_loss, None, None


# rows of logits the loss holds at once (pb_memory's estimate counts on this chunk)
LOSS_CHUNK_ROWS = pb_config.LOSS_CHUNK_ROWS


@dataclass
class GPTConfig:
    block_size: int = 1024  # context length
    vocab_size: int = 50304  # GPT-2's 50257 padded to a multiple of 64 for efficiency
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0  # no dropout in pretraining
    bias: bool = False  # no biases in Linear and LayerNorm layers


class GPT(nn.Module):

    def __init__(self, config):
        super().__init__()
        assert config.vocab_size is not None
        assert config.block_size is not None
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),  # token embeddings
            wpe=nn.Embedding(config.block_size, config.n_embd),  # learned positional embeddings
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # weight tying: the output projection is the token embedding matrix
        self.transformer.wte.weight = self.lm_head.weight
        # init all weights with std 0.02, then the residual projections with
        # 0.02/sqrt(2 * n_layer) (GPT-2 paper: each block adds twice to the residual stream)
        self.apply(self._init_weights)
        for pn, p in self.named_parameters():
            if pn.endswith("c_proj.weight"):
                torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def get_num_params(self, non_embedding=True):
        """Number of parameters; by default without the position embeddings (the token
        embeddings count, since they are also the output layer's weights)."""
        n_params = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n_params -= self.transformer.wpe.weight.numel()
        return n_params

    def forward(self, idx, targets=None):
        device = idx.device
        b, t = idx.size()
        assert t <= self.config.block_size, f"sequence of length {t} > block size {self.config.block_size}"
        pos = torch.arange(0, t, dtype=torch.long, device=device)  # (t)
        tok_emb = self.transformer.wte(idx)  # (b, t, n_embd)
        pos_emb = self.transformer.wpe(pos)  # (t, n_embd)
        x = self.transformer.drop(tok_emb + pos_emb)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if targets is None:
            return self.lm_head(x), None  # (b, t, vocab_size)
        # training: the loss in chunks of rows, without the full logits (which are not returned)
        loss = ChunkedCrossEntropy.apply(x.flatten(0, 1), self.lm_head.weight, targets.flatten(), LOSS_CHUNK_ROWS)
        return None, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas, device_type):
        # weight decay on every >=2-D parameter (matmul weights, embeddings), none on gains/biases
        params = [p for p in self.parameters() if p.requires_grad]
        decay_params = [p for p in params if p.dim() >= 2]
        nodecay_params = [p for p in params if p.dim() < 2]
        optim_groups = [
            {"params": decay_params, "weight_decay": weight_decay},
            {"params": nodecay_params, "weight_decay": 0.0},
        ]
        # the fused AdamW kernel is much faster on CUDA
        use_fused = device_type == "cuda"
        optimizer = torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas, fused=use_fused)
        return optimizer, sum(p.numel() for p in decay_params), sum(p.numel() for p in nodecay_params)

    def flops_per_token(self):
        """Training FLOPs per token (forward + backward), PaLM appendix B: 6N + 12*L*H*Q*T."""
        N = self.get_num_params()
        cfg = self.config
        L, H, Q, T = cfg.n_layer, cfg.n_head, cfg.n_embd // cfg.n_head, cfg.block_size
        return 6 * N + 12 * L * H * Q * T


# -----------------------------------------------------------------------------
# the learning-rate schedule: called once per iteration, before the optimizer step

# ── EDITABLE REGION START: get_lr ──
def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    # 1) linear warmup over the first warmup_iters iterations
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    # 2) after lr_decay_iters, stay at min_lr
    if it > lr_decay_iters:
        return min_lr
    # 3) in between, cosine decay from learning_rate down to min_lr
    decay_ratio = (it - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))  # goes from 1 to 0
    return min_lr + coeff * (learning_rate - min_lr)
# ── EDITABLE REGION END: get_lr ──


# -----------------------------------------------------------------------------
# hyperparameter overrides: only learning_rate, min_lr, warmup_iters, weight_decay and grad_clip
# may be set here (checked by pb_config.apply_overrides); everything else belongs to the profile

# ── EDITABLE REGION START: config_overrides ──
CONFIG_OVERRIDES = {}
# ── EDITABLE REGION END: config_overrides ──


# -----------------------------------------------------------------------------
# frozen helpers of the training loop

# bf16 dense tensor-core peak per GPU in FLOP/s (no sparsity), for MFU, keyed on the exact name
# torch reports: an H200 NVL must not be measured against the SXM peak. Sources and the same table
# in docs/PERFORMANCE.md; a GPU not listed gets no MFU rather than another model's peak.
GPU_PEAK_FLOPS = {
    "NVIDIA H100 80GB HBM3": 989.4e12,   # H100 SXM5
    "NVIDIA H100 PCIe": 756.5e12,
    "NVIDIA H100 NVL": 835.5e12,
    "NVIDIA H200": 989.4e12,             # H200 SXM
    "NVIDIA H200 NVL": 835.5e12,
    "NVIDIA GH200 480GB": 989.4e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "NVIDIA A100-PCIE-40GB": 312e12,
    "NVIDIA B200": 2250e12,
    "NVIDIA L40S": 362.05e12,
    "NVIDIA L4": 121e12,
    "NVIDIA A10": 125e12,
}


class TrainingFailure(Exception):
    """A run that stops itself for a known reason (written to failure.json)."""


def peak_flops_of(name):
    """(bf16 dense peak in FLOP/s, None) for a listed GPU name, else (None, why there is no MFU)."""
    peak = GPU_PEAK_FLOPS.get(name)
    return (peak, None) if peak else (None, f"no bf16 peak listed for {name!r} (docs/PERFORMANCE.md)")


def gpu_peak_flops(device_type):
    """peak_flops_of this process's GPU; on CPU (None, "CPU")."""
    if device_type != "cuda":
        return None, "CPU"
    return peak_flops_of(torch.cuda.get_device_name())


def checked_lr(it, cfg):
    """get_lr(it, ...) as a float, or a TrainingFailure if it is not a finite number >= 0."""
    args = (it, cfg["warmup_iters"], cfg["lr_decay_iters"], cfg["learning_rate"], cfg["min_lr"])
    lr = get_lr(*args)
    # a number, or anything float() takes as one (a 0-d tensor); not a bool, not a string
    try:
        if isinstance(lr, bool) or not (isinstance(lr, (int, float)) or hasattr(lr, "__float__")):
            raise TypeError
        value = float(lr)
    except (TypeError, ValueError, RuntimeError):
        raise TrainingFailure(f"get_lr{args} returned {type(lr).__name__} {lr!r}, not a number") from None
    if not math.isfinite(value) or value < 0:
        raise TrainingFailure(f"get_lr{args} returned {value!r}; the learning rate must be finite and >= 0")
    return value


def learning_rates(cfg):
    """The learning rate of every iteration: the schedule job's table when cfg names one (checked
    by pb_config.load_lr_table, get_lr is then never called), else get_lr's, checked."""
    if cfg["lr_schedule"]:
        path = Path(cfg["lr_schedule"])
        try:
            return pb_config.load_lr_table(path, cfg)
        except pb_config.ConfigError as e:
            raise TrainingFailure(f"the learning-rate table of job {path.parent.name}: {e}") from None
    return [checked_lr(it, cfg) for it in range(cfg["max_iters"])]


def accumulate_gradients(model, X, Y, accum_steps, autocast, ddp, prefetch=None):
    """Forward and backward over one iteration's rows X, Y of this rank in accum_steps equal
    micro-batches. Each micro-batch's mean loss is divided by accum_steps, so the gradients are
    those of the mean loss over all rows whatever the split. Returns (the mean loss, detached;
    what prefetch() returned: it runs between the last forward and its backward, so loading the
    next batch overlaps GPU work)."""
    B = X.size(0) // accum_steps
    loss_accum = torch.zeros((), device=X.device)
    fetched = None
    for micro_step in range(accum_steps):
        last = micro_step == accum_steps - 1
        # DDP all-reduces gradients only on the last micro-step of an iteration
        sync = model.no_sync() if (ddp and not last) else nullcontext()
        rows = slice(micro_step * B, (micro_step + 1) * B)
        with sync:
            with autocast:
                _, loss = model(X[rows], Y[rows])
                loss = loss / accum_steps
            if last and prefetch is not None:
                fetched = prefetch()
            loss.backward()
        loss_accum += loss.detach()
    return loss_accum, fetched


def plan_micro_batch(cfg, device, world_size):
    """pb_memory's plan for this run's GPUs (the smallest GPU's memory, so every rank agrees)."""
    memory = torch.tensor(torch.cuda.get_device_properties(device).total_memory, device=device)
    if world_size > 1:
        torch.distributed.all_reduce(memory, op=torch.distributed.ReduceOp.MIN)
    return pb_memory.plan(cfg, int(memory.item()), world_size)


@torch.no_grad()
def estimate_val_loss(model, windows, batch_size, device, autocast, rank, world_size):
    """Mean next-token loss over the fixed validation windows, shared across DDP ranks."""
    model.eval()
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of losses, tokens)
    mine = windows[rank::world_size]
    for i in range(0, len(mine), batch_size):
        w = torch.from_numpy(mine[i:i + batch_size]).to(device)
        with autocast:
            logits, _ = model(w[:, :-1])
        totals[0] += F.cross_entropy(logits.float().flatten(0, 1), w[:, 1:].flatten(), reduction="sum").double()
        totals[1] += w[:, 1:].numel()
    if world_size > 1:
        torch.distributed.all_reduce(totals)
    model.train()
    return (totals[0] / totals[1]).item()


# -----------------------------------------------------------------------------
# training


def train(cfg, out_dir, rank, local_rank, world_size):
    master = rank == 0

    def log(msg):
        if master:
            print(msg, flush=True)

    # --- device, precision, seeds ---
    device_type = cfg["device"] or ("cuda" if torch.cuda.is_available() else "cpu")
    if device_type == "cuda" and not torch.cuda.is_available():
        raise TrainingFailure("PB_DEVICE=cuda but no CUDA device is available")
    device = f"cuda:{local_rank}" if device_type == "cuda" else "cpu"
    if device_type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 for any fp32 matmul left
        torch.backends.cudnn.allow_tf32 = True
    # bf16 autocast on CUDA (no grad scaler needed); plain fp32 on CPU
    autocast = torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device_type == "cuda" else nullcontext()
    torch.manual_seed(cfg["seed"])  # same weights on every rank (DDP also broadcasts rank 0's)

    # --- the split of an iteration: a GPU takes the largest micro-batch its memory allows
    # (pb_memory), unless PB_BATCH_SIZE / PB_GRAD_ACCUM chose one; the math is the same ---
    memory_plan = None
    if device_type == "cuda" and not cfg["batch_override"]:
        memory_plan = plan_micro_batch(cfg, device, world_size)
        cfg["batch_size"], cfg["grad_accum"] = memory_plan["micro_batch"], memory_plan["grad_accum"]
        log(f"memory plan: micro-batch {cfg['batch_size']}, estimated peak "
            f"{memory_plan['estimated_peak_bytes'] / 2**30:.1f} GiB ({memory_plan['fraction_of_gpu']:.0%} of the GPU)")

    # --- gradient accumulation is global: the ranks share it, so tokens/iter ignore GPU count ---
    if cfg["grad_accum"] % world_size != 0:
        raise TrainingFailure(f"grad_accum={cfg['grad_accum']} is not divisible by world size {world_size}")
    accum_steps = cfg["grad_accum"] // world_size
    B, T = cfg["batch_size"], cfg["block_size"]
    tokens_per_iter = B * T * accum_steps * world_size
    assert tokens_per_iter == cfg["tokens_per_iter"]

    # --- data: seeded random training windows, the fixed validation windows; a rank draws all
    # its rows of an iteration at once, so the split into micro-batches cannot change them ---
    batches = pb_data.TrainBatches(cfg["data_dir"], T, B * accum_steps, seed=cfg["seed"], rank=rank)
    val = pb_data.val_windows(cfg["data_dir"], T, cfg["val_windows"])

    def get_batch():
        x, y = (torch.from_numpy(a) for a in batches.next())
        if device_type == "cuda":
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
        return x, y

    # --- model and optimizer ---
    model_args = pb_config.model_config(cfg)
    raw_model = GPT(GPTConfig(**model_args)).to(device)
    log(f"model: {cfg['n_layer']}L/{cfg['n_head']}H/{cfg['n_embd']}D, {raw_model.get_num_params() / 1e6:.2f}M "
        f"parameters; {tokens_per_iter:,} tokens/iter = {B} x {accum_steps} x {world_size} ranks x {T}")
    optimizer, n_decay, n_nodecay = raw_model.configure_optimizers(
        cfg["weight_decay"], cfg["learning_rate"], (cfg["beta1"], cfg["beta2"]), device_type)
    log(f"optimizer: AdamW, {n_decay:,} decayed and {n_nodecay:,} non-decayed parameters")
    use_compile = cfg["compile"] if cfg["compile"] is not None else device_type == "cuda"
    model = torch.compile(raw_model) if use_compile else raw_model
    if world_size > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device_type == "cuda" else None)
    peak, no_mfu = gpu_peak_flops(device_type)
    log(f"MFU: — ({no_mfu})" if no_mfu else f"MFU against {peak / 1e12:g} TFLOP/s bf16 dense per GPU")
    flops_per_iter = raw_model.flops_per_token() * tokens_per_iter

    # the whole schedule, checked before any compute is spent on it
    lrs = learning_rates(cfg)

    # --- the loop ---
    curve = open(out_dir / "curve.jsonl", "w") if master else None
    t_start = time.time()
    train_seconds = 0.0
    val_loss = None
    X, Y = get_batch()
    for it in range(cfg["max_iters"]):
        t0 = time.time()
        lr = lrs[it]
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_accum, (X, Y) = accumulate_gradients(model, X, Y, accum_steps, autocast, world_size > 1, get_batch)
        if cfg["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if world_size > 1:
            torch.distributed.all_reduce(loss_accum, op=torch.distributed.ReduceOp.AVG)
        train_loss = loss_accum.item()  # waits for the GPU
        dt = time.time() - t0
        train_seconds += dt
        step = it + 1
        if not math.isfinite(train_loss):
            raise TrainingFailure(f"non-finite loss at step {step} (lr={lr:.6g}, train_loss={train_loss})")

        # --- evaluation and logging ---
        is_eval = step % cfg["eval_interval"] == 0 or step == cfg["max_iters"]
        if is_eval:
            val_loss = estimate_val_loss(raw_model, val, cfg["val_batch_size"], device, autocast, rank, world_size)
            if not math.isfinite(val_loss):
                raise TrainingFailure(f"non-finite validation loss at step {step} (lr={lr:.6g})")
            log(f"TRAIN_METRICS: step={step}, train_loss={train_loss:.4f}, val_loss={val_loss:.4f}")
        if master and (is_eval or step % cfg["log_interval"] == 0 or step == 1):
            tokens_per_s = tokens_per_iter / dt
            mfu = flops_per_iter / dt / (peak * world_size) if peak else None
            row = {"step": step, "train_loss": train_loss, "lr": lr, "tokens": step * tokens_per_iter,
                   "dt_ms": dt * 1000, "tokens_per_s": tokens_per_s, "mfu": mfu}
            if is_eval:
                row["val_loss"] = val_loss
            curve.write(json.dumps(row) + "\n")
            curve.flush()
            eta = (cfg["max_iters"] - step) * train_seconds / step
            mfu_text = f", mfu {mfu * 100:.1f}%" if mfu is not None else ""
            print(f"iter {step}/{cfg['max_iters']}: loss {train_loss:.4f}, lr {lr:.3e}, "
                  f"{dt * 1000:.0f} ms, {tokens_per_s:,.0f} tok/s{mfu_text}, eta {eta:.0f} s", flush=True)
            progress = {"step": step, "max_steps": cfg["max_iters"], "loss": train_loss,
                        "tokens_per_s": tokens_per_s, "lr": lr, "eta_s": eta}
            if is_eval:
                progress["val_loss"] = val_loss
            print("PB_PROGRESS " + json.dumps(progress), flush=True)

    # --- outputs: checkpoint, then the completion marker last ---
    if master:
        curve.close()
        ckpt = {
            "model": raw_model.state_dict(),
            "model_config": model_args,
            "train_config": {**cfg, "world_size": world_size},  # plain data (overrides included)
            "iter_num": cfg["max_iters"],
            "tokens_seen": cfg["max_iters"] * tokens_per_iter,
            "val_loss": val_loss,
        }
        torch.save(ckpt, out_dir / "ckpt.pt.partial")
        os.replace(out_dir / "ckpt.pt.partial", out_dir / "ckpt.pt")
        seconds = time.time() - t_start
        peak_memory = torch.cuda.max_memory_allocated(device) if device_type == "cuda" else None
        pb_jobs.write_json(out_dir / ".training_complete", {
            "iters": cfg["max_iters"], "tokens": cfg["max_iters"] * tokens_per_iter, "seconds": seconds,
            "train_seconds": train_seconds, "val_loss": val_loss,
            "micro_batch": B, "grad_accum": cfg["grad_accum"], "world_size": world_size,
            "memory_plan": memory_plan, "peak_memory_bytes": peak_memory})
        log(f"done: {cfg['max_iters']} iterations in {seconds:.1f} s, val_loss {val_loss:.4f}")


def main():
    # DDP when launched by torchrun (it sets RANK, LOCAL_RANK, WORLD_SIZE)
    ddp = int(os.environ.get("RANK", -1)) != -1
    rank = int(os.environ.get("RANK", 0))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if not os.environ.get("PB_OUT_DIR"):
        sys.exit("error: PB_OUT_DIR must name the output directory")
    out_dir = Path(os.environ["PB_OUT_DIR"])
    source = Path(__file__).read_text()  # read now: the code this run trains is the code on disk now
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in (".training_complete", "failure.json", "ckpt.pt"):
            (out_dir / stale).unlink(missing_ok=True)
        (out_dir / "model_source.py").write_text(source)
    try:
        cfg = pb_config.resolve_run_config(os.environ)
        # CONFIG_OVERRIDES as data (PB_CONFIG_OVERRIDES, else this file's region as a literal)
        overrides = pb_config.read_overrides(os.environ, __file__)
        cfg = pb_config.apply_overrides(cfg, overrides)
        cfg["config_overrides"] = overrides
        schedule_dir = pb_config.needed_job_dir(os.environ, "PB_LR_SCHEDULE_JOB")
        cfg["lr_schedule"] = str(schedule_dir / pb_config.SCHEDULE_FILE) if schedule_dir else ""
        if not cfg["data_dir"]:
            raise TrainingFailure("PB_DATA_DIR must name the directory of the token shards")
        cfg["data_fingerprint"] = pb_data.data_fingerprint(cfg["data_dir"])
        if ddp:
            backend = "nccl" if (cfg["device"] or ("cuda" if torch.cuda.is_available() else "cpu")) == "cuda" else "gloo"
            torch.distributed.init_process_group(backend=backend)
        train(cfg, out_dir, rank, local_rank, world_size)
    except (TrainingFailure, pb_config.ConfigError, pb_data.DataError) as e:
        reason = str(e)
        if rank == 0:
            pb_jobs.write_failure(out_dir, reason)
        print(f"TRAINING FAILED: {reason}", file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception as e:  # a crash in edited code: say what it was, keep the traceback
        if rank == 0:
            pb_jobs.write_failure(out_dir, f"{type(e).__name__}: {e}")
        raise
    finally:
        if ddp and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
