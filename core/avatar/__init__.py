"""Avatar hooks: expression -> blendshape tables and the sinks that send them.

- ``tables``: user-editable TOML tables in assets/blendshapes/, blended by class probability.
- ``osc``: ``VRChatSink`` (Unified Expressions v2) and ``VRCFTSink`` (Babble protocol).
- ``openxr_hook``: the OpenXR sink, XR_FB_face_tracking2 layer; ``openxr_session``: companion session, headset presence.
- ``face_ipc``: the shared-memory face-weights channel for other processes.
- ``status``: the one ``Sink`` protocol and ``SinkStatus``.
- ``sinks``: ``make_sinks(AvatarConfig)``, the one builder both front ends use.

Nothing is imported here, so ``core.avatar.openxr_hook`` runs where python-osc is absent
(the Monado test chroot). The CLI flags live in ``cli/avatar_flags.py``, the app's options in
``app/settings.py`` (``Avatar``); both become an ``AvatarConfig``.
"""
