"""cosine — the unmodified default schedule (a reference row, not a scoring anchor).

Linear warmup, then a half-cosine from the peak down to ``min_lr``:

    lr(it) = learning_rate * (it + 1) / (warmup_iters + 1)                 for it < warmup_iters
    lr(it) = min_lr + 0.5 * (1 + cos(pi * r)) * (learning_rate - min_lr)   otherwise,
             r = (it - warmup_iters) / (lr_decay_iters - warmup_iters), clipped to [0, 1]

Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts"
(ICLR 2017), used without restarts as in GPT-2/GPT-3 pretraining.

This file opens no region: the baseline is the codebase exactly as shipped.
"""
