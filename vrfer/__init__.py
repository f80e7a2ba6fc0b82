"""vrfer: facial-expression recognition under a VR headset.

The import namespace over the repository's folders: ``vrfer.core`` (the runtime, core/),
``vrfer.app`` (app/), ``vrfer.cli`` (cli/), ``vrfer.training`` (training/) and ``vrfer.assets``
(assets/: models, tables and the face template, read through importlib.resources).
"""
__version__ = "0.1.0"
