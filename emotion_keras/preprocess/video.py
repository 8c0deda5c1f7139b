"""Video in: frames sampled at a fixed rate, the audio track at 16 kHz mono, and aligned windows of both.

Everything streams (PyAV, which bundles ffmpeg): frames are decoded one at a time and only the sampled
ones are converted to RGB, so a two-hour file is analysed with bounded memory. Times come from the
presentation timestamps, so variable-frame-rate (phone) video is sampled at the right moments; rotation
metadata (display matrix) is applied; frames larger than ``max_side`` (4K) are downscaled by ffmpeg
before anything else sees them.

Bad input, by design:
- missing, empty, non-media or unopenable (e.g. an mp4 truncated before its index) file -> ``InputError``;
- a file whose decoding fails or stops early (truncated mkv/flv/webm, damaged packets) -> the part that
  decoded is used and a warning is appended to the ``warnings`` list the caller passes (and shown in the
  CLI output); if nothing at all decodes -> ``InputError``;
- audio-only or video-only files -> windows carry only the modality present (``frames`` empty or
  ``audio`` None); a file with neither -> ``InputError``.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from emotion_keras.config import Config, ConfigError
from emotion_keras.errors import InputError



@dataclasses.dataclass
class VideoConfig(Config):
    """How a video is cut for analysis: sampled frame rate, window and hop (seconds), audio rate."""

    fps: float = 5.0  # frames sampled per second (0 = every decoded frame)
    window: float = 2.5
    hop: float = 1.0
    sample_rate: int = 16000
    max_side: int = 1280  # larger frames (4K) are downscaled to this before detection

    def __post_init__(self):
        if self.window <= 0 or self.hop <= 0:
            raise ConfigError(f"window and hop must be positive seconds (got {self.window}, {self.hop})")
        if self.fps < 0 or self.sample_rate < 1000 or self.max_side < 32:
            raise ConfigError("fps must be >= 0, sample_rate >= 1000 and max_side >= 32")


@dataclasses.dataclass
class MediaInfo:
    """What a container holds, read from its headers (duration may be missing or wrong when truncated)."""

    path: str
    format: str
    duration: float | None
    has_video: bool
    has_audio: bool
    width: int = 0  # as displayed (after rotation)
    height: int = 0
    rotation: int = 0  # counter-clockwise degrees applied to decoded frames
    fps: float | None = None  # average frame rate from the header
    video_codec: str | None = None
    audio_codec: str | None = None
    audio_rate: int | None = None
    audio_channels: int | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Frame:
    time: float  # seconds from the start of the file (presentation time)
    image: np.ndarray = dataclasses.field(repr=False)  # RGB uint8 (H, W, 3), rotation applied


@dataclasses.dataclass
class Window:
    """One analysis window: the sampled frames and the audio samples between ``start`` and ``end``."""

    index: int
    start: float
    end: float
    frames: list[Frame]
    audio: np.ndarray | None  # float32 mono at ``sample_rate``; None when the file has no audio
    sample_rate: int


def _av():
    import av

    av.logging.set_level(av.logging.PANIC)  # errors reach the user as InputError/warnings instead
    return av


def _open(path: Path):
    av = _av()
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found")
    if path.is_dir():
        raise InputError(path, "is a directory, not a video file")
    if path.stat().st_size == 0:
        raise InputError(path, "file is empty")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as e:
        raise InputError(path, f"cannot be read as video or audio (truncated, corrupt or not a media "
                               f"file: {e.strerror or type(e).__name__})") from None
    except (OSError, ValueError) as e:
        raise InputError(path, f"cannot be opened ({e})") from None


def _rotation_of(stream) -> int:
    """Counter-clockwise rotation from a legacy ``rotate`` tag (newer files carry a display matrix,
    which PyAV reports per decoded frame as ``frame.rotation``)."""
    tag = (stream.metadata or {}).get("rotate")
    if tag is not None:
        try:
            return -int(float(tag)) % 360  # the legacy tag is clockwise
        except ValueError:
            return 0
    return 0


def _first_frame_rotation(container, stream) -> int:
    try:
        for frame in container.decode(stream):
            return int(getattr(frame, "rotation", 0) or 0)
    except Exception:  # an undecodable stream is reported when it is actually read
        pass
    return 0


def probe(path: str | Path) -> MediaInfo:
    """Read a media file's headers; ``InputError`` when it is not a usable audio or video file."""
    path = Path(path)
    with _open(path) as c:
        video = c.streams.video[0] if c.streams.video else None
        audio = c.streams.audio[0] if c.streams.audio else None
        if video is not None and video.codec_context is None:
            video = None
        if audio is not None and audio.codec_context is None:
            audio = None
        if video is None and audio is None:
            raise InputError(path, "has neither a video nor an audio stream")
        duration = c.duration / 1e6 if c.duration else None
        if duration is None:
            for s in (video, audio):
                if s is not None and s.duration and s.time_base:
                    duration = float(s.duration * s.time_base)
                    break
        info = MediaInfo(path=str(path), format=c.format.name, duration=duration,
                         has_video=video is not None, has_audio=audio is not None)
        if video is not None:
            cc = video.codec_context
            info.video_codec = cc.name
            info.width, info.height = cc.width, cc.height
            info.rotation = _first_frame_rotation(c, video) or _rotation_of(video)
            if int(round(info.rotation / 90)) % 2:
                info.width, info.height = info.height, info.width
            rate = video.average_rate or video.guessed_rate
            info.fps = float(rate) if rate else None
        if audio is not None:
            cc = audio.codec_context
            info.audio_codec = cc.name
            info.audio_rate = cc.sample_rate
            info.audio_channels = cc.layout.nb_channels if cc.layout else None
    return info


