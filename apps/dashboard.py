"""emotion-keras dashboard: ``streamlit run apps/dashboard.py`` (or ``emotion-keras dashboard``).

Results are read from the files the CLI writes; the Face, Speech and Video pages run the shipped models
(``saved_models/``, or ``EMOTION_KERAS_MODELS``) on an upload, the camera or the microphone. The Keras
backend is whatever ``KERAS_BACKEND`` says, read by Keras when the first model loads.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `common` beside this file, whatever the working directory
    sys.path.insert(0, str(HERE))

import streamlit as st  # noqa: E402

import common  # noqa: E402

st.set_page_config(page_title="emotion-keras", page_icon=":material/mood:", layout="wide")

PAGES = [
    st.Page(HERE / "views" / "results.py", title="Results", icon=":material/monitoring:", default=True),
    st.Page(HERE / "views" / "face.py", title="Face", icon=":material/mood:"),
    st.Page(HERE / "views" / "speech.py", title="Speech", icon=":material/mic:"),
    st.Page(HERE / "views" / "video.py", title="Video", icon=":material/movie:"),
]

page = st.navigation(PAGES)
common.sidebar()
page.run()
