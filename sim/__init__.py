"""Simulated SO-101 tabletop world: MuJoCo scenes, language-named tasks, scripted experts, collection."""
