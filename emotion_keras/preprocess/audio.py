"""Audio in, speech features out: load any audio file as 16 kHz mono, trim silence, cut fixed-length
windows, and compute log-mel or MFCC (+ deltas) features, cached as float16.

Plain numpy + soundfile/PyAV + soxr: no Keras, and no numba-compiled librosa code paths (their first
call compiles for ~30 s in every fresh process); librosa supplies only the mel filter bank.

Documented behaviour on awkward input (all raise :class:`InputError` naming the file, except where said):

* empty file, corrupt data, a non-audio file (a text file named ``.wav``): ``InputError``;
* any sample rate (e.g. 96 kHz) is resampled to ``sr``; any channel count (e.g. 8) is averaged to mono;
* silence only (peak below ``silence_dbfs``, -60 dBFS by default): ``InputError("silence only ...")``,
  and in long recordings silent windows are skipped;
* a clip shorter than ``min_seconds`` (0.3 s): ``InputError("clip too short ...")``, since a fraction of a
  syllable carries no usable emotion; clips from 0.3 s up to a window are zero-padded to one window;
* a long recording (e.g. one hour) is decoded block by block (:func:`stream_audio`, bounded memory) and
  cut into overlapping windows (:func:`stream_windows`) whose predictions the recogniser pools.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from emotion_keras.config import Config, ConfigError
from emotion_keras.errors import InputError

FEATURE_VERSION = 1  # bump when feature maths change, so caches recompute
FEATURES = ("logmel", "mfcc", "functionals")


@dataclasses.dataclass
class SpeechFeatureConfig(Config):
    """How a waveform becomes the model's ``features`` input ``(frames, n_features)``."""

    sr: int = 16000
    trim_db: float = 30.0  # trim leading/trailing audio quieter than peak - trim_db (0: no trim)
    silence_dbfs: float = -60.0  # a clip or window whose peak is below this is silence
    min_seconds: float = 0.3  # shorter clips are an error
    window_seconds: float = 3.0  # model input length; shorter clips are zero-padded
    hop_seconds: float = 1.5  # step between windows of longer clips
    n_mels: int = 64
    n_fft: int = 400  # 25 ms at 16 kHz
    hop_length: int = 160  # 10 ms at 16 kHz
    fmin: float = 20.0
    fmax: float | None = None  # None: sr / 2
    feature: str = "logmel"  # logmel | mfcc | functionals (statistics of both per window, one vector)
    n_mfcc: int = 40
    deltas: bool = True  # MFCC only: append first and second derivatives
    normalize: str = "utterance"  # utterance (one mean/std per window) | cmvn (per feature) | none
    # after the cache: per-speaker standardisation at training, per-file at inference (speaker_norm.py)
    speaker_norm: str = "none"  # none | speaker
    prosody: str = "none"  # none | praat | builtin: a second model input "prosody" per window (prosody.py)
    vad: str = "webrtc"  # webrtc | energy | none: skip windows without speech in multi-window audio
    vad_min_speech: float = 0.1  # fraction of 30 ms frames that must be speech
    vad_min_seconds: float = 10.0  # only recordings longer than this are VAD-filtered (not utterances)

    def __post_init__(self):
        if self.feature not in FEATURES:
            raise ConfigError(f"feature must be one of {', '.join(FEATURES)}, not {self.feature!r}")
        if self.normalize not in ("utterance", "cmvn", "none"):
            raise ConfigError(f"normalize must be utterance, cmvn or none, not {self.normalize!r}")
        if self.window_seconds * self.sr < self.n_fft or self.hop_seconds <= 0:
            raise ConfigError("window_seconds must hold at least one FFT frame and hop_seconds be > 0")
        if self.min_seconds * self.sr < self.n_fft:
            raise ConfigError("min_seconds must hold at least one FFT frame")
        if self.feature != "logmel" and self.n_mfcc > self.n_mels:
            raise ConfigError("n_mfcc cannot exceed n_mels")
        from emotion_keras.preprocess import speaker_norm, vad

        if self.speaker_norm not in speaker_norm.MODES:
            raise ConfigError(f"speaker_norm must be one of {speaker_norm.MODES}, not {self.speaker_norm!r}")
        from emotion_keras.preprocess.prosody import METHODS

        if self.prosody != "none" and self.prosody not in METHODS:
            raise ConfigError(f"prosody must be 'none' or one of {', '.join(METHODS)}, not {self.prosody!r}")
        if self.vad not in vad.MODES:
            raise ConfigError(f"vad must be one of {vad.MODES}, not {self.vad!r}")

    def cache_dict(self) -> dict:
        """The fields that change cached features (speaker normalisation is applied after the cache)."""
        return {k: v for k, v in self.to_dict().items() if k != "speaker_norm"}

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sr))

    @property
    def hop_samples(self) -> int:
        return max(1, int(round(self.hop_seconds * self.sr)))

    @property
    def frames(self) -> int:
        if self.feature == "functionals":
            return 1
        return 1 + (self.window_samples - self.n_fft) // self.hop_length

    @property
    def n_features(self) -> int:
        if self.feature == "logmel":
            return self.n_mels
        if self.feature == "functionals":
            from emotion_keras.preprocess.functionals import dim

            return dim(self.n_mfcc, self.n_mels)
        return self.n_mfcc * (3 if self.deltas else 1)

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.frames, self.n_features


