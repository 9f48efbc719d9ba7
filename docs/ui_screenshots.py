"""Take the screenshots in docs/ui.md: the quick demo, served, in headless Chromium.

    python3 -m uv run python docs/ui_screenshots.py            # writes docs/images/ui-*.png

Needs Debian's ``chromium`` (or ``KEEL_CHROMIUM``) and the dev dependencies.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).parent / "images"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> int:
    from playwright.sync_api import sync_playwright

    import keel
    from keel.demo import REGISTERED_MODEL_NAME, run_demo
    from keel.server.app import create_app
    from keel.server.background import serve_in_background
    from keel.store import open_store

    chromium = os.environ.get("KEEL_CHROMIUM") or shutil.which("chromium")
    if chromium is None:
        print("no chromium on PATH (apt-get install chromium)", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="keel-shots-"))
    os.chdir(work)
    result = run_demo(str(work / "keel.db"), quick=False, verify=False)
    keel.set_tracking_uri(None)
    assert result.registration is not None
    store = open_store(f"sqlite:///{work / 'keel.db'}")
    exp = result.experiment_id
    best = result.best_run.info.run_id
    children = [r.info.run_id for r in result.runs][:3]
    version = result.registration.version
    shots = {
        "experiments": "/",
        "runs": f"/experiments/{exp}?q=metrics.accuracy+%3E+0.9+OR+params.model"
        "+%3D+%27logistic_regression%27&sort=metrics.accuracy&cols_set=1&cols=metrics.accuracy&cols=metrics.roc_auc"
        "&cols=metrics.cv_accuracy.min&cols=params.model&cols=params.C&cols=params.n_estimators"
        "&cols=params.max_depth&hide_constant=1",
        "run-charts": f"/runs/{best}?tab=charts",
        "run-artifacts": f"/runs/{best}?tab=artifacts&path=confusion_matrix.png",
        "compare": "/compare?" + "&".join(f"runs={r}" for r in children),
        "model-version": f"/models/{REGISTERED_MODEL_NAME}/versions/{version}",
        "data": "/data",
    }
    OUT.mkdir(exist_ok=True)
    with serve_in_background(create_app(store)) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": 1360, "height": 860}, color_scheme=scheme, device_scale_factor=1
            )
            page = context.new_page()
            for name, path in shots.items():
                if scheme == "dark" and name not in ("runs", "run-charts"):
                    continue
                page.goto(url + path)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(300)  # charts draw after their data arrives
                target = OUT / f"ui-{name}{'-dark' if scheme == 'dark' else ''}.png"
                page.screenshot(path=str(target))
                print(target)
            context.close()
        browser.close()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