def _start_offset(container) -> float:
    return container.start_time / 1e6 if container.start_time else 0.0


def _scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height, 1))
    # even sizes keep swscale on its fast paths for yuv420p sources
    return max(2, int(round(width * scale / 2)) * 2), max(2, int(round(height * scale / 2)) * 2)


def _rotate(image: np.ndarray, degrees: int) -> np.ndarray:
    k = int(round(degrees / 90.0)) % 4
    return np.ascontiguousarray(np.rot90(image, k)) if k else image


def iter_frames(path: str | Path, fps: float = 5.0, max_side: int = 1280,
                warnings: list[str] | None = None) -> Iterator[Frame]:
    """Yield RGB frames sampled every ``1/fps`` seconds of presentation time (0: every frame).

    The first decoded frame at or after each sampling instant is taken, so variable frame rates are
    followed by time, not by frame count. Decoding errors after some frames end the stream with a
    warning; with no frame decoded they raise ``InputError``.
    """
    av = _av()
    path = Path(path)
    warnings = warnings if warnings is not None else []
    c = _open(path)
    try:
        if not c.streams.video:
            raise InputError(path, "has no video stream")
        stream = c.streams.video[0]
        # No frame threading: closing a frame-threaded decoder mid-stream (a caller that stops
        # early) can deadlock inside libavcodec; the decode is not the bottleneck here anyway.
        stream.thread_type = "SLICE"
        offset = _start_offset(c)
        step = 1.0 / fps if fps and fps > 0 else 0.0
        next_t = 0.0
        n_decoded = n_yielded = 0
        fallback_dt = 1.0 / float(stream.average_rate) if stream.average_rate else 1 / 30
        size = None
        rotation = None
        last_t = -1.0
        try:
            for frame in c.decode(stream):
                n_decoded += 1
                t = frame.time
                t = (t - offset) if t is not None else (last_t + fallback_dt if last_t >= 0 else 0.0)
                if t < last_t:  # out-of-order or broken timestamps: keep time monotonic
                    t = last_t + 1e-6
                last_t = t
                if step and t + 1e-6 < next_t:
                    continue
                if step:
                    next_t = (np.floor(t / step + 1e-6) + 1) * step
                if size is None:
                    size = _scaled_size(frame.width, frame.height, max_side)
                    rotation = getattr(frame, "rotation", 0) or _rotation_of(stream)
                image = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                n_yielded += 1
                yield Frame(time=float(t), image=_rotate(image, rotation))
        except av.error.FFmpegError as e:
            if n_yielded == 0:
                raise InputError(path, f"video stream cannot be decoded ({e.strerror or type(e).__name__})"
                                 ) from None
            warnings.append(f"{path}: video decoding stopped at {last_t:.2f} s "
                            f"({e.strerror or type(e).__name__}); the rest of the file is ignored")
            return
        if n_yielded == 0:
            raise InputError(path, "video stream holds no decodable frame (truncated or corrupt?)")
        duration = c.duration / 1e6 if c.duration else None
        if duration and last_t + 2 * fallback_dt + 0.5 < duration:
            warnings.append(f"{path}: video ends at {last_t:.2f} s but the file declares {duration:.2f} s "
                            "(truncated?); results cover the decoded part")
    finally:
        c.close()