# ---------------------------------------------------------------- decoding

def _check_file(path: Path) -> None:
    if not path.exists():
        raise InputError(path, "no such file")
    if not path.is_file():
        raise InputError(path, "not a file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes)")


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(512)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head


def _mono(block: np.ndarray) -> np.ndarray:
    block = block.mean(axis=1) if block.ndim == 2 else block
    return np.nan_to_num(block.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=-1.0)


class _Resampler:
    """Streaming resampler (soxr) so block boundaries leave no clicks; identity when rates match."""

    def __init__(self, in_rate: int, out_rate: int):
        self.same = int(in_rate) == int(out_rate)
        if not self.same:
            import soxr

            self.stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32")

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        if self.same:
            return x
        return self.stream.resample_chunk(np.ascontiguousarray(x, dtype=np.float32), last=last)


def _stream_soundfile(path: Path, sr: int, block: int) -> Iterator[np.ndarray]:
    import soundfile as sf

    f = sf.SoundFile(str(path))  # raises when libsndfile cannot parse the file
    with f:
        rs = _Resampler(f.samplerate, sr)
        frames_in = max(1, int(block * f.samplerate / sr))
        while True:
            try:
                data = f.read(frames_in, dtype="float32", always_2d=True)
            except (RuntimeError, sf.LibsndfileError) as e:
                raise InputError(path, f"corrupt audio data ({e})") from None
            if len(data) == 0:
                break
            out = rs(_mono(data))
            if len(out):
                yield out
        tail = rs(np.zeros(0, np.float32), last=True)
        if len(tail):
            yield tail


def _stream_pyav(path: Path, sr: int, block: int) -> Iterator[np.ndarray]:
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise InputError(path, f"not a readable audio file ({type(e).__name__})") from None
    with container:
        if not container.streams.audio:
            raise InputError(path, "has no audio stream")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sr)
        pending: list[np.ndarray] = []
        n = 0
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    n += pending[-1].size
                if n >= block:
                    yield _mono(np.concatenate(pending))
                    pending, n = [], 0
            for out in resampler.resample(None):
                pending.append(out.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, ValueError) as e:
            raise InputError(path, f"corrupt audio data ({type(e).__name__}: {e})") from None
        if pending:
            yield _mono(np.concatenate(pending))


def stream_audio(path: str | Path, sr: int = 16000, block_seconds: float = 30.0) -> Iterator[np.ndarray]:
    """Yield the file's audio as float32 mono blocks at ``sr`` (about ``block_seconds`` each).

    Memory stays bounded by the block size whatever the file's length, rate or channel count.
    libsndfile (WAV, FLAC, OGG/Vorbis, MP3) decodes first; anything else (M4A/AAC, Opus, audio in
    video containers) goes through PyAV. Undecodable input raises :class:`InputError`.
    """
    path = Path(path).expanduser()
    _check_file(path)
    block = max(1, int(block_seconds * sr))
    try:
        gen = _stream_soundfile(path, sr, block)
        first = next(gen, None)
    except InputError:
        raise
    except Exception:  # libsndfile does not know the format: try FFmpeg before giving up
        gen = None
    if gen is None:
        if _looks_like_text(path):
            raise InputError(path, "not an audio file (it holds text)")
        gen = _stream_pyav(path, sr, block)
        first = next(gen, None)
    if first is None:
        raise InputError(path, "contains no audio samples")
    yield first
    yield from gen


