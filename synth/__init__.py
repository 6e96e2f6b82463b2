"""Synthetic training data: mask sampling, procedural and diffusion generators, QC, dataset writer."""
