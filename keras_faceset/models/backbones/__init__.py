"""Backbones: aligned face image -> frame embedding (+ the feature map before it)."""