def load_audio(path: str | Path, sr: int = 16000) -> np.ndarray:
    """The whole file as float32 mono at ``sr`` (decoded in blocks; use :func:`stream_audio` for hours)."""
    blocks = list(stream_audio(path, sr))
    y = np.concatenate(blocks) if len(blocks) > 1 else blocks[0]
    if y.size == 0:
        raise InputError(path, "contains no audio samples")
    return y


def audio_duration(path: str | Path) -> float | None:
    """Duration in seconds from the header (None when the header does not say)."""
    path = Path(path)
    try:
        import soundfile as sf

        info = sf.info(str(path))
        if info.frames > 0 and info.samplerate > 0:
            return info.frames / info.samplerate
    except Exception:
        pass
    try:
        import av

        with av.open(str(path)) as c:
            if c.duration:
                return c.duration / 1_000_000
    except Exception:
        pass
    return None


# ---------------------------------------------------------------- trimming and windows

def _frame_rms_db(y: np.ndarray, frame: int, hop: int) -> np.ndarray:
    if len(y) < frame:
        y = np.pad(y, (0, frame - len(y)))
    frames = np.lib.stride_tricks.sliding_window_view(y, frame)[::hop]
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10))


def peak_dbfs(y: np.ndarray) -> float:
    peak = float(np.max(np.abs(y))) if len(y) else 0.0
    return 20 * np.log10(max(peak, 1e-10))


