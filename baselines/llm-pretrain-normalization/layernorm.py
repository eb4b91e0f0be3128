"""layernorm — the unmodified default: LayerNorm in a Pre-LN block (a reference row).

    LN(x) = (x - mean(x)) / sqrt(var(x) + 1e-5) * g          (no bias)
    Block:  x = x + Attn(LN_1(x));  x = x + MLP(LN_2(x))

Reference: Ba, Kiros & Hinton, "Layer Normalization" (2016); the Pre-LN placement of GPT-2
(Radford et al. 2019), analysed by Xiong et al., "On Layer Normalization in the Transformer
Architecture" (ICML 2020).

This file opens no region: the baseline is the codebase exactly as shipped.
"""
