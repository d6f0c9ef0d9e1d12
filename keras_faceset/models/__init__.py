"""Models: backbones (image -> embedding) and tasks (backbone + set head)."""
