"""Videos of the policy: ``VideoWriter(path, fps)`` writes RGB frames to an .mp4 or a .gif.

- ``.mp4`` (H.264) through imageio's ffmpeg plugin, which needs the optional ``imageio-ffmpeg``
  package (``pip install imageio-ffmpeg``; it ships an ffmpeg binary). Frames are streamed to the
  encoder, so a long video costs no memory.
- ``.gif`` through Pillow (installed with matplotlib), always available: frames are kept until
  ``close()``, palette-optimised and looped; ``every`` keeps one frame in N to keep the file small.

Construction checks the suffix and the encoder, so a missing dependency is a one-line ValueError
before any episode runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = ["VideoWriter", "VIDEO_SUFFIXES"]

VIDEO_SUFFIXES = (".mp4", ".gif")


class VideoWriter:
    """Frames ``[H, W, 3] uint8`` -> ``path`` (.mp4 or .gif) at ``fps`` frames per second of the video."""

    def __init__(self, path: str | os.PathLike, fps: float, every: int = 1) -> None:
        self.path = Path(path)
        self.suffix = self.path.suffix.lower()
        if self.suffix not in VIDEO_SUFFIXES:
            raise ValueError(f"video {self.path}: the file must end in .mp4 or .gif")
        if fps <= 0 or every < 1:
            raise ValueError(f"video {self.path}: fps = {fps} must be > 0 and every = {every} >= 1")
        if self.suffix == ".mp4":
            try:
                import imageio_ffmpeg  # noqa: F401
            except ImportError as exc:
                raise ValueError(f"video {self.path}: .mp4 needs the imageio-ffmpeg package "
                                 "(pip install imageio-ffmpeg), or write a .gif") from exc
        if not self.path.parent.is_dir():
            raise ValueError(f"video {self.path}: directory {self.path.parent} does not exist")
        self.fps = float(fps) / every
        self.every = int(every)
        self.frames_seen = 0
        self.frames_written = 0
        self._gif: list[np.ndarray] = []
        self._mp4 = None

    def add(self, frame: np.ndarray | Callable[[], np.ndarray]) -> None:
        """Append one RGB frame, or ``frame()`` (called only for a frame that is kept: every
        ``every``-th one), e.g. ``add(env.render)``."""
        self.frames_seen += 1
        if (self.frames_seen - 1) % self.every:
            return
        frame = np.asarray(frame() if callable(frame) else frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"video frame has shape {frame.shape} and dtype {frame.dtype}; expected [H, W, 3] uint8")
        if self.suffix == ".gif":
            self._gif.append(frame.copy())
        else:
            if self._mp4 is None:
                import imageio.v2 as imageio

                self._mp4 = imageio.get_writer(self.path, format="FFMPEG", fps=self.fps, codec="libx264",
                                               quality=6, macro_block_size=8, ffmpeg_log_level="error")
            self._mp4.append_data(frame)
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the file; returns its path. A video with no frame is not written (ValueError)."""
        if self.frames_written == 0:
            raise ValueError(f"video {self.path}: no frame was recorded")
        if self._mp4 is not None:
            self._mp4.close()
            self._mp4 = None
        if self._gif:
            from PIL import Image

            images = [Image.fromarray(f).quantize(colors=128, method=Image.Quantize.MEDIANCUT) for f in self._gif]
            images[0].save(self.path, save_all=True, append_images=images[1:], loop=0, optimize=True,
                           duration=round(1000.0 / self.fps))
            self._gif = []
        return self.path

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
