"""planners package of latent-vla."""
