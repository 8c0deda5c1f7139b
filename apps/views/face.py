"""Face: an uploaded photo or a camera shot -> faces boxed, emotion bars per face, attention heatmaps."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

import common

PALETTE = [(230, 57, 70), (29, 53, 87), (42, 157, 143), (244, 162, 97), (131, 56, 236), (255, 190, 11)]


def analyze(path, progress) -> dict:
    """Detect, classify and explain every face in the image at ``path`` (a temporary copy)."""
    from emotion_keras.preprocess.images import load_image

    progress(0.05, "Reading the image…")
    rgb = load_image(path)
    progress(0.15, "Loading the face model…")
    rec = common.recognizer("face")
    progress(0.35, "Finding faces and their emotions…")
    note = None
    try:
        faces = rec.predict(rgb, heatmaps=True)
    except Exception as e:  # the heatmap is a bonus: keep the emotions if explaining fails
        if type(e).__name__ == "InputError":
            raise
        note = f"Attention heatmaps unavailable ({type(e).__name__}: {e})."
        faces = rec.predict(rgb)
    progress(0.95, "Drawing…")
    return {"image": rgb, "faces": faces, "classes": list(rec.classes), "note": note,
            "model": rec.card.get("name")}


def draw_boxes(rgb: np.ndarray, faces: list[dict], side: int = 720) -> np.ndarray:
    """The photo scaled so its longer side is about ``side`` px, each face boxed and labelled."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.fromarray(rgb)
    k = side / max(img.size)
    if k < 1 or k > 1.5:  # shrink big photos, enlarge tiny crops (48 px) so boxes and text are legible
        img = img.resize((max(1, round(img.width * k)), max(1, round(img.height * k))),
                         Image.LANCZOS if k < 1 else Image.NEAREST)
    else:
        k = 1.0
    draw = ImageDraw.Draw(img)
    width = max(2, round(max(img.size) / 250))
    font = ImageFont.load_default(size=max(12, round(max(img.size) / 36)))
    for i, f in enumerate(faces):
        x, y, w, h = (v * k for v in f["box"])
        color = PALETTE[i % len(PALETTE)]
        draw.rectangle([x, y, x + w, y + h], outline=color, width=width)
        label = f"{i + 1}: {f['emotion']}"
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        ty = y - (bottom - top) - 8 if y - (bottom - top) - 8 >= 0 else y + width
        draw.rectangle([x, ty, x + right - left + 8, ty + bottom - top + 8], fill=color)
        draw.text((x + 4 - left, ty + 4 - top), label, fill=(255, 255, 255), font=font)
    return np.asarray(img)


def overlay(crop: np.ndarray, heat: np.ndarray, side: int = 192) -> np.ndarray:
    """The heatmap blended over the face crop the model saw, enlarged (crops are 48 px)."""
    from PIL import Image

    from emotion_keras.explain import overlay as blend

    out = blend(crop, heat)
    return np.asarray(Image.fromarray(out).resize((side, side), Image.NEAREST))


st.title("Face")
st.write("Upload a photo or take one with the camera: every face is boxed, its emotion probabilities "
         "shown as bars, and the attention heatmap shows where the model looked.")
source = st.radio("Source", ["Upload an image", "Camera"], horizontal=True, key="face_source")
if source == "Camera":
    shot = st.camera_input("Take a picture", key="face_camera")
    got = common.read_upload(shot, {"jpg": ".jpg", "jpeg": ".jpg", "png": ".png"}, "image") if shot else None
else:
    up = common.uploader("Image", common.IMAGE_TYPES, "image", key="face_upload")
    got = common.read_upload(up, common.IMAGE_TYPES, "image")

if got is not None and common.load_or_explain("face") is not None:
    data, suffix = got
    result = common.process_once("face", data, suffix, analyze, "Analysing the image…")
    if result is not None:
        faces = result["faces"]
        if not faces:
            st.warning("No face found in this image.")
            st.image(result["image"], caption="upload", width="content")
        else:
            st.success(f"{len(faces)} face{'s' if len(faces) != 1 else ''} found "
                       f"(model: {result['model']}).")
            st.image(draw_boxes(result["image"], faces), caption="faces found")
            if result["note"]:
                st.caption(result["note"])
            for i, f in enumerate(faces):
                st.markdown(f"#### Face {i + 1}: **{f['emotion']}** "
                            f"({f['probabilities'][f['emotion']]:.0%})")
                cols = st.columns([2, 1])
                probs = pd.DataFrame(common.probs_long(f["probabilities"]))
                cols[0].altair_chart(alt.Chart(probs).mark_bar().encode(
                    x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1])),
                    y=alt.Y("emotion:N", sort=result["classes"]),
                    color=alt.condition(alt.datum.emotion == f["emotion"], alt.value("#e63946"),
                                        alt.value("#8d99ae")),
                    tooltip=["emotion", alt.Tooltip("probability", format=".3f")]).properties(height=180),
                    width="stretch")
                if f.get("heatmap") is not None and f.get("crop") is not None:
                    cols[1].image(overlay(f["crop"], f["heatmap"]), caption="attention heatmap")
