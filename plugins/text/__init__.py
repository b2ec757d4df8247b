"""polydiff text plugin: masked diffusion language models."""
