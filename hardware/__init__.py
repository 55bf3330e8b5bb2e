"""hardware package of latent-vla."""
