"""The blendshape names each avatar protocol knows, in each protocol's own order.

These are protocol facts, so they live in code; the *weights* per expression are user-editable
tables in ``assets/blendshapes/``. Every table key is checked against these lists.
"""
from __future__ import annotations

from dataclasses import dataclass


def _lr(*stems: str, left: str = "Left", right: str = "Right") -> tuple[str, ...]:
    return tuple(name for stem in stems for name in (stem + left, stem + right))


# VRCFaceTracking Unified Expressions v2 (sent as /avatar/parameters/v2/<Name>).
# Base shapes, then the "simple" merged shapes, then the combined (-1..1) shapes.
UNIFIED_V2_BASE: tuple[str, ...] = (
    *_lr("EyeSquint", "EyeWide", "BrowPinch", "BrowLowerer", "BrowInnerUp", "BrowOuterUp",
         "NasalDilation", "NasalConstrict", "CheekSquint", "CheekPuff", "CheekSuck"),
    "JawOpen", "JawRight", "JawLeft", "JawForward", "JawBackward", "JawClench", "JawMandibleRaise",
    "MouthClosed",
    *_lr("LipSuckUpper", "LipSuckLower", "LipSuckCorner", "LipFunnelUpper", "LipFunnelLower",
         "LipPuckerUpper", "LipPuckerLower", "MouthUpperUp", "MouthUpperDeepen", "NoseSneer",
         "MouthLowerDown"),
    "MouthUpperRight", "MouthUpperLeft", "MouthLowerRight", "MouthLowerLeft",
    *_lr("MouthCornerPull", "MouthCornerSlant", "MouthFrown", "MouthStretch", "MouthDimple"),
    "MouthRaiserUpper", "MouthRaiserLower",
    *_lr("MouthPress", "MouthTightener"),
    "TongueOut", "TongueUp", "TongueDown", "TongueRight", "TongueLeft", "TongueRoll",
    "TongueBendDown", "TongueCurlUp", "TongueSquish", "TongueFlat", "TongueTwistRight",
    "TongueTwistLeft", "SoftPalateClose", "ThroatSwallow", "NeckFlexRight", "NeckFlexLeft",
)
UNIFIED_V2_SIMPLE: tuple[str, ...] = (
    *_lr("BrowUp", "BrowDown", "MouthSmile", "MouthSad", "EyeLid"),
    "BrowInnerUp", "BrowOuterUp", "BrowDown", "EyeSquint", "EyeWide", "CheekPuff", "CheekSquint",
    "NoseSneer", "LipFunnel", "LipPucker", "LipSuckUpper", "LipSuckLower", "MouthUpperUp",
    "MouthLowerDown", "MouthStretch", "MouthPress", "MouthTightener", "MouthDimple", "MouthFrown",
)
UNIFIED_V2_COMBINED: tuple[str, ...] = (
    *_lr("SmileFrown", "SmileSad", "CheekPuffSuck", "BrowExpression", "EyeLidExpanded"),
    "SmileFrown", "SmileSad", "CheekPuffSuck", "JawX", "JawZ", "MouthX", "MouthUpper", "MouthLower",
    "EyeLeftX", "EyeLeftY", "EyeRightX", "EyeRightY", "EyeX", "EyeY",
)

# Project Babble's 45 outputs, in its send order; VRCFaceTracking's Babble module reads
# them as /<name> floats on UDP 8888.
BABBLE: tuple[str, ...] = (
    "cheekPuffLeft", "cheekPuffRight", "cheekSuckLeft", "cheekSuckRight",
    "jawOpen", "jawForward", "jawLeft", "jawRight", "noseSneerLeft", "noseSneerRight",
    "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight", "mouthRollUpper", "mouthRollLower",
    "mouthShrugUpper", "mouthShrugLower", "mouthClose", "mouthSmileLeft", "mouthSmileRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "mouthLowerDownLeft", "mouthLowerDownRight",
    "mouthPressLeft", "mouthPressRight", "mouthStretchLeft", "mouthStretchRight",
    "tongueOut", "tongueUp", "tongueDown", "tongueLeft", "tongueRight", "tongueRoll",
    "tongueBendDown", "tongueCurlUp", "tongueSquish", "tongueFlat", "tongueTwistLeft",
    "tongueTwistRight",
)

# Apple ARKit's 52 blendshape locations, alphabetical as Apple lists them.
ARKIT_52: tuple[str, ...] = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft",
    "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight",
    "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight", "mouthClose",
    "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower",
    "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft",
    "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft",
    "noseSneerRight", "tongueOut",
)

