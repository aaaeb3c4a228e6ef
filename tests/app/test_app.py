"""The web app through Starlette's TestClient (no browser, no network): page and static files, uploads and
their limits, recommendations and thumbnails by id only, jobs with one and several references, results
that keep the input's size and L, and per-job isolation. The real-browser test is tests/test_app_browser.py."""

from __future__ import annotations

import io
import shutil
import time

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("starlette", reason="the app extra (starlette) is not installed: pip install -e '.[app]'")
pytest.importorskip("httpx", reason="starlette's TestClient needs httpx (in the test extra)")

from starlette.testclient import TestClient  # noqa: E402

from exemplar_color import Colorizer  # noqa: E402
from exemplar_color.app import create_app  # noqa: E402
from exemplar_color.color import rgb_to_lab  # noqa: E402
from exemplar_color.io import pixel_limit  # noqa: E402

from conftest import small_gallery

LEVELS = ["relu3_1", "relu2_1", "relu1_1"]
PAGE = {"X-Exemplar-Color": "1"}  # what the app's own page sends with every request


@pytest.fixture(scope="module")
def gallery_index(tmp_path_factory, tv_weights, data_dir):
    root = tmp_path_factory.mktemp("app")
    small_gallery(sorted((data_dir / "imagenet-sample").glob("*.JPEG"))[:6], root / "gallery", root / "g.index",
                  tv_weights).close()
    return root / "g.index"


def make_app(tv_weights, index, **kw):
    return create_app(lambda: Colorizer(device="cpu", vgg_weights=tv_weights, vgg_variant="torchvision", levels=LEVELS,
                                        size=64, model="analogy", index=index), index=index, **kw)


@pytest.fixture(scope="module")
def client(tv_weights, gallery_index):
    with TestClient(make_app(tv_weights, gallery_index, max_upload_bytes=2_000_000),
                    base_url="http://127.0.0.1", headers=PAGE) as c:
        yield c


def gray_png(data_dir, name="kodim05.png", size=(200, 136)) -> bytes:
    buf = io.BytesIO()
    Image.open(data_dir / "kodak" / name).convert("L").resize(size).save(buf, "PNG")
    return buf.getvalue()


def upload(client, data: bytes, role="target", name="photo.png"):
    return client.post(f"/api/upload?role={role}", content=data, headers={"X-Filename": name})


