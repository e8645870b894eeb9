"""Forward kernels: log-probs, prompt and prefix trees, packing, decoding, KV cache, placement,
samplers, model loading and the exact-KL pass."""
