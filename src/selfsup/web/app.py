"""The Streamlit page of `selfsup serve`: pick a run and an image, see each head's attention and the nearest
training images. Layout only: everything it shows comes from `selfsup.web.explore` and `selfsup.web.neighbours`.
Every failure is a message on the page, never a traceback (the last resort prints it to the server's console)."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

import streamlit as st

from selfsup.models.vit import VisionTransformer
from selfsup.web.explore import (
    DATA_ROOT_ENV,
    DEFAULT_UPLOAD_MB,
    EXAMPLES,
    MAX_TOKENS,
    RUNS_ENV,
    UPLOAD_ENV,
    RunError,
    UploadError,
    attention_png,
    decode_upload,
    default_side,
    example_image,
    file_key,
    find_runs,
    load_run,
    run_file,
    to_tensor,
    token_stride,
)
from selfsup.web.neighbours import SAMPLE, allowed_data, nearest, training_bank

BACKBONE_FILE = "backbone.safetensors"
MAX_FIGURE_BYTES = 20 * 2**20  # a run's reconstructions.png larger than this is not shown


@st.cache_resource(max_entries=4)
def cached_run(path: str, size: int, mtime_ns: int, root: str):
    """The run's model, keyed by its file's path, size and modification time: a rewritten run is read again."""
    return load_run(Path(path).parent, root)


@st.cache_resource(max_entries=4)
def cached_bank(path: str, size: int, mtime_ns: int, config: tuple, root: str, data_root: str | None):
    """The features of the run's sampled training images, keyed as its model and by its config.yaml."""
    model, spec = cached_run(path, size, mtime_ns, root)
    return training_bank(Path(path).parent, model, spec, Path(root), Path(data_root) if data_root else None)


def pick_image(limit_mb: float):
    """The chosen example or the uploaded file as (H, W, 3) uint8, or None (with a message on the page)."""
    source = st.sidebar.radio("image", ["example", "upload"], horizontal=True)
    if source == "example":
        return st.sidebar.selectbox("example image", EXAMPLES), None
    up = st.sidebar.file_uploader(f"image file (at most {limit_mb:g} MB)")
    if up is None:
        st.info("Upload an image in the sidebar, or pick an example.")
        return None, None
    try:
        return up.name, decode_upload(up.getvalue(), limit_mb)
    except UploadError as e:
        st.error(f"{up.name}: {e}")
        return None, None


def show_neighbours(run: Path, key: tuple, root: str, data_root: str | None, model, spec, x) -> None:
    """The nearest-images section: what it searches, the button, the images."""
    st.subheader("Nearest training images (cosine in feature space)")
    try:
        data = allowed_data(run, Path(root), Path(data_root) if data_root else None)
    except RunError as e:
        st.info(str(e))
        return
    st.caption(f"Searches a seeded sample of at most {SAMPLE} training images of {Path(data).name}: an image "
               "folder is streamed, only the sampled files decoded, never the whole folder.")
    if not st.button("find the nearest training images"):
        return
    config = run_file(run, "config.yaml", root)
    with st.spinner("features of the sampled training images (kept while the server runs)"):
        try:
            bank = cached_bank(*key, file_key(config) if config else (), root, data_root)
        except RunError as e:
            st.error(str(e))
            return
        found = nearest(bank, model, spec, x, 8)
    st.caption(f"among {len(bank.rows)} of the {bank.total} training images")
    for col, img, s, lab in zip(st.columns(len(found.images)), found.images.numpy(), found.similarity, found.labels,
                                strict=True):
        col.image(img.transpose(1, 2, 0) if img.shape[0] == 3 else img[0], caption=f"{lab or ''} {s:.2f}",
                  width="stretch")


def main() -> None:
    st.set_page_config(page_title="selfsup: look inside a model", layout="wide")
    st.title("Look inside a self-supervised model")
    root = os.environ.get(RUNS_ENV, "runs")
    data_root = os.environ.get(DATA_ROOT_ENV) or None
    limit_mb = float(os.environ.get(UPLOAD_ENV, DEFAULT_UPLOAD_MB))
    runs = find_runs(root)
    if not runs:
        st.error(f"No runs under {root}: a run is a folder with backbone.safetensors (selfsup pretrain --out DIR).")
        return
    name = st.sidebar.selectbox("run", list(runs))
    try:
        key = file_key(runs[name] / BACKBONE_FILE)
        model, spec = cached_run(*key, root)
    except (RunError, OSError) as e:
        st.error(f"run {name}: {e}" if isinstance(e, RunError) else f"run {name}: its backbone file cannot be read "
                 f"({type(e).__name__}): re-export it")
        return
    label, image = pick_image(limit_mb)
    if label is None:
        return
    image = example_image(label) if image is None else image
    side = st.sidebar.slider("shorter side (px)", 16, 512, default_side(spec), 8,
                             help=f"The image is resized to this before the patches are cut, then shrunk to at most "
                                  f"{MAX_TOKENS} tokens.")
    threshold = st.sidebar.slider("mask keeps this share of the attention", 0.05, 1.0, 0.6, 0.05)
    x = to_tensor(image, spec.in_chans, side, token_stride(model))
    shrunk = f" (shrunk to at most {MAX_TOKENS} tokens)" if min(x.shape[-2:]) < side else ""
    st.caption(f"run {name}: {spec.name}, {spec.patch_size or '-'}-px patches, trained on {spec.img_size}-px "
               f"crops; image {label}, {x.shape[-1]}x{x.shape[-2]} px{shrunk}")
    if isinstance(model, VisionTransformer):
        png, grid = attention_png(model, spec, x, threshold, f"{label}: [CLS] attention of the last block")
        st.subheader(f"Attention of each head ({grid[0]}x{grid[1]} patches)")
        st.image(png, caption="attention maps", width="stretch")
    else:
        st.warning(f"{spec.name} is a ResNet: it has no attention maps. Attention maps show how a transformer's "
                   "[CLS] token weighs the image's patches; a convolutional network has no such token, so there is "
                   "nothing to draw. The nearest training images are below.")
    recon = run_file(runs[name], "reconstructions.png", root)
    if recon is not None and recon.stat().st_size <= MAX_FIGURE_BYTES:  # masked image modelling runs write it
        st.subheader("What the pre-training task reconstructs")
        st.image(recon.read_bytes(), caption="masked input, reconstruction, original (training images)")
    show_neighbours(runs[name], key, root, data_root, model, spec, x)


try:
    main()
except Exception as e:  # the last resort: a message on the page, the traceback on the server's console only
    traceback.print_exc(file=sys.stderr)
    st.error(f"The page failed ({type(e).__name__}); the traceback is in the console of selfsup serve.")
