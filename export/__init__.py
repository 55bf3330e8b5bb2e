"""export package of latent-vla."""
