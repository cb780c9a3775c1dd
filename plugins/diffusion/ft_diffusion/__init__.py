"""ft-diffusion: masked diffusion language models (LLaDA-style) for ft (method=diffusion)."""
