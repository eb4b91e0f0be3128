"""rmsnorm_parallel — RMSNorm with parallel attention and MLP from one normalised input.

    h = RMS(x)
    x = x + Attn(h) + MLP(h)

One normalisation per block; attention and MLP read the same input instead of the MLP
reading the attention's output.

Reference: the parallel formulation of GPT-J (Wang & Komatsuzaki 2021) and PaLM
(Chowdhery et al., "PaLM: Scaling Language Modeling with Pathways", 2022, section 2);
RMSNorm from Zhang & Sennrich (2019).
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
    """A parallel block: attention and MLP both read one normalised copy of x."""

    def __init__(self, config):
        super().__init__()
        self.ln = LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.mlp = MLP(config)

    def forward(self, x):
        h = self.ln(x)
        return x + self.attn(h) + self.mlp(h)
# ── EDITABLE REGION END: block ──
