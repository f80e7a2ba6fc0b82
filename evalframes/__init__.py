"""A held-out frame family for evaluation only: webcam-like colour frames with and without a
headset, made by code that shares nothing with the training augmentation.

``vrfer.evalframes.render`` draws the frames; ``vrfer.evalframes.bench`` scores a model on them
beside the dataset crops. Nothing under ``vrfer.training`` may import this package (an
import-linter contract in pyproject.toml, checked by tests/test_layers.py), so no training run
can ever see these frames or learn their look. See docs/heldout.md.
"""
