"""The verdict's error model: declared arithmetic of a mode and the baselines it implies."""