def iter_audio(path: str | Path, sample_rate: int = 16000, warnings: list[str] | None = None,
               ) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(start_time, samples)`` chunks of the first audio track, float32 mono at ``sample_rate``.

    Chunks are contiguous from the first packet's time (gaps in broken files are not filled).
    """
    av = _av()
    path = Path(path)
    warnings = warnings if warnings is not None else []
    c = _open(path)
    try:
        if not c.streams.audio:
            raise InputError(path, "has no audio stream")
        stream = c.streams.audio[0]
        offset = _start_offset(c)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        t0 = None
        total = 0
        try:
            for frame in c.decode(stream):
                if t0 is None:
                    t0 = max(0.0, (frame.time - offset) if frame.time is not None else 0.0)
                for out in resampler.resample(frame):
                    x = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    if x.size:
                        yield t0 + total / sample_rate, x
                        total += x.size
            for out in resampler.resample(None):
                x = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                if x.size:
                    yield (t0 or 0.0) + total / sample_rate, x
                    total += x.size
        except av.error.FFmpegError as e:
            if total == 0:
                raise InputError(path, f"audio stream cannot be decoded ({e.strerror or type(e).__name__})"
                                 ) from None
            warnings.append(f"{path}: audio decoding stopped at {total / sample_rate:.2f} s "
                            f"({e.strerror or type(e).__name__}); the rest of the file is ignored")
    finally:
        c.close()


def load_audio_track(path: str | Path, sample_rate: int = 16000, max_seconds: float | None = None,
                     warnings: list[str] | None = None) -> np.ndarray:
    """The whole audio track (up to ``max_seconds``) as one float32 mono array: for short clips."""
    chunks, n = [], 0
    limit = int(max_seconds * sample_rate) if max_seconds else None
    for t, x in iter_audio(path, sample_rate, warnings):
        if not chunks and t > 0:
            pad = int(round(t * sample_rate))
            chunks.append(np.zeros(pad if limit is None else min(pad, limit), np.float32))
            n += chunks[-1].size
        chunks.append(x)
        n += x.size
        if limit is not None and n >= limit:
            break
    out = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return out[:limit] if limit is not None else out


def window_starts(duration: float, window: float, hop: float) -> list[float]:
    """Window start times covering ``[0, duration]``: a clip shorter than a window gives one window."""
    starts = [0.0]
    while starts[-1] + window < duration - 1e-6:
        starts.append(round(starts[-1] + hop, 6))
    return starts


def iter_windows(path: str | Path, config: VideoConfig | None = None, info: MediaInfo | None = None,
                 warnings: list[str] | None = None, video: bool = True, audio: bool = True,
                 ) -> Iterator[Window]:
    """Yield aligned windows ``[k*hop, k*hop + window)`` of sampled frames and audio, streaming.

    Frames and audio come from two independent decoders advanced in step, so memory stays bounded by
    one window of each however the file interleaves its streams. The last window ends where the data
    ends. A modality the file lacks (or the caller turns off) is empty in every window.
    """
    config = config or VideoConfig()
    path = Path(path)
    info = info or probe(path)
    warnings = warnings if warnings is not None else []
    sr = config.sample_rate
    frames = iter_frames(path, config.fps, config.max_side, warnings) if (video and info.has_video) \
        else None
    chunks = iter_audio(path, sr, warnings) if (audio and info.has_audio) else None
    frame_dt = 1.0 / info.fps if info.fps else 0.04

    fbuf: deque[Frame] = deque()
    abuf: list[np.ndarray] = []
    abuf_start = 0  # absolute sample index of abuf[0][0]
    a_end = 0  # absolute sample index after the last buffered sample
    v_done, a_done = frames is None, chunks is None
    last_frame_t = -1.0
    k = 0
    while True:
        start = k * config.hop
        end = start + config.window
        while not v_done and (not fbuf or fbuf[-1].time < end):
            try:
                f = next(frames)
            except StopIteration:
                v_done = True
                break
            last_frame_t = f.time
            if f.time >= start:
                fbuf.append(f)
        while not a_done and a_end < end * sr:
            try:
                t, x = next(chunks)
            except StopIteration:
                a_done = True
                break
            if not abuf and a_end == 0 and t > 0:  # audio starting late: pad the beginning with silence
                pad = int(round(t * sr))
                abuf.append(np.zeros(pad, np.float32))
                a_end = pad
            abuf.append(x)
            a_end += x.size
        data_end = max(last_frame_t + frame_dt if last_frame_t >= 0 else 0.0, a_end / sr)
        tail = min(0.5 * config.hop, 0.5)  # a shorter uncovered tail is not worth another window
        if k > 0 and v_done and a_done and (start >= data_end - 1e-6
                                            or start - config.hop + config.window >= data_end - tail):
            break
        w_frames = [f for f in fbuf if start <= f.time < end]
        w_audio = None
        if chunks is not None:
            buf = np.concatenate(abuf) if len(abuf) > 1 else (abuf[0] if abuf else np.zeros(0, np.float32))
            abuf = [buf]
            lo = max(0, int(round(start * sr)) - abuf_start)
            hi = max(lo, int(round(end * sr)) - abuf_start)
            w_audio = buf[lo:hi].copy()
        w_end = min(end, data_end) if (v_done and a_done) else end
        if k == 0 and not w_frames and (w_audio is None or w_audio.size == 0) and v_done and a_done:
            raise InputError(path, "no frame or audio sample could be decoded")
        yield Window(index=k, start=round(start, 6), end=round(max(w_end, start), 6), frames=w_frames,
                     audio=w_audio, sample_rate=sr)
        if v_done and a_done and end >= data_end - tail:
            break
        # drop what the next window no longer needs
        nxt = (k + 1) * config.hop
        while fbuf and fbuf[0].time < nxt:
            fbuf.popleft()
        if abuf:
            cut = max(0, int(round(nxt * sr)) - abuf_start)
            if cut:
                abuf = [abuf[0][cut:]]
                abuf_start += cut
        k += 1
