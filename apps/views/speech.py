"""Speech: an uploaded recording or the microphone -> waveform and spectrogram, per-window and pooled
emotions."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

import common
import palette

SR = 16000
SHOW_SECONDS = 300  # the plot shows at most the first five minutes; the analysis covers everything


def analyze(path, progress) -> dict:
    """Decode for display, then run the speech recogniser on the temporary copy at ``path``."""
    from emotion_keras.preprocess.audio import load_audio

    progress(0.05, "Decoding the audio…")
    y = load_audio(path, SR)
    progress(0.2, "Loading the speech model…")
    rec = common.recognizer("speech")
    progress(0.35, "Recognising emotions window by window…")
    with common.lock("speech"):
        out = rec.predict_file(path)
    progress(0.9, "Drawing…")
    shown = y[: SHOW_SECONDS * SR]
    return {"waveform": shown, "duration": len(y) / SR, "result": out,
            "classes": list(getattr(rec, "classes", []) or out.get("probabilities", {})),
            "model": (getattr(rec, "card", None) or {}).get("name"), "figure": _figure(shown)}


def _figure(y: np.ndarray) -> bytes:
    """Waveform over spectrogram, as PNG bytes (kept in the session, redrawn never)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = np.arange(len(y)) / SR
    step = max(1, len(y) // 4000)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 4.2), sharex=True, dpi=100,
                                   gridspec_kw={"height_ratios": [1, 1.6]})
    if step > 1:  # min/max envelope, so peaks survive the thinning
        n = len(y) // step * step
        blocks = y[:n].reshape(-1, step)
        tt = t[:n:step]
        ax1.fill_between(tt, blocks.min(1), blocks.max(1), color="#1d3557", linewidth=0)
    else:
        ax1.plot(t, y, color="#1d3557", linewidth=0.6)
    ax1.set_ylabel("amplitude")
    ax1.set_ylim(-1.05, 1.05)
    if len(y) >= 512:
        ax2.specgram(y + 1e-9, NFFT=512, Fs=SR, noverlap=352, cmap="magma", scale="dB")
    ax2.set_ylabel("Hz")
    ax2.set_xlabel("seconds")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


st.title("Speech")
st.write("Upload a recording or use the microphone: the waveform and spectrogram, the emotions of "
         "each analysis window, and the pooled emotion of the whole clip.")
source = st.radio("Source", ["Upload audio", "Microphone"], horizontal=True, key="speech_source")
if source == "Microphone":
    rec_in = st.audio_input("Record a voice clip", key="speech_mic")
    got = common.read_upload(rec_in, {"wav": ".wav"}, "audio") if rec_in else None
else:
    up = common.uploader("Audio", common.AUDIO_TYPES, "audio", key="speech_upload")
    got = common.read_upload(up, common.AUDIO_TYPES, "audio")

if got is not None and common.load_or_explain("speech") is not None:
    data, suffix = got
    res = common.process_once("speech", data, suffix, analyze, "Analysing the recording…")
    if res is not None:
        out = res["result"]
        pooled = out.get("probabilities") or {}
        emotion = out.get("emotion") or (max(pooled, key=pooled.get) if pooled else "?")
        st.success(f"Pooled emotion: **{emotion}**"
                   + (f" ({pooled[emotion]:.0%})" if emotion in pooled else "")
                   + f" over {res['duration']:.1f} s (model: {res['model']}).")
        st.audio(data)
        st.image(res["figure"], caption="waveform and spectrogram"
                 + (f" (first {SHOW_SECONDS} s)" if res["duration"] > SHOW_SECONDS else ""), width="stretch")
        classes = res["classes"] or list(pooled)
        left, right = st.columns([2, 1])
        windows = out.get("windows") or []
        rows = [{"start": w.get("start"), "end": w.get("end"), "emotion": k, "probability": v}
                for w in windows for k, v in (w.get("probabilities") or {}).items()]
        if rows:
            wdf = pd.DataFrame(rows)
            left.markdown(f"**Per window** ({len(windows)} windows)")
            left.altair_chart(alt.Chart(wdf).mark_area(interpolate="step-after").encode(
                x=alt.X("start:Q", title="seconds"),
                y=alt.Y("probability:Q", stack="normalize", title="probability"),
                color=palette.encoding(classes),
                tooltip=["start", "end", "emotion", alt.Tooltip("probability", format=".3f")]),
                width="stretch")
        if pooled:
            right.markdown("**Pooled**")
            right.altair_chart(palette.bars(pd.DataFrame(common.probs_long(pooled)), classes, top=emotion))
        if windows:
            with st.expander("Window table"):
                st.dataframe(pd.DataFrame([{"start": w.get("start"), "end": w.get("end"),
                                            "emotion": max(w["probabilities"], key=w["probabilities"].get)
                                            if w.get("probabilities") else None,
                                            **(w.get("probabilities") or {})} for w in windows]),
                             hide_index=True)
