"""trapezoidal — warmup, constant peak, linear cooldown over the last 40 % of training.

With T = lr_decay_iters and the cooldown starting at S = 0.6 T:

    lr(it) = learning_rate * (it + 1) / (warmup_iters + 1)         for it < warmup_iters
    lr(it) = learning_rate                                         for warmup_iters <= it < S
    lr(it) = learning_rate + (it - S) / (T - S) * (min_lr - learning_rate)   for S <= it < T
    lr(it) = min_lr                                                for it >= T

Reference: Hägele et al., "Scaling Laws and Compute-Optimal Training Beyond Fixed Training
Durations" (NeurIPS 2024, arXiv:2405.18392) — constant learning rate with a linear cooldown;
the trapezoid shape goes back to Zhai et al., "Scaling Vision Transformers" (CVPR 2022).
"""

# ── EDITABLE REGION START: get_lr ──
def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    # 1) linear warmup, as in the default schedule
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    # 2) hold the peak until 60 % of training
    cooldown_start = int(0.6 * lr_decay_iters)
    if it < cooldown_start:
        return learning_rate
    # 3) straight line from the peak to min_lr over the last 40 %
    if it >= lr_decay_iters:
        return min_lr
    frac = (it - cooldown_start) / (lr_decay_iters - cooldown_start)
    return learning_rate + frac * (min_lr - learning_rate)
# ── EDITABLE REGION END: get_lr ──
