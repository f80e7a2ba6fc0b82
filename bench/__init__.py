"""Benchmarks and measuring tools over the runtime: they import ``vrfer.core``, never the reverse.

- ``runtime``: the pipeline's speed, end-to-end accuracy on camera-like frames, the soak
  (``vrfer bench``);
- ``face``: the face template's measurement, ``FaceLocator`` timings and the refinement
  benchmark (``vrfer bench template``, ``--locate``, ``--refine``);
- ``facefree``: the false-face rate on the face-free frame family (``vrfer bench --e2e``).
"""
