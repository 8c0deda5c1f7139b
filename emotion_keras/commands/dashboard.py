"""``emotion-keras dashboard``: start the Streamlit app (``apps/dashboard.py``) on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

def app_path() -> Path:
    """``apps/dashboard.py`` of this checkout, else the copy an installed wheel carries."""
    from emotion_keras.models.store import installed_data

    return (installed_data("apps") or Path(__file__).resolve().parents[2] / "apps") / "dashboard.py"


APP = app_path()


def register(sub) -> None:
    p = sub.add_parser("dashboard", help="browse results and try the models in a local web app",
                       description="Start the Streamlit dashboard: results of trained and tuned models, "
                                   "and face, speech and video analysis of uploads.")
    p.add_argument("--port", type=int, default=8501, help="port to serve on (default: 8501)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--models", metavar="DIR",
                   help="folder holding face/, speech/ and fusion/ models (default: saved_models, "
                        "or $EMOTION_KERAS_MODELS)")
    p.add_argument("--results", metavar="DIR", action="append", default=[],
                   help="another folder to search for runs and tuning results (repeatable)")
    p.add_argument("--headless", action="store_true", help="do not open a browser")
    p.set_defaults(func=run)


def command(args, app: Path = APP) -> tuple[list[str], dict[str, str]]:
    """The ``streamlit run`` command line and environment for ``args`` (separate, to be testable)."""
    from emotion_keras.errors import InputError

    if not app.is_file():
        raise FileNotFoundError(f"{app}: the dashboard app is missing (a wheel installs it under "
                                "<prefix>/share/emotion-keras/apps; reinstall the package)")
    if not 0 < args.port < 65536:
        raise InputError("--port", f"{args.port} is not a valid port number")
    env = dict(os.environ)
    if args.models:
        models = Path(args.models).expanduser().resolve()
        if not models.is_dir():
            raise InputError(args.models, "--models must be an existing folder")
        env["EMOTION_KERAS_MODELS"] = str(models)
    if args.results:
        extra = [str(Path(r).expanduser().resolve()) for r in args.results]
        env["EMOTION_KERAS_RESULTS"] = os.pathsep.join(
            [*extra, *filter(None, [env.get("EMOTION_KERAS_RESULTS")])])
    env.setdefault("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "tensorflow"))
    cmd = [sys.executable, "-m", "streamlit", "run", str(app),
           "--server.port", str(args.port), "--server.address", args.host,
           "--browser.gatherUsageStats", "false"]
    if args.headless:
        cmd += ["--server.headless", "true"]
    return cmd, env


def run(args) -> int:
    cmd, env = command(args)
    print(f"emotion-keras dashboard on http://{args.host}:{args.port} "
          f"(backend {env['KERAS_BACKEND']}; app {APP}; Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        return subprocess.call(cmd, env=env, cwd=str(APP.parent.parent))
    except KeyboardInterrupt:
        return 130
