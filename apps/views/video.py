"""Video: an uploaded clip -> a timeline of face, speech and fused emotions, and the frame at a chosen
time."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

import common
import palette

MAX_FRAMES = 240  # thumbnails kept for the time slider
THUMB_SIDE = 480
ANALYSIS_SIDE = 1280  # frames are analysed at most this large; face boxes are in those pixels


def analyze(path, progress) -> dict:
    """Run the multimodal recogniser on the temporary copy at ``path`` and keep thumbnails of its
    frames, so the time slider works after the file is gone."""
    from emotion_keras.preprocess.video import iter_frames, probe

    progress(0.02, "Reading the video…")
    info = probe(path)
    progress(0.05, "Loading the face, speech and fusion models…")
    rec = common.recognizer("video")
    length = f" ({info.duration:.0f} s of media)" if info.duration else ""
    progress(0.1, f"Analysing faces and voice window by window{length}…")
    with common.lock("video"):
        result = rec.analyze(path, max_side=ANALYSIS_SIDE)
    frames: list[tuple[float, np.ndarray]] = []
    if info.has_video:
        progress(0.87, "Keeping frames for the time slider…")
        duration = info.duration or 0.0
        fps = min(4.0, MAX_FRAMES / duration) if duration > 0 else 1.0
        warnings: list[str] = []
        for f in iter_frames(path, fps=fps, max_side=THUMB_SIDE, warnings=warnings):
            frames.append((f.time, f.image))
            if len(frames) >= MAX_FRAMES:
                break
    return {"result": result, "info": info.to_dict(), "frames": frames}


def _window_at(windows: list[dict], t: float) -> dict | None:
    """The window whose centre is nearest ``t`` (windows overlap, so several contain it)."""
    return min(windows, key=lambda w: abs((w.get("start", 0) + w.get("end", w.get("start", 0))) / 2 - t),
               default=None)


st.title("Video")
st.write("Upload a clip: faces and voice are analysed window by window and fused; the timeline shows "
         "the emotions of each modality over time, and the slider shows the frame at any moment.")
up = common.uploader("Video", common.VIDEO_TYPES, "video", key="video_upload")
got = common.read_upload(up, common.VIDEO_TYPES, "video")

if got is not None and common.load_or_explain("video") is not None:
    data, suffix = got
    res = common.process_once("video", data, suffix, analyze, "Analysing the video…")
    if res is not None:
        result, info, frames = res["result"], res["info"], res["frames"]
        rows = common.timeline_rows(result)
        overall = result.get("emotion") if isinstance(result, dict) else None
        for w in (result.get("warnings") or []) if isinstance(result, dict) else []:
            st.warning(str(w))
        duration = info.get("duration") or (max((r["end"] for r in rows), default=0.0))
        st.success(f"{duration:.1f} s analysed"
                   + (f"; overall emotion: **{overall}**" if overall else "")
                   + f" ({'video' if info.get('has_video') else 'no video'}, "
                   f"{'audio' if info.get('has_audio') else 'no audio'}).")
        if not rows:
            st.warning("The recogniser returned no timeline windows for this clip.")
        t_max = float(max(duration, max((r["end"] for r in rows), default=0.0), 0.1))
        t = st.slider("Time (seconds)", 0.0, t_max, 0.0, step=max(0.1, round(t_max / 200, 1)),
                      key="video_time")
        if rows:
            df = pd.DataFrame(rows)
            df["centre"] = (df["time"] + df["end"]) / 2  # a window's emotion belongs to its middle
            classes = palette.ordered(df["emotion"])
            modalities = [m for m in common.MODALITIES if m in set(df["modality"])]
            lines = alt.Chart(df).mark_line(interpolate="monotone", point=len(set(df["time"])) < 30).encode(
                x=alt.X("centre:Q", title="seconds (window centre)", scale=alt.Scale(domain=[0, t_max])),
                y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1])),
                color=palette.encoding(classes),
                tooltip=["modality", alt.Tooltip("time", title="start"), "end", "emotion",
                         alt.Tooltip("probability", format=".3f")])
            rule = alt.Chart(df).mark_rule(color="black", strokeDash=[4, 3]).encode(
                x=alt.datum(t))
            chart = alt.layer(lines, rule, data=df).properties(height=130).facet(
                row=alt.Row("modality:N", sort=modalities, title=None))
            st.altair_chart(chart)
        left, right = st.columns([3, 2])
        windows = result.get("windows") or [] if isinstance(result, dict) else []
        here = _window_at(windows, t)
        if frames:
            times = np.array([ft for ft, _ in frames])
            i = int(np.abs(times - t).argmin())
            image = frames[i][1]
            face = (here or {}).get("face") or {}
            if face.get("box") and info.get("width"):
                # boxes are in analysis pixels (frames scaled to ANALYSIS_SIDE); thumbnails are smaller
                analysed_w = info["width"] * min(1.0, ANALYSIS_SIDE / max(info["width"], info["height"], 1))
                fused = (here.get("fused") or {}).get("emotion")
                label = f"face: {face.get('emotion')}" + (f" · fused: {fused}" if fused else "")
                image = common.draw_boxes(image, [{"box": face["box"], "emotion": face.get("emotion"),
                                                   "label": label, "color": fused or face.get("emotion")}],
                                          side=max(image.shape[:2]), scale=analysed_w / image.shape[1])
            left.image(image, caption=f"frame at {frames[i][0]:.2f} s", width="stretch")
        else:
            left.info("This file has no video stream: the timeline comes from the audio alone.")
        if rows and here is not None:
            df = pd.DataFrame(rows)
            now = df[df["time"] == float(here["start"])]
            right.markdown(f"**Window {here['start']:.1f}–{here.get('end', here['start']):.1f} s** "
                           f"({', '.join(here.get('modalities') or []) or 'nothing found'})")
            if not now.empty:
                top = now.loc[now.groupby("modality")["probability"].idxmax()]
                right.dataframe(top[["modality", "emotion", "probability"]], hide_index=True)
                right.altair_chart(palette.bars(now, classes, row="modality", row_sort=modalities))