def speech_bounds(y: np.ndarray, config: SpeechFeatureConfig) -> tuple[int, int] | None:
    """``(start, end)`` samples of the clip without leading/trailing silence; None for silence only.

    A frame is kept when its RMS is within ``trim_db`` of the loudest frame. The kept span never
    shrinks below ``min_seconds``: it is widened around its centre instead.
    """
    if peak_dbfs(y) < config.silence_dbfs:
        return None
    n = len(y)
    if config.trim_db <= 0:
        return 0, n
    db = _frame_rms_db(y, config.n_fft, config.hop_length)
    keep = np.flatnonzero(db > db.max() - config.trim_db)
    start = int(keep[0]) * config.hop_length
    end = min(n, int(keep[-1]) * config.hop_length + config.n_fft)
    min_len = min(n, int(round(config.min_seconds * config.sr)))
    if end - start < min_len:
        centre = (start + end) // 2
        start = max(0, min(centre - min_len // 2, n - min_len))
        end = start + min_len
    return start, end


def window_bounds(n_samples: int, config: SpeechFeatureConfig) -> list[tuple[int, int]]:
    """Window spans over a clip: one (padded later) when it fits, else overlapping windows every hop,
    the last one aligned to the clip's end so no tail is lost."""
    w, h = config.window_samples, config.hop_samples
    if n_samples <= w:
        return [(0, n_samples)]
    starts = list(range(0, n_samples - w, h)) + [n_samples - w]
    return [(s, s + w) for s in sorted(set(starts))]


def prepare(y: np.ndarray, config: SpeechFeatureConfig, path: str | Path = "<waveform>") -> np.ndarray:
    """Check length and silence, then trim: the waveform features are computed from."""
    seconds = len(y) / config.sr
    if seconds < config.min_seconds:
        raise InputError(path, f"clip too short ({seconds:.2f} s; at least {config.min_seconds:.2f} s "
                               "of audio is needed)")
    bounds = speech_bounds(y, config)
    if bounds is None:
        raise InputError(path, f"silence only (peak {peak_dbfs(y):.0f} dBFS, below "
                               f"{config.silence_dbfs:.0f} dBFS): no speech to classify")
    return y[bounds[0]:bounds[1]]


# ---------------------------------------------------------------- features

@functools.lru_cache(maxsize=8)
def mel_basis(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """Slaney mel filter bank from librosa (pure numpy there: no numba compile)."""
    from librosa.filters import mel

    return mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _hann(n: int) -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float32)  # periodic


@functools.lru_cache(maxsize=8)
def _dct_matrix(n_mfcc: int, n_mels: int) -> np.ndarray:
    """Orthonormal DCT-II rows (as librosa/scipy ``dct(norm='ortho')``)."""
    k = np.arange(n_mfcc)[:, None]
    n = np.arange(n_mels)[None, :]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    m[0] /= np.sqrt(2.0)
    return m.astype(np.float32)


def _deltas(x: np.ndarray, width: int = 9) -> np.ndarray:
    """Regression deltas over time (axis 0) with edge replication, as in HTK/librosa."""
    n = width // 2
    padded = np.pad(x, ((n, n), (0, 0)), mode="edge")
    denom = 2 * sum(i * i for i in range(1, n + 1))
    out = np.zeros_like(x)
    for i in range(1, n + 1):
        out += i * (padded[n + i:n + i + len(x)] - padded[n - i:n - i + len(x)])
    return out / denom


def _spectra(y: np.ndarray, config: SpeechFeatureConfig, basis: np.ndarray | None = None):
    """Sample frames ``(T, n_fft)``, power spectra ``(T, bins)`` and mel energies ``(T, n_mels)``."""
    if len(y) < config.n_fft:
        y = np.pad(y, (0, config.n_fft - len(y)))
    frames = np.lib.stride_tricks.sliding_window_view(y, config.n_fft)[::config.hop_length]
    spec = np.fft.rfft(frames * _hann(config.n_fft), axis=1)
    power = (spec.real ** 2 + spec.imag ** 2).astype(np.float32)
    if basis is None:
        basis = mel_basis(config.sr, config.n_fft, config.n_mels, config.fmin, config.fmax)
    return frames, power, power @ basis.T


def _db(mel: np.ndarray) -> np.ndarray:
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(db, db.max() - 80.0)  # librosa's power_to_db(top_db=80)


def _mfcc(mel: np.ndarray, n_mfcc: int, deltas: bool) -> np.ndarray:
    mfcc = _db(mel) @ _dct_matrix(n_mfcc, mel.shape[1]).T
    if deltas:
        d1 = _deltas(mfcc)
        mfcc = np.concatenate([mfcc, d1, _deltas(d1)], axis=1)
    return mfcc.astype(np.float32)


def spectral_features(y: np.ndarray, config: SpeechFeatureConfig,
                      basis: np.ndarray | None = None) -> np.ndarray:
    """``(frames, n_features)`` float32 log-mel or MFCC(+deltas) of a waveform (not normalised), or
    for ``functionals`` the ``(1, DIM)`` statistics of those frames (:mod:`.functionals`)."""
    frames, power, mel = _spectra(y, config, basis)
    logmel = np.log(mel + 1e-6)
    if config.feature == "logmel":
        return logmel
    if config.feature == "mfcc":
        return _mfcc(mel, config.n_mfcc, config.deltas)
    from emotion_keras.preprocess.functionals import functionals

    # dB floored 80 dB under the peak: near-silent frames would dominate the spread of ln(mel)
    db = _db(mel)
    return functionals(power, frames, db, _mfcc(mel, config.n_mfcc, True), config.sr, _deltas(db))[None]


def _normalise(x: np.ndarray, mode: str) -> np.ndarray:
    if mode == "utterance":
        return (x - x.mean()) / max(float(x.std()), 1e-3)
    if mode == "cmvn":
        return (x - x.mean(0, keepdims=True)) / np.maximum(x.std(0, keepdims=True), 1e-3)
    return x


def window_feature(segment: np.ndarray, config: SpeechFeatureConfig,
                   basis: np.ndarray | None = None) -> np.ndarray:
    """Features of one window: computed on its real samples, normalised over them, then zero-padded
    (0 is the mean after normalisation) to ``config.frames`` frames."""
    feats = spectral_features(segment, config, basis)
    if config.feature != "functionals":  # statistics are standardised by the model (or per speaker)
        feats = _normalise(feats, config.normalize)
    out = np.zeros(config.input_shape, np.float32)
    n = min(len(feats), config.frames)
    out[:n] = feats[:n]
    return out


def _keep_window(seg: np.ndarray, config: SpeechFeatureConfig, several: bool) -> bool:
    """Not silent, and (in audio longer than one window) holding speech by the VAD."""
    if peak_dbfs(seg) < config.silence_dbfs:
        return False
    if several and config.vad != "none":
        from emotion_keras.preprocess.vad import has_speech

        return has_speech(seg, config.sr, config.vad, config.vad_min_speech)
    return True


def _no_speech(path, y, config) -> InputError:
    if peak_dbfs(y) < config.silence_dbfs:
        return InputError(path, f"silence only (peak {peak_dbfs(y):.0f} dBFS, below "
                                f"{config.silence_dbfs:.0f} dBFS): no speech to classify")
    return InputError(path, f"no speech detected by the voice activity detector ({config.vad}) in any "
                            "window: nothing to classify")


def window_inputs(segments: Sequence[np.ndarray], config: SpeechFeatureConfig,
                  basis: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Model inputs of window waveforms: ``features`` and, when configured, ``prosody``."""
    out = {"features": np.stack([window_feature(s, config, basis) for s in segments])}
    if config.prosody != "none":
        from emotion_keras.preprocess.prosody import prosody_vector, require

        require(config.prosody)
        out["prosody"] = np.stack([prosody_vector(s, config.sr, config.prosody) for s in segments])
    return out


def waveform_segments(y: np.ndarray, config: SpeechFeatureConfig, path: str | Path = "<waveform>",
                      trim: bool = True) -> tuple[list[np.ndarray], np.ndarray]:
    """A whole clip -> its window waveforms and their spans ``(n_windows, 2)`` in seconds.

    Trims (unless ``trim=False``), cuts windows, drops silent windows and, in clips longer than one
    window, windows without speech (``config.vad``); raises InputError for a clip that is too short,
    silence only, or without speech anywhere.
    """
    offset = 0
    if trim:
        seconds = len(y) / config.sr
        if seconds < config.min_seconds:
            prepare(y, config, path)  # raises "too short"
        bounds = speech_bounds(y, config)
        if bounds is None:
            prepare(y, config, path)  # raises "silence only"
        offset = bounds[0]
        y = y[bounds[0]:bounds[1]]
    elif len(y) / config.sr < config.min_seconds:
        prepare(y, config, path)
    segs, spans = [], []
    bounds = window_bounds(len(y), config)
    long = len(bounds) > 1 and len(y) > config.vad_min_seconds * config.sr
    for s, e in bounds:
        seg = y[s:e]
        if not _keep_window(seg, config, long):
            continue
        segs.append(seg)
        spans.append(((offset + s) / config.sr, (offset + e) / config.sr))
    if not segs:
        raise _no_speech(path, y, config)
    return segs, np.asarray(spans, np.float32)


def waveform_inputs(y: np.ndarray, config: SpeechFeatureConfig, path: str | Path = "<waveform>",
                    basis: np.ndarray | None = None, trim: bool = True,
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """A whole clip -> ``({"features", ["prosody"]}, spans)`` (see :func:`waveform_segments`)."""
    segs, spans = waveform_segments(y, config, path, trim)
    return window_inputs(segs, config, basis), spans


def waveform_windows(y: np.ndarray, config: SpeechFeatureConfig, path: str | Path = "<waveform>",
                     basis: np.ndarray | None = None, trim: bool = True,
                     ) -> tuple[np.ndarray, np.ndarray]:
    """A whole clip -> ``(features (n_windows, frames, n_features), spans (n_windows, 2) in seconds)``."""
    segs, spans = waveform_segments(y, config, path, trim)
    return np.stack([window_feature(s, config, basis) for s in segs]), spans


def file_windows(path: str | Path, config: SpeechFeatureConfig,
                 basis: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load a clip and return its window features and spans (see :func:`waveform_windows`)."""
    return waveform_windows(load_audio(path, config.sr), config, path, basis)


def stream_windows(path: str | Path, config: SpeechFeatureConfig, batch: int = 32,
                   block_seconds: float = 30.0, basis: np.ndarray | None = None, inputs: bool = False,
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Window features of a long recording in batches of up to ``batch``, with bounded memory.

    Windows every ``hop_seconds`` plus one aligned to the end, as :func:`window_bounds`; no trimming
    (a recording is not an utterance), silent windows and windows without speech (``config.vad``)
    skipped. Yields ``(features, spans)``, or ``({"features", ["prosody"]}, spans)`` with ``inputs``.
    Raises InputError when the file is undecodable, shorter than ``min_seconds`` or has no speech.
    """
    w, h = config.window_samples, config.hop_samples
    buf = np.zeros(0, np.float32)
    buf_start = 0  # absolute sample index of buf[0]
    next_start = 0
    total = 0
    feats: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    any_window = False
    any_sound = False
    last_end = 0
    several = False  # a short recording (all of it seen in the first block) is never VAD-filtered

    def emit(seg, s):
        nonlocal any_window, any_sound, last_end
        last_end = s + len(seg)
        any_sound = any_sound or peak_dbfs(seg) >= config.silence_dbfs
        if not _keep_window(seg, config, several):
            return
        any_window = True
        feats.append(window_inputs([seg], config, basis))  # now: a segment would pin its whole block
        spans.append((s / config.sr, (s + len(seg)) / config.sr))

    def out():
        x = {k: np.concatenate([f[k] for f in feats]) for k in feats[0]}
        return (x if inputs else x["features"]), np.asarray(spans, np.float32)

    for block in stream_audio(path, config.sr, block_seconds):
        buf = np.concatenate([buf, block])
        total += len(block)
        several = total > w and total > config.vad_min_seconds * config.sr
        while next_start + w <= buf_start + len(buf) and total > next_start + w:
            # a window strictly inside the audio so far: the final one is handled below
            emit(buf[next_start - buf_start:next_start - buf_start + w], next_start)
            next_start += h
            if len(feats) >= batch:
                yield out()
                feats, spans = [], []
        keep_from = min(next_start, max(0, buf_start + len(buf) - w))
        buf = buf[keep_from - buf_start:]
        buf_start = keep_from
    if total < config.min_seconds * config.sr:
        raise InputError(path, f"clip too short ({total / config.sr:.2f} s; at least "
                               f"{config.min_seconds:.2f} s of audio is needed)")
    # the last window: the whole clip when it fits in one window, else aligned to the end
    start = max(0, total - w)
    several = total > w and total > config.vad_min_seconds * config.sr
    if total <= w or last_end < total:
        emit(buf[start - buf_start:], start)
    if feats:
        yield out()
    if not any_window:
        if not any_sound:
            raise InputError(path, f"silence only (every window's peak is below {config.silence_dbfs:.0f} "
                                   "dBFS): no speech to classify")
        raise InputError(path, f"no speech detected by the voice activity detector ({config.vad}) in any "
                               "window: nothing to classify")


# ---------------------------------------------------------------- corpus features (cached)

def _record_features(item: tuple, config: SpeechFeatureConfig, basis: np.ndarray | None, augment=None):
    """One record -> (inputs dict, spans) or an error message; never raises.

    ``item`` is ``(path, array)`` or ``(path, array, index, copy)`` for copy ``copy`` of record
    ``index`` augmented by ``augment`` (an :class:`AudioAugmentConfig`).
    """
    path, array = item[:2]
    try:
        y = np.asarray(array, np.float32) if array is not None else load_audio(path, config.sr)
        if augment is not None:
            from emotion_keras.preprocess.augment_audio import augment_waveform

            y = augment_waveform(y, config.sr, augment, item[2], item[3])
        x, spans = waveform_inputs(y, config, path or "<array>", basis)
        x["features"] = x["features"].astype(np.float16)
        return x, spans
    except InputError as e:
        return str(e)
    except Exception as e:  # a decoder's surprise must not stop a 10,000-file batch
        return f"{path}: {type(e).__name__}: {e}"


def _batch_features(items, cfg: dict, basis: np.ndarray, aug: dict | None = None):
    """Worker task: a batch of records (batches amortise inter-process transfer)."""
    config = SpeechFeatureConfig.from_dict(cfg)
    augment = None
    if aug is not None:
        from emotion_keras.preprocess.augment_audio import AudioAugmentConfig

        augment = AudioAugmentConfig.from_dict(aug)
    return [_record_features(item, config, basis, augment) for item in items]


def compute_features(records: Sequence, config: SpeechFeatureConfig, workers: int | None = None,
                     progress: bool = True, augment=None) -> dict[str, np.ndarray]:
    """Features for every record, in parallel processes, with a progress bar (uncached).

    Returns arrays ``x`` (windows, frames, n_features) float16, ``clip`` (windows,) record index,
    ``spans`` (windows, 2) seconds, ``failed`` (record indices) and ``errors`` (their messages), and
    ``prosody`` (windows, DIM) when ``config.prosody`` is on. With ``augment`` (an
    :class:`~emotion_keras.preprocess.augment_audio.AudioAugmentConfig`), ``augment.copies`` augmented
    versions of each record instead (``clip`` still indexes ``records``).
    """
    from tqdm.auto import tqdm

    basis = mel_basis(config.sr, config.n_fft, config.n_mels, config.fmin, config.fmax)
    base = [(str(r.path) if r.path is not None else None, r.array if r.path is None else None)
            for r in records]
    if augment is not None:
        items = [(*base[i], i, c) for c in range(augment.copies) for i in range(len(base))]
        owner = [i for c in range(augment.copies) for i in range(len(base))]
    else:
        items, owner = base, list(range(len(base)))
    aug = augment.to_dict() if augment is not None else None
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(items), desc="speech features", unit="clip", disable=not progress)
    results = []
    if workers <= 1 or len(items) < 48:
        for item in items:
            results.append(_record_features(item, config, basis, augment))
            bar.update()
    else:
        from joblib import Parallel, delayed

        # loky processes: true parallelism without fork (unsafe once TensorFlow/JAX threads exist)
        # and without re-running the caller's __main__ (which the stdlib's spawn would do)
        size = 16
        batches = [items[i:i + size] for i in range(0, len(items), size)]
        cfg = config.to_dict()
        run = Parallel(n_jobs=workers, backend="loky", return_as="generator")
        for res in run(delayed(_batch_features)(b, cfg, basis, aug) for b in batches):
            results += res
            bar.update(len(res))
    bar.close()
    xs, pros, clips, spans, failed, errors = [], [], [], [], [], []
    for i, res in zip(owner, results):
        if isinstance(res, str):
            if i not in failed:
                failed.append(i)
                errors.append(res)
            continue
        xs.append(res[0]["features"])
        if "prosody" in res[0]:
            pros.append(res[0]["prosody"])
        clips.append(np.full(len(res[0]["features"]), i, np.int32))
        spans.append(res[1])
    shape = (0, *config.input_shape)
    extra = {}
    if config.prosody != "none":
        from emotion_keras.preprocess.prosody import DIM

        extra["prosody"] = np.concatenate(pros).astype(np.float32) if pros else np.zeros((0, DIM), np.float32)
    return {
        **extra,
        "x": np.concatenate(xs) if xs else np.zeros(shape, np.float16),
        "clip": np.concatenate(clips) if clips else np.zeros(0, np.int32),
        "spans": np.concatenate(spans) if spans else np.zeros((0, 2), np.float32),
        "failed": np.asarray(failed, np.int32),
        "errors": np.asarray(errors, dtype=str) if errors else np.zeros(0, dtype="<U1"),
    }


def speech_features(records: Sequence, config: SpeechFeatureConfig, workers: int | None = None,
                    progress: bool = True, cache_dir: Path | None = None, augment=None) -> dict[str, np.ndarray]:
    """:func:`compute_features`, cached (float16 npz, atomic) under a key of records, config and
    augmentation (so an augmented set is computed once per config, whatever reruns follow)."""
    from emotion_keras.data.cache import cache_key, cached
    from emotion_keras.data.records import fingerprint

    parts = ["speech-features", FEATURE_VERSION, fingerprint(records), config.cache_dict()]
    if config.feature == "functionals":  # its own version: a new statistic recomputes only these caches
        from emotion_keras.preprocess.functionals import VERSION

        parts.append({"functionals": VERSION})
    if augment is not None:
        parts.append({"augment": augment.to_dict()})
    key = cache_key(*parts)
    return cached("speech", key, lambda: compute_features(records, config, workers, progress, augment),
                  cache_dir)
