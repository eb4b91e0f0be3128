"""wsd_sqrt — warmup–stable–decay whose decay follows an inverse square root.

A longer warmup W' = max(warmup_iters, 6 % of T), a stable phase, and over the last 20 % of
training (from S = 0.8 T to T = lr_decay_iters) a decay shaped like 1/sqrt(1 + 9t), rescaled
so that it runs exactly from the peak (t = 0) to min_lr (t = 1):

    c(t)   = ((1 + 9 t) ** -0.5 - 10 ** -0.5) / (1 - 10 ** -0.5),   t = (it - S) / (T - S)
    lr(it) = min_lr + (learning_rate - min_lr) * c(t)

and lr(it) = learning_rate * (it + 1) / (W' + 1) during warmup, min_lr from T on.

Reference: the inverse-square-root schedule of Vaswani et al., "Attention Is All You Need"
(2017) and Zhai et al., "Scaling Vision Transformers" (2022), used as the cooldown of a WSD
schedule (Hu et al. 2024, arXiv:2404.06395; Hägele et al. 2024, arXiv:2405.18392). Its
decay is front-loaded: most of the drop happens early in the cooldown.
"""

# ── EDITABLE REGION START: get_lr ──
def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):
    # 1) a slightly longer linear warmup: at least 6 % of training
    warmup = max(warmup_iters, int(0.06 * lr_decay_iters))
    if it < warmup:
        return learning_rate * (it + 1) / (warmup + 1)
    # 2) stable phase at the peak
    decay_start = int(0.8 * lr_decay_iters)
    if it < decay_start:
        return learning_rate
    # 3) inverse-sqrt shaped decay, rescaled to go from 1 to 0 over the last 20 %
    if it >= lr_decay_iters:
        return min_lr
    t = (it - decay_start) / (lr_decay_iters - decay_start)
    floor = 10 ** -0.5
    coeff = ((1 + 9 * t) ** -0.5 - floor) / (1 - floor)
    return min_lr + coeff * (learning_rate - min_lr)
# ── EDITABLE REGION END: get_lr ──
