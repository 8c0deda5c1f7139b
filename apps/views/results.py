"""Results: every model card, comparison, evaluation, training curve and tuner trial on disk."""

from __future__ import annotations

import os
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

import common
import palette
from emotion_keras import results


@st.cache_data(ttl=15, show_spinner=False)
def _discover(roots: tuple[str, ...]) -> results.Results:
    return results.discover([Path(r) for r in roots])


st.title("Results")
default_roots = [str(p) for p in results.default_roots()]
with st.expander("Folders searched", expanded=False):
    text = st.text_area("One folder per line (model store, runs, tuning directories)",
                        "\n".join(default_roots), key="results_roots", height=130)
    if st.button("Rescan"):
        _discover.clear()
roots = tuple(os.path.expanduser(line.strip()) for line in text.splitlines() if line.strip())
res = _discover(roots)

for problem in res.problems:
    st.warning(problem)
if res.empty:
    st.info("No results found yet. Train a model (`emotion-keras face train ...`), compare models "
            "(`emotion-keras face compare ...`) or tune (`emotion-keras tune ...`); their files appear "
            "here. Folders searched: " + ", ".join(f"`{r}`" for r in roots))
    st.stop()

tabs = st.tabs(["Models", "Comparisons", "Tuning", "Training curves", "Confusion & recall",
                "Backend & timing", "Calibration & robustness"])

# --- models: one row per model and split, sortable by clicking a column -----------------------------
models = pd.DataFrame(results.models_table(res))
with tabs[0]:
    st.subheader("Models")
    st.caption("Every model card (saved_models/ and runs/) and evaluation report, one row per split. "
               "Click a column header to sort.")
    if models.empty:
        st.info("No model cards or evaluation reports found.")
    else:
        lead = [c for c in ("task", "name", "source", "split", "uar", "accuracy", "macro_f1", "n",
                            "backend", "parameters", "size_MB", "protocol") if c in models]
        st.dataframe(models[lead + [c for c in models if c not in lead]], hide_index=True,
                     width="stretch")
        for card in res.cards:
            with st.expander(f"Card: {card.label}"):
                st.json(card.data, expanded=False)

# --- comparison.json tables -------------------------------------------------------------------------
with tabs[1]:
    st.subheader("Comparisons")
    if not res.comparisons:
        st.info("No comparison.json found (written by `emotion-keras face compare` and friends).")
    for path, meta, rows in res.comparisons:
        st.markdown(f"**{path.parent.name}** — `{path}`")
        if meta:
            st.caption(" · ".join(f"{k}: {v}" for k, v in meta.items()))
        if rows:
            df = pd.DataFrame(rows)
            lead = [c for c in ("name", "backbone", "architecture", "uar", "accuracy", "macro_f1", "n",
                                "parameters", "train_seconds", "backend") if c in df]
            st.dataframe(df[lead + [c for c in df if c not in lead]], hide_index=True, width="stretch")
        else:
            st.warning(f"{path}: no rows recognised in this comparison file.")

# --- tuner trials: table and parallel coordinates ---------------------------------------------------
with tabs[2]:
    st.subheader("Tuning")
    if not res.tuning:
        st.info("No KerasTuner trials found (trial_*/trial.json under a tuning directory).")
    else:
        labels = [str(p.path) for p in res.tuning]
        choice = st.selectbox("Tuning project", labels, key="tuning_project")
        project = res.tuning[labels.index(choice)]
        best = project.best()
        objective = project.objective or "score"
        summary = project.summary()
        if summary:
            st.caption(" · ".join(f"{k}: {v}" for k, v in summary.items()))
        cols = st.columns(3)
        cols[0].metric("Trials", len(project.trials))
        cols[1].metric(f"Best {objective}", f"{best['score']:.4f}" if best else "—")
        cols[2].metric("Best trial", best["trial_id"] if best else "—")
        table = pd.DataFrame(results.trials_table(project))
        st.dataframe(table, hide_index=True, width="stretch")
        scored = [t for t in project.trials if t["score"] is not None]
        if len(scored) >= 2 and any(t["hyperparameters"] for t in scored):
            pc = pd.DataFrame(common.parallel_coordinates(scored))
            order = list(dict.fromkeys(pc["axis"]))
            lines = alt.Chart(pc).mark_line(opacity=0.7).encode(
                x=alt.X("axis:N", sort=order, title=None, axis=alt.Axis(labelAngle=-30)),
                y=alt.Y("position:Q", title="scaled value", scale=alt.Scale(domain=[0, 1])),
                color=alt.Color("score:Q", scale=alt.Scale(scheme="viridis"), title=objective),
                detail="trial:N",
                tooltip=["trial:N", "axis:N", "value:N", "score:Q"])
            points = lines.mark_circle(size=40)
            st.markdown(f"**Hyperparameters against {objective}** (parallel coordinates; each line is a "
                        "trial, numbers scaled to 0-1 per axis, categories in sorted order)")
            st.altair_chart(lines + points, width="stretch")
        elif scored:
            st.caption("A plot of hyperparameters against score needs at least two scored trials.")