# XrFaceExpression2FB in enum order (XR_FACE_EXPRESSION2_<NAME>_FB); index = weights[] slot.
FB_FACE2: tuple[str, ...] = (
    "BROW_LOWERER_L", "BROW_LOWERER_R", "CHEEK_PUFF_L", "CHEEK_PUFF_R", "CHEEK_RAISER_L",
    "CHEEK_RAISER_R", "CHEEK_SUCK_L", "CHEEK_SUCK_R", "CHIN_RAISER_B", "CHIN_RAISER_T",
    "DIMPLER_L", "DIMPLER_R", "EYES_CLOSED_L", "EYES_CLOSED_R", "EYES_LOOK_DOWN_L",
    "EYES_LOOK_DOWN_R", "EYES_LOOK_LEFT_L", "EYES_LOOK_LEFT_R", "EYES_LOOK_RIGHT_L",
    "EYES_LOOK_RIGHT_R", "EYES_LOOK_UP_L", "EYES_LOOK_UP_R", "INNER_BROW_RAISER_L",
    "INNER_BROW_RAISER_R", "JAW_DROP", "JAW_SIDEWAYS_LEFT", "JAW_SIDEWAYS_RIGHT", "JAW_THRUST",
    "LID_TIGHTENER_L", "LID_TIGHTENER_R", "LIP_CORNER_DEPRESSOR_L", "LIP_CORNER_DEPRESSOR_R",
    "LIP_CORNER_PULLER_L", "LIP_CORNER_PULLER_R", "LIP_FUNNELER_LB", "LIP_FUNNELER_LT",
    "LIP_FUNNELER_RB", "LIP_FUNNELER_RT", "LIP_PRESSOR_L", "LIP_PRESSOR_R", "LIP_PUCKER_L",
    "LIP_PUCKER_R", "LIP_STRETCHER_L", "LIP_STRETCHER_R", "LIP_SUCK_LB", "LIP_SUCK_LT",
    "LIP_SUCK_RB", "LIP_SUCK_RT", "LIP_TIGHTENER_L", "LIP_TIGHTENER_R", "LIPS_TOWARD",
    "LOWER_LIP_DEPRESSOR_L", "LOWER_LIP_DEPRESSOR_R", "MOUTH_LEFT", "MOUTH_RIGHT",
    "NOSE_WRINKLER_L", "NOSE_WRINKLER_R", "OUTER_BROW_RAISER_L", "OUTER_BROW_RAISER_R",
    "UPPER_LID_RAISER_L", "UPPER_LID_RAISER_R", "UPPER_LIP_RAISER_L", "UPPER_LIP_RAISER_R",
    "TONGUE_TIP_INTERDENTAL", "TONGUE_TIP_ALVEOLAR", "TONGUE_FRONT_DORSAL_PALATE",
    "TONGUE_MID_DORSAL_PALATE", "TONGUE_BACK_DORSAL_VELAR", "TONGUE_OUT", "TONGUE_RETREAT",
)


@dataclass(frozen=True)
class ShapeSet:
    """One protocol's vocabulary: every known name and the range each weight may take."""

    key: str  # file stem in assets/blendshapes/
    title: str  # for messages: "... is not a <title> name"
    names: tuple[str, ...]
    signed: frozenset[str] = frozenset()  # names whose weights range over -1..1
    dense: bool = True  # output covers every name (fixed-size protocols) or only those in the table

    def range_of(self, name: str) -> tuple[float, float]:
        return (-1.0, 1.0) if name in self.signed else (0.0, 1.0)


def _unique(*groups: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for g in groups for n in g))


SHAPE_SETS: dict[str, ShapeSet] = {
    s.key: s
    for s in (
        # VRChat ignores parameters an avatar lacks, so only the names a table uses are sent.
        ShapeSet("unified_v2", "Unified Expressions v2",
                 _unique(UNIFIED_V2_BASE, UNIFIED_V2_SIMPLE, UNIFIED_V2_COMBINED),
                 signed=frozenset(UNIFIED_V2_COMBINED), dense=False),
        ShapeSet("babble", "Babble", BABBLE),
        ShapeSet("arkit52", "ARKit-52", ARKIT_52),
        ShapeSet("fb_face_tracking2", "XR_FB_face_tracking2", FB_FACE2),
    )
}
