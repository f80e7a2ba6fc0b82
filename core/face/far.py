"""``FarFaceDetector``: a hint for faces too small for the face mesh's own detector.

The mesh finds faces with BlazeFace's short-range model, which sees a 640x480 frame at 128 px, so
a face of about 100 px shrinks to 20 px there and is often missed; the headset locator (28 px at
its 128x96 input) misses some of those too. mediapipe's full-range model (BlazeFace for faces up
to 5 m away, at 192 px; its weights ship inside the mediapipe wheel) often still sees them. Its
six keypoints place the face only roughly, so ``FaceLocator`` never uses its answer as it is: the
mesh looks again in an upscaled crop round it (``path="mesh_refined"``) and the face counts only
if the mesh finds it there, aligned by the mesh's own landmarks. Presence is judged, as for any
other answer, by the headset locator's presence head in the face's window.
"""
from __future__ import annotations

import cv2
import numpy as np

from vrfer.core.face_template import FaceTemplate, load_template
from vrfer.core.geometry import canonical_box, fit_similarity
from vrfer.core.types import FaceGeometry, Frame

PATH = "far"
# mediapipe's face-detection keypoints 0-3 (right eye, left eye, nose tip, mouth centre; the
# subject's right) and where they sit on the template: the mouth centre between its corners.
_TEMPLATE_POINTS = (("right_iris",), ("left_iris",), ("nose_tip",), ("right_mouth", "left_mouth"))


def keypoint_targets(template: FaceTemplate) -> np.ndarray:
    """The canonical positions of the detector's first four keypoints (4 x 2)."""
    return np.array([np.mean([template.points[template.names.index(n)] for n in names], axis=0)
                     for names in _TEMPLATE_POINTS], dtype=np.float64)


class FarFaceDetector:
    """Frame -> a rough ``FaceGeometry`` (``path="far"``) from the full-range detector, or None.

    ``needs_refinement``: ``FaceLocator`` keeps the face only when the mesh confirms it in a crop.
    """

    needs_refinement = True

    def __init__(self, template: FaceTemplate | None = None, min_confidence: float = 0.5) -> None:
        import mediapipe as mp  # ~1 s import, as for the mesh

        self._targets = keypoint_targets(template or load_template())
        self._detector = mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                                   min_detection_confidence=min_confidence)

    def __call__(self, frame: Frame) -> FaceGeometry | None:
        if self._detector is None:
            raise ValueError("FarFaceDetector is closed")
        image = frame.image
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False
        detections = self._detector.process(rgb).detections
        if not detections:
            return None
        best = max(detections, key=lambda d: d.score[0])
        h, w = image.shape[:2]
        kps = best.location_data.relative_keypoints
        if len(kps) < 4:
            return None
        points = np.array([(k.x * w - 0.5, k.y * h - 0.5) for k in kps], dtype=np.float64)
        try:
            transform, _ = fit_similarity(points[:4], self._targets)
        except ValueError:  # keypoints on one spot: nothing to place
            return None
        return FaceGeometry(transform=transform, box=canonical_box(transform, (h, w)), path=PATH,
                            landmarks=points, score=float(best.score[0]))

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None
