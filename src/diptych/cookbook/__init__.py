"""Standalone programs that import a framework directly: the cookbook's recipes and the seed
article's baseline. Nothing in the neutral core imports them; they are run as scripts."""
