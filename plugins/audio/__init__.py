"""polydiff audio plugin: diffusion speech enhancement (SGMSE+), unsupervised enhancement and a vocoder."""
