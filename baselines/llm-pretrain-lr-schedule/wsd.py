"""wsd — warmup–stable–decay with a linear decay over the last 20 % of training.

With T = lr_decay_iters and the decay starting at S = 0.8 T:

    lr(it) = learning_rate * (it + 1) / (warmup_iters + 1)         for it < warmup_iters
    lr(it) = learning_rate                                         for warmup_iters <= it < S
    lr(it) = learning_rate + (it - S) / (T - S) * (min_lr - learning_rate)   for S <= it < T
    lr(it) = min_lr                                                for it >= T

Reference: Hu et al., "MiniCPM: Unveiling the Potential of Small Language Models with
Scalable Training Strategies" (2024, arXiv:2404.06395), which named the WSD schedule; see
also Hägele et al. (2024, arXiv:2405.18392) on short cooldowns.
"""

# ── EDITABLE REGION START: get_lr ──
def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    # 1) linear warmup
    if it < warmup_iters:
        return learning_rate * (it + 1) / (warmup_iters + 1)
    # 2) stable phase at the peak for most of training
    decay_start = int(0.8 * lr_decay_iters)
    if it < decay_start:
        return learning_rate
    # 3) linear decay to min_lr over the last 20 %
    if it >= lr_decay_iters:
        return min_lr
    frac = (it - decay_start) / (lr_decay_iters - decay_start)
    return learning_rate + frac * (min_lr - learning_rate)
# ── EDITABLE REGION END: get_lr ──
