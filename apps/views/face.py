"""Face: an uploaded photo or a camera shot -> faces boxed, emotion bars per face, attention heatmaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import common
import palette
from emotion_keras.errors import InputError


def analyze(path, progress) -> dict:
    """Detect, classify and explain every face in the image at ``path`` (a temporary copy)."""
    from emotion_keras.preprocess.images import load_image

    progress(0.05, "Reading the image…")
    rgb = load_image(path)
    progress(0.15, "Loading the face model…")
    rec = common.recognizer("face")
    progress(0.35, "Finding faces and their emotions…")
    note = None
    with common.lock("face"):
        try:
            faces = rec.predict(rgb, heatmaps=True)
        except Exception as e:  # the heatmap is a bonus: keep the emotions if explaining fails
            if isinstance(e, InputError):
                raise
            note = f"Attention heatmaps unavailable ({type(e).__name__}: {e})."
            faces = rec.predict(rgb)
    progress(0.95, "Drawing…")
    return {"image": rgb, "faces": faces, "classes": list(rec.classes), "note": note,
            "model": rec.card.get("name")}


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
        rec = common.recognizer("face")
        if rec.prior is not None and faces:  # the prior correction, re-applied to the result: no model call
            balance = st.slider("Class balance", 0.0, 1.0, float(rec.balance), 0.05, key="face_balance",
                                help="0: the decision the training corpus's class frequencies give (FER+ is "
                                     "35% neutral); 1: as if every emotion were equally frequent; the "
                                     f"model card's default is {rec.balance:g}.")
            faces = [common.rebalanced(f, rec.classes, rec.prior, rec.balance, balance) for f in faces]
        if not faces:
            st.warning("No face found in this image.")
            st.image(result["image"], caption="upload", width="content")
        else:
            st.success(f"{len(faces)} face{'s' if len(faces) != 1 else ''} found "
                       f"(model: {result['model']}).")
            st.image(common.draw_boxes(result["image"], faces), caption="faces found")
            if result["note"]:
                st.caption(result["note"])
            for i, f in enumerate(faces):
                st.markdown(f"#### Face {i + 1}: **{f['emotion']}** "
                            f"({f['probabilities'][f['emotion']]:.0%})")
                cols = st.columns([2, 1])
                probs = pd.DataFrame(common.probs_long(f["probabilities"]))
                cols[0].altair_chart(palette.bars(probs, result["classes"], top=f["emotion"]))
                if f.get("heatmap") is not None and f.get("crop") is not None:
                    cols[1].image(overlay(f["crop"], f["heatmap"]), caption="attention heatmap")