def wait(client, job_id: str, timeout=300.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "error"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")


def lightness(img: Image.Image) -> np.ndarray:
    arr = torch.from_numpy(np.asarray(img.convert("RGB"), np.float32) / 255).permute(2, 0, 1)[None]
    return rgb_to_lab(arr)[0, 0].numpy()


def test_page_and_only_its_own_files(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'src="/static/app.js"' in page.text and "http" not in page.text.replace("http-equiv", "")
    for name in ("app.js", "app.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and "//cdn" not in r.text and "https://" not in r.text
    for bad in ("/static/../setup.cfg", "/static/%2e%2e%2fsetup.cfg", "/static/..%2f..%2fsetup.cfg",
                "/static/jobs.py", "/api/gallery/..%2f..%2fsetup.cfg/thumb", "/setup.cfg"):
        r = client.get(bad)
        assert r.status_code == 404 and "[metadata]" not in r.text, bad
    assert client.get("/api/info").json()["index"] is True


def test_requests_for_other_hosts_are_refused(client):
    """DNS rebinding guard: a page of another site resolved to 127.0.0.1 gets nothing."""
    assert client.get("/api/info", headers={"Host": "evil.example"}).status_code == 400


def test_recommend_thumbnails_and_a_job(client, data_dir):
    data = gray_png(data_dir)
    up = upload(client, data).json()
    assert up["width"] == 200 and up["height"] == 136 and not up["colour"]
    recs = client.post(f"/api/recommend/{up['id']}").json()["recommendations"]
    assert len(recs) == 6 and all(isinstance(r["id"], int) for r in recs)
    thumb = client.get(f"/api/gallery/{recs[0]['id']}/thumb")
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).format == "JPEG"
    assert client.get("/api/gallery/999/thumb").status_code == 404
    assert client.get("/api/gallery/-1/thumb").status_code == 404
    job = client.post("/api/jobs", json={"target": up["id"], "references": [{"gallery": recs[0]["id"]}]})
    assert job.status_code == 202
    done = wait(client, job.json()["id"])
    assert done["state"] == "done" and done["progress"] == 1.0, done
    png = client.get(f"/api/jobs/{done['id']}/image.png")
    assert png.headers["content-type"] == "image/png" and "attachment" in png.headers["content-disposition"]
    out = Image.open(io.BytesIO(png.content))
    assert out.format == "PNG" and out.size == (200, 136)
    l_in, l_out = lightness(Image.open(io.BytesIO(data))), lightness(out)
    assert np.abs(l_in - l_out).mean() < 0.5
    assert Image.open(io.BytesIO(client.get(f"/api/jobs/{done['id']}/confidence.png").content)).mode == "L"


def test_several_references_and_own_upload(client, data_dir):
    target = upload(client, gray_png(data_dir, "kodim23.png", (192, 128))).json()
    own = io.BytesIO()
    Image.open(data_dir / "kodak" / "kodim23.png").resize((160, 108)).save(own, "JPEG")
    ref = upload(client, own.getvalue(), role="reference", name="parrots.jpg").json()
    recs = client.post(f"/api/recommend/{target['id']}").json()["recommendations"]
    job = client.post("/api/jobs", json={"target": target["id"],
                                         "references": [{"upload": ref["id"]}, {"gallery": recs[0]["id"]}]}).json()
    done = wait(client, job["id"])
    assert done["state"] == "done" and done["references"][0] == "parrots.jpg", done
    labels = Image.open(io.BytesIO(client.get(f"/api/jobs/{done['id']}/labels.png").content))
    assert labels.mode == "P" and set(np.unique(np.asarray(labels))) <= {0, 1}
    assert np.mean(np.asarray(labels) == 0) > 0.5  # the photo's own colour version colours most of it


def test_bad_uploads_are_clear_and_the_app_keeps_going(client, data_dir, tmp_path):
    r = upload(client, b"this is not an image at all", name="notes.txt")
    assert r.status_code == 400 and "notes.txt" in r.json()["error"] and "not an image" in r.json()["error"]
    truncated = gray_png(data_dir)[:400]
    r = upload(client, truncated, name="broken.png")
    assert r.status_code == 400 and "corrupt" in r.json()["error"], r.json()
    r = upload(client, b"\0" * 2_000_001, name="huge.png")
    assert r.status_code == 413 and "limit" in r.json()["error"]
    assert upload(client, b"", name="empty.png").status_code == 400
    with pixel_limit(10_000):  # the CLI's --max-pixels, applied from the header
        r = upload(client, gray_png(data_dir), name="big.png")
    assert r.status_code == 400 and "over the limit" in r.json()["error"]
    gray_ref = upload(client, gray_png(data_dir), role="reference", name="gray.png")
    assert gray_ref.status_code == 400 and "grayscale" in gray_ref.json()["error"]
    assert client.post("/api/jobs", json={"target": "nope", "references": [{"gallery": 0}]}).status_code == 404
    assert client.post("/api/jobs", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    good = upload(client, gray_png(data_dir))
    assert good.status_code == 200
    assert client.post("/api/jobs", json={"target": good.json()["id"], "references": []}).status_code == 400
    assert client.get("/api/jobs/unknown").status_code == 404


def test_jobs_do_not_mix(client, data_dir):
    """Two jobs at once (two tabs): each id returns its own target's result."""
    a = upload(client, gray_png(data_dir, "kodim05.png", (160, 112))).json()
    b = upload(client, gray_png(data_dir, "kodim13.png", (112, 160))).json()
    recs = client.post(f"/api/recommend/{a['id']}").json()["recommendations"]
    ja = client.post("/api/jobs", json={"target": a["id"], "references": [{"gallery": recs[0]["id"]}]}).json()
    jb = client.post("/api/jobs", json={"target": b["id"], "references": [{"gallery": recs[1]["id"]}]}).json()
    assert ja["id"] != jb["id"]
    for job, size in ((jb, (112, 160)), (ja, (160, 112))):
        done = wait(client, job["id"])
        assert done["state"] == "done"
        assert Image.open(io.BytesIO(client.get(f"/api/jobs/{job['id']}/image.png").content)).size == size


def test_app_without_index_and_cli_refusals(tv_weights, capsys):
    from exemplar_color.cli.main import main

    with TestClient(make_app(tv_weights, None), base_url="http://127.0.0.1", headers=PAGE) as c:
        assert c.get("/api/info").json()["index"] is False
        assert c.get("/api/gallery/0/thumb").status_code == 404
    with pytest.raises(SystemExit) as exit_:
        main(["app", "--index", "/nonexistent/index"])
    assert exit_.value.code == 2 and "no such gallery index" in capsys.readouterr().err


# ---------------------------------------------------------------- issue 25: a web page cannot exhaust the app
def test_other_sites_cannot_make_the_app_work(tv_weights, data_dir):
    """A page of another site POSTing text/plain (no preflight) used to be accepted; now a foreign Origin or a
    request without the page's header is refused (403) before anything is read or decoded."""
    with TestClient(make_app(tv_weights, None), base_url="http://127.0.0.1") as c:
        data = gray_png(data_dir)
        evil = c.post("/api/upload?role=target", content=data,
                      headers={"Origin": "http://evil.example", "Content-Type": "text/plain", **PAGE})
        assert evil.status_code == 403 and "another site" in evil.json()["error"]
        bare = c.post("/api/upload?role=target", content=data, headers={"Content-Type": "text/plain"})
        assert bare.status_code == 403 and "X-Exemplar-Color" in bare.json()["error"]
        assert c.post("/api/jobs", json={"target": "x", "references": [{"gallery": 0}]}).status_code == 403
        assert len(c.app.state.uploads.items) == 0
        own = c.post("/api/upload?role=target", content=data, headers={"Origin": "http://127.0.0.1", **PAGE})
        assert own.status_code == 200, own.json()
        assert c.get("/api/info").status_code == 200  # reading needs no header


def test_uploads_are_decoded_one_at_a_time_under_the_apps_own_pixel_limit(tv_weights, data_dir, monkeypatch):
    """Four uploads at once used to be decoded in four threads at once, up to the CLI's 150 MP each; now one
    at a time, and above the app's own limit (lower, set with --max-upload-pixels) refused from the header."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from exemplar_color.app import jobs as app_jobs

    inside, most = [0], [0]
    lock = threading.Lock()
    real = app_jobs.load_image

    def counting(*a, **k):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            time.sleep(0.2)
            return real(*a, **k)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(app_jobs, "load_image", counting)
    photo = (data_dir / "kodak" / "kodim05.png").read_bytes()  # 768x512 = 393,216 pixels
    with TestClient(make_app(tv_weights, None, max_upload_pixels=300_000), base_url="http://127.0.0.1",
                    headers=PAGE) as c:
        big = upload(c, photo, name="kodim05.png")
        assert big.status_code == 400 and "kodim05.png" in big.json()["error"], big.json()
        assert "over the limit of 300,000 for uploads" in big.json()["error"]
        assert "--max-upload-pixels" in big.json()["error"] and most[0] == 0  # refused from the header
        small = gray_png(data_dir, size=(400, 300))
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: upload(c, small, name=f"{i}.png"), range(4)))
        assert [a.status_code for a in answers] == [200] * 4 and most[0] == 1


def test_queued_jobs_and_their_uploads_are_never_forgotten(tv_weights, gallery_index, data_dir):
    """The 33rd job used to evict the oldest even while it was queued (status 404, yet it ran), and a queued
    job failed when its upload was evicted. Now: past the limit a new job is refused (503) while all are
    waiting; finished jobs are forgotten first; an upload a job needs stays until the job ends."""
    import threading

    gate = threading.Event()
    with TestClient(make_app(tv_weights, gallery_index, job_limit=2), base_url="http://127.0.0.1",
                    headers=PAGE) as c:
        c.app.state.worker.submit(gate.wait, 120)  # the worker is busy: the jobs below wait in the queue
        try:
            _queued_jobs_and_uploads(c, gate, data_dir)
        finally:
            gate.set()


def _queued_jobs_and_uploads(c, gate, data_dir) -> None:
    c.app.state.uploads.items.limit = 2
    target = upload(c, gray_png(data_dir, "kodim05.png", (160, 112))).json()
    own = io.BytesIO()
    Image.open(data_dir / "kodak" / "kodim05.png").resize((160, 108)).save(own, "JPEG")
    ref = upload(c, own.getvalue(), role="reference", name="own.jpg").json()
    body = {"target": target["id"], "references": [{"upload": ref["id"]}]}
    first, second = (c.post("/api/jobs", json=body).json() for _ in range(2))
    third = c.post("/api/jobs", json=body)
    assert third.status_code == 503 and "waiting or running" in third.json()["error"]
    for _ in range(3):  # more uploads than the store keeps: the queued jobs' uploads stay
        assert upload(c, gray_png(data_dir, "kodim13.png", (112, 160))).status_code == 200
    assert c.get(f"/api/jobs/{first['id']}").json()["state"] == "queued"
    gate.set()
    for job in (first, second):
        done = wait(c, job["id"])
        assert done["state"] == "done", done
    later = c.post("/api/jobs", json=body)  # finished jobs make room; the uploads are released
    assert later.status_code == 202 and wait(c, later.json()["id"])["state"] == "done"
    assert c.get(f"/api/jobs/{second['id']}").status_code == 200  # the oldest finished one went
    assert c.get(f"/api/jobs/{first['id']}").status_code == 404
    assert len(c.app.state.uploads.items) <= 2


def test_only_servable_gallery_images_are_recommended(tv_weights, data_dir, tmp_path):
    """An image added to the index from outside the gallery root used to be recommended (first, here), then
    its thumbnail was 404 and a job with it failed; the app recommends only what it can serve."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(data_dir / "kodak" / "kodim05.png", outside / "kodim05.png")
    index = tmp_path / "g.index"
    g = small_gallery(sorted((data_dir / "imagenet-sample").glob("*.JPEG"))[:4], tmp_path / "gallery", index,
                      tv_weights)
    g.add([outside / "kodim05.png"], progress=False)
    g.close()
    with TestClient(make_app(tv_weights, index), base_url="http://127.0.0.1", headers=PAGE) as c:
        target = upload(c, gray_png(data_dir, "kodim05.png", (192, 128))).json()
        recs = c.post(f"/api/recommend/{target['id']}").json()["recommendations"]
        assert len(recs) == 4 and "kodim05.png" not in [r["name"] for r in recs], recs
        assert all(c.get(f"/api/gallery/{r['id']}/thumb").status_code == 200 for r in recs)
