from pathlib import Path

import pytest

from selfsup.web.explore import RUNS_ENV, UPLOAD_ENV

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "src" / "selfsup" / "web" / "app.py")


@pytest.fixture
def app(runs_dir, monkeypatch):
    monkeypatch.setenv(RUNS_ENV, str(runs_dir))
    monkeypatch.setenv(UPLOAD_ENV, "0.05")
    return AppTest.from_file(APP, default_timeout=120)


def test_page_shows_the_attention_of_an_example(app):
    app.run()
    assert not app.exception
    assert app.sidebar.selectbox[0].options == ["vit", "group/rn"]
    assert any("Attention of each head" in s.value for s in app.subheader)
    assert len(app.get("image")) >= 1


def test_page_takes_an_upload_and_refuses_bad_ones(app, png):
    app.run()
    app.sidebar.radio[0].set_value("upload").run()
    assert any("Upload an image" in i.value for i in app.info)
    app.sidebar.file_uploader[0].set_value(("shot.png", png((40, 40)), "image/png")).run()
    assert not app.error and any("Attention" in s.value for s in app.subheader)
    app.sidebar.file_uploader[0].set_value(("notes.txt", b"hello", "text/plain")).run()
    assert "notes.txt: the file does not decode as an image" in app.error[0].value
    app.sidebar.file_uploader[0].set_value(("big.png", b"\x89PNG" + b"0" * 60_000, "image/png")).run()
    assert "over this page's limit of 0.05 MB" in app.error[0].value


def test_resnet_runs_get_neighbours_but_no_attention(app):
    app.run()
    app.sidebar.selectbox[0].set_value("group/rn").run()
    assert "has no attention maps" in app.warning[0].value
    app.button[0].click().run()
    assert not app.exception and len(app.get("image")) >= 1


def test_no_runs_says_what_a_run_is(tmp_path, monkeypatch):
    monkeypatch.setenv(RUNS_ENV, str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert "No runs under" in at.error[0].value


def test_a_masked_image_modelling_run_shows_its_reconstructions(app, runs_dir, png):
    app.run()
    assert not any("reconstructs" in s.value for s in app.subheader)
    (runs_dir / "vit" / "reconstructions.png").write_bytes(png((60, 40)))
    app.run()
    assert not app.exception and any("reconstructs" in s.value for s in app.subheader)
