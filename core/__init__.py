"""vrfer runtime: frame sources, face location, preprocessing, ONNX inference, smoothing, pipeline, sinks.

No Qt and no torch may be imported from this package (checked by tests/test_layers.py).
"""
__version__ = "0.1.0"
