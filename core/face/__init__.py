"""The face stage: frame -> ``FaceGeometry`` (a map from frame pixels to the canonical 48x48 face).

- ``locator``: ``FaceLocator`` (the mesh, the refinement, the pose gate), ``mesh_geometry``
  (mesh landmarks -> geometry, fitted onto ``core.face_template``) and ``default_fallbacks``;
- ``headset``: ``HeadsetLocator``, the CNN that finds a face under a VR headset;
- ``far``: ``FarFaceDetector``, mediapipe's full-range detector as a hint for small, far faces;
- ``fallbacks``: ``GeometryTracker`` (the last good geometry, briefly) and ``RoiFallback``
  (the user's rectangle, ``roi_geometry``).

The shared maths (similarity fits, canonical boxes, ROI maps) is ``core.geometry``.
"""
from vrfer.core.face.fallbacks import GeometryTracker, RoiFallback, roi_geometry
from vrfer.core.face.far import FarFaceDetector
from vrfer.core.face.headset import DEFAULT_LOCATOR, HeadsetLocator
from vrfer.core.face.locator import MODES, FaceConfig, FaceLocator, Fallback, default_fallbacks, mesh_geometry
from vrfer.core.face_template import LANDMARKS, TEMPLATE_PATH, FaceTemplate, load_template
from vrfer.core.geometry import ROTATIONS, fit_similarity  # fit_similarity: evalframes/render.py

__all__ = [
    "DEFAULT_LOCATOR", "LANDMARKS", "MODES", "ROTATIONS", "TEMPLATE_PATH", "Fallback", "FaceConfig", "FaceLocator",
    "FaceTemplate", "FarFaceDetector", "GeometryTracker", "HeadsetLocator", "RoiFallback", "default_fallbacks",
    "fit_similarity", "load_template", "mesh_geometry", "roi_geometry",
]
