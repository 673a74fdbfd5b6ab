"""The leaderboard web site, loaded in a real headless browser (Debian's chromium) from `dab serve`."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from benchmark.executors import InProcess
from benchmark.harness import evaluate
from benchmark.registry import load_detector
from leaderboard.server import make_server
from leaderboard.site import write_site
from leaderboard.tables import fmt
from leaderboard.store import ResultStore
from model_organisms.catalog import Catalog



@pytest.fixture(scope="module")
def served(micro_catalog: Catalog, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("site")
    store = ResultStore(root / "results.sqlite")
    for name in ("random", "behavioural"):
        evaluate(InProcess(load_detector(name), micro_catalog), micro_catalog, "dev", store=store)
    records = store.latest_runs()
    write_site(records, root / "site", [micro_catalog])
    server = make_server(root / "site", store, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", records, root
    server.shutdown()


def test_the_json_api_serves_rows_and_records(served) -> None:
    url, records, _ = served
    rows = json.load(urllib.request.urlopen(f"{url}/api/leaderboard"))
    assert sorted((r["detector"], r["split"]) for r in rows) == [("behavioural", "dev"), ("random", "dev")]
    record = json.load(urllib.request.urlopen(f"{url}/api/runs/{records[0].run_id}"))
    assert record["run_id"] == records[0].run_id and len(record["predictions"]) == len(records[0].predictions) > 1
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(f"{url}/api/runs/nope")
    assert missing.value.code == 404


def test_the_page_loads_in_a_browser_with_the_right_rows(served, browse) -> None:
    url, records, root = served
    dom = browse("--dump-dom", f"{url}/index.html")
    assert "<h2 id=\"audit-black_box\">" in dom
    for record in records:
        row = dom[dom.index(f"runs/{record.run_id}.html"):]
        row = row[: row.index("</tr>")]
        assert record.detector.name in row and fmt(record.shown("auroc")) in row
        assert record.catalog.fingerprint[:8] in row
    run_dom = browse("--dump-dom", f"{url}/runs/{records[0].run_id}.html")
    assert "<svg" in run_dom and "audit answers" in run_dom and "Per family" in run_dom
    assert "ROC on" not in run_dom and "too few" in run_dom  # micro's one deceptive organism: no AUROC, no ROC
    dev_id = records[0].predictions[0].organism_id
    assert f"organisms/{dev_id}.html" in run_dom  # a public organism links to its card

    shot = root / "index.png"
    browse("--window-size=1200,900", f"--screenshot={shot}", f"{url}/index.html")
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 900)
    pixels = np.asarray(image).reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 50  # text, table rules and links, not a blank or error page
    assert (pixels != 255).any(axis=1).mean() > 0.02