# --- training curves --------------------------------------------------------------------------------
with tabs[3]:
    st.subheader("Training curves")
    curves = {f"history.csv: {p.parent}": rows for p, rows in res.histories}
    curves.update({f"card: {c.label}": results.card_history(c) for c in res.cards if results.card_history(c)})
    curves.update({f"trial {t['trial_id']}: {p.path}": t["history"] for p in res.tuning for t in p.trials
                   if t.get("history")})
    if not curves:
        st.info("No training curves found (history.csv in run folders, `history` on model cards).")
    else:
        name = st.selectbox("Run", list(curves), key="curve_run")
        df = pd.DataFrame(curves[name])
        if "epoch" not in df:
            df["epoch"] = range(len(df))
        metric_cols = [c for c in df if c != "epoch"]
        default = [c for c in metric_cols if c in ("loss", "val_loss", "accuracy", "val_accuracy",
                                                    "val_uar")] or metric_cols[:4]
        chosen = st.multiselect("Curves", metric_cols, default=default, key="curve_metrics")
        if chosen:
            long = df.melt(id_vars="epoch", value_vars=chosen, var_name="curve", value_name="value")
            st.altair_chart(alt.Chart(long).mark_line(point=True).encode(
                x="epoch:Q", y="value:Q", color="curve:N", tooltip=["epoch", "curve", "value"]),
                width="stretch")

# --- confusion matrices and per-class recall --------------------------------------------------------
with tabs[4]:
    st.subheader("Confusion matrices and per-class recall")
    cms = results.confusions(res)
    if not cms:
        st.info("No confusion matrices found (model card metrics or evaluation.json).")
    else:
        labels = [c["label"] for c in cms]
        pick = cms[labels.index(st.selectbox("Model and split", labels, key="cm_pick"))]
        if pick.get("protocol"):
            st.caption(f"Protocol: {pick['protocol']}")
        classes, matrix = pick["classes"], pick["matrix"]
        cells = []
        for i, true in enumerate(classes):
            total = sum(matrix[i]) or 1
            for j, pred in enumerate(classes):
                cells.append({"true": true, "predicted": pred, "count": matrix[i][j],
                              "rate": matrix[i][j] / total})
        cm_df = pd.DataFrame(cells)
        base = alt.Chart(cm_df).encode(x=alt.X("predicted:N", sort=classes),
                                       y=alt.Y("true:N", sort=classes))
        heat = base.mark_rect().encode(color=alt.Color("rate:Q", scale=alt.Scale(domain=[0, 1]),
                                                       title="row share"),
                                       tooltip=["true", "predicted", "count", alt.Tooltip("rate", format=".2f")])
        text = base.mark_text(fontSize=11).encode(
            text="count:Q", color=alt.condition("datum.rate > 0.5", alt.value("white"), alt.value("black")))
        left, right = st.columns(2)
        left.altair_chart((heat + text).properties(height=40 * len(classes) + 40), width="stretch")
        recall = pd.DataFrame([{"emotion": k, "recall": v} for k, v in pick["per_class_recall"].items()])
        if not recall.empty:
            right.altair_chart(alt.Chart(recall).mark_bar().encode(
                x=alt.X("recall:Q", scale=alt.Scale(domain=[0, 1])),
                y=alt.Y("emotion:N", sort=classes, title=None, axis=alt.Axis(labelOverlap=False, labelLimit=0)),
                color=palette.encoding(classes, legend=False),
                tooltip=["emotion", alt.Tooltip("recall", format=".3f")]).properties(
                    height=alt.Step(palette.ROW_PX)), width="stretch")

# --- backend and timing -----------------------------------------------------------------------------
with tabs[5]:
    st.subheader("Backend and timing")
    st.markdown(f"This dashboard runs on Keras backend **`{common.backend_name()}`**.")
    if not models.empty:
        timing_cols = [c for c in models if any(w in c.lower() for w in results.TIMING_WORDS)]
        keep = [c for c in ("task", "name", "source", "split", "backend", "date", "parameters", "size_MB")
                if c in models] + timing_cols
        st.dataframe(models[keep].drop_duplicates(subset=[c for c in ("task", "name", "source")
                                                          if c in models]),
                     hide_index=True, width="stretch")
    versions = [{"model": c.label, **c.data.get("versions", {})} for c in res.cards if c.data.get("versions")]
    if versions:
        st.markdown("**Library versions each model was trained with**")
        st.dataframe(pd.DataFrame(versions), hide_index=True, width="stretch")

# --- calibration (ECE, reliability diagrams) and robustness tables ----------------------------------
with tabs[6]:
    st.subheader("Calibration")
    st.caption("Temperature scaling fitted on each model's validation split (`emotion-keras calibrate`); "
               "ECE: expected calibration error over 15 confidence bins, of the probabilities the "
               "recognisers report. The noise floor is the ECE a perfectly calibrated model would still "
               "show on that many samples.")
    cals = results.calibrations(res)
    if not cals:
        st.info("No calibration yet: run `emotion-keras calibrate --model DIR`, or evaluate a model.")
    else:
        st.dataframe(pd.DataFrame([{k: v for k, v in c.items() if k != "figure"} for c in cals]),
                     hide_index=True, width="stretch")
        figures = [c for c in cals if c.get("figure")]
        if figures:
            labels = [c["label"] for c in figures]
            pick = figures[labels.index(st.selectbox("Reliability diagram", labels, key="rel_pick"))]
            st.image(pick["figure"], caption=f"reliability diagram: {pick['label']}")
    st.subheader("Robustness")
    tables = results.robustness(res)
    if not tables:
        st.info("No robustness table yet: `emotion-keras face evaluate --perturb occlusion,blur,noise,jpeg,"
                "rotate,downscale ...` or `emotion-keras speech evaluate --perturb noise,reverb,codec,gain ...`.")
    for t in tables:
        st.markdown(f"**{t['label']}**")
        if t.get("protocol"):
            st.caption(f"Protocol: {t['protocol']}")
        st.dataframe(pd.DataFrame(t["rows"]), hide_index=True, width="stretch")
