from pathlib import Path

import pytest

from selfsup.models.io import BackboneSpec, save_backbone
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
    assert not app.exception and not app.error
    assert app.sidebar.selectbox[0].options == ["demo", "dinov2", "vit", "group/rn"]
    assert any("Attention of each head" in s.value for s in app.subheader)
    assert len(app.get("image")) >= 1


@pytest.mark.parametrize("run, grid", [("demo", "14x21"), ("dinov2", "4x6"), ("vit", "7x10")])
def test_every_kind_of_vit_shows_its_attention(app, run, grid):
    app.run()
    app.sidebar.selectbox[0].set_value(run).run()
    app.sidebar.selectbox[1].set_value("coffee").run()
    app.sidebar.slider[0].set_value(112 if run == "demo" else 56).run()
    assert not app.exception and not app.error
    assert any(f"Attention of each head ({grid} patches)" in s.value for s in app.subheader)


def test_a_damaged_run_is_a_message_and_a_rewritten_one_is_read_again(app, runs_dir):
    app.run()
    app.sidebar.selectbox[0].set_value("vit").run()
    assert "trained on 32-px crops" in app.caption[0].value
    bigger = BackboneSpec("vit-cpu", 48, 3, 8, [0.5] * 3, [0.25] * 3)  # the same path, another model
    save_backbone(bigger.build(), bigger, runs_dir / "vit" / "backbone.safetensors")
    app.run()
    assert not app.exception and "trained on 48-px crops" in app.caption[0].value
    f = runs_dir / "vit" / "backbone.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # half-written
    app.run()
    assert not app.exception and "run vit: cannot read" in app.error[0].value
    assert str(runs_dir) not in app.error[0].value  # no server paths on the page


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
    assert "has no attention maps" in app.warning[0].value and "no such token" in app.warning[0].value
    assert any("a seeded sample of at most" in c.value for c in app.caption)
    app.button[0].click().run()
    assert not app.exception and not app.error and len(app.get("image")) >= 8
    assert any("among 30 of the 30 training images" in c.value for c in app.caption)


def test_data_outside_runs_is_not_searched(app, runs_dir, tmp_path):
    (runs_dir / "data" / "tiny.npz").rename(tmp_path / "tiny.npz")
    (runs_dir / "vit" / "config.yaml").write_text(f"data: {{name: {tmp_path / 'tiny.npz'}}}\n")
    app.run()
    app.sidebar.selectbox[0].set_value("vit").run()
    assert not app.exception and not app.button
    assert any("lies outside --runs" in i.value and "--data-root" in i.value for i in app.info)


def test_no_runs_says_what_a_run_is(tmp_path, monkeypatch):
    monkeypatch.setenv(RUNS_ENV, str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert "No runs under" in at.error[0].value


def test_a_masked_image_modelling_run_shows_its_reconstructions(app, runs_dir, png):
    app.run()
    assert not any("reconstructs" in s.value for s in app.subheader)
    (runs_dir / "demo" / "reconstructions.png").write_bytes(png((60, 40)))  # the run shown first
    app.run()
    assert not app.exception and any("reconstructs" in s.value for s in app.subheader)
