"""polydiff medical plugin: CT, MRI and ultrasound inverse problems with diffusion priors."""
