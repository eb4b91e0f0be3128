"""rmsnorm_post — RMSNorm in a Post-LN block, as in the original transformer.

    x = RMS_1(x + Attn(x))
    x = RMS_2(x + MLP(x))

The normalisation sits on the residual stream after each addition instead of before each
sublayer. (The model's final normalisation before the output layer stays, frozen.)

Reference: Vaswani et al., "Attention Is All You Need" (2017) for the Post-LN placement;
Xiong et al., "On Layer Normalization in the Transformer Architecture" (ICML 2020) on why it
needs care with warmup; RMSNorm from Zhang & Sennrich (2019).
"""

# ── EDITABLE REGION START: layernorm ──
class LayerNorm(nn.Module):
    """RMSNorm: rescale by the root mean square, no centring, a learned gain."""

    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.eps = 1e-6

    def forward(self, x):
        # normalise in float32: the mean of squares loses precision in bf16
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return xf.type_as(x) * self.weight
# ── EDITABLE REGION END: layernorm ──


# ── EDITABLE REGION START: block ──
class Block(nn.Module):
    """A Post-LN block: normalise after each residual addition."""

    def __init__(self, config):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x):
        x = self.ln_1(x + self.attn(x))
        x = self.ln_2(x + self.mlp(x))
        return x
# ── EDITABLE REGION END: block ──
