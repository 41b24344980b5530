"""The Streamlit page of `selfsup serve`: pick a run and an image, see each head's attention and the nearest
training images. Layout only: everything it shows comes from `selfsup.web.explore`."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from selfsup.eval.context import run_info
from selfsup.models.vit import VisionTransformer
from selfsup.web.explore import (
    DEFAULT_UPLOAD_MB,
    EXAMPLES,
    RUNS_ENV,
    UPLOAD_ENV,
    UploadError,
    attention_png,
    decode_upload,
    default_side,
    example_image,
    find_runs,
    load_run,
    nearest_training_images,
    to_tensor,
)


@st.cache_resource
def cached_run(path: str):
    return load_run(Path(path))


@st.cache_data
def cached_neighbours(path: str, image_bytes: bytes, shape: tuple[int, ...], k: int):
    import torch

    image = torch.frombuffer(bytearray(image_bytes), dtype=torch.uint8).reshape(shape)
    n = nearest_training_images(Path(path), image, k)
    return n.images.numpy(), n.similarity, n.labels


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


def main() -> None:
    st.set_page_config(page_title="selfsup: look inside a model", layout="wide")
    st.title("Look inside a self-supervised model")
    root = os.environ.get(RUNS_ENV, "runs")
    limit_mb = float(os.environ.get(UPLOAD_ENV, DEFAULT_UPLOAD_MB))
    runs = find_runs(root)
    if not runs:
        st.error(f"No runs under {root}: a run is a folder with backbone.safetensors (selfsup pretrain --out DIR).")
        return
    name = st.sidebar.selectbox("run", list(runs))
    model, spec = cached_run(str(runs[name]))
    label, image = pick_image(limit_mb)
    if label is None:
        return
    image = example_image(label) if image is None else image
    side = st.sidebar.slider("shorter side (px)", 16, 512, default_side(spec), 8,
                             help="The image is resized to this before the patches are cut.")
    threshold = st.sidebar.slider("mask keeps this share of the attention", 0.05, 1.0, 0.6, 0.05)
    x = to_tensor(image, spec.in_chans, side)
    st.caption(f"run {name}: {spec.name}, {spec.patch_size or '-'}-px patches, trained on {spec.img_size}-px "
               f"crops; image {label}")
    if isinstance(model, VisionTransformer):
        png, grid = attention_png(model, spec, x, threshold, f"{label}: [CLS] attention of the last block")
        st.subheader(f"Attention of each head ({grid[0]}x{grid[1]} patches)")
        st.image(png, caption="attention maps", width="stretch")
    else:
        st.warning(f"{spec.name} is a ResNet: it has no attention maps. The nearest images are below.")
    recon = runs[name] / "reconstructions.png"
    if recon.is_file():  # written by masked image modelling and inpainting runs at the end of training
        st.subheader("What the pre-training task reconstructs")
        st.image(recon.read_bytes(), caption="masked input, reconstruction, original (training images)")
    st.subheader("Nearest training images (cosine in feature space)")
    if not run_info(runs[name]).get("data"):  # a converted run made without --data has no training images
        st.info("This run names no training data (convert it with --data NAME to search one).")
    elif st.button("find the nearest training images"):
        with st.spinner("features of the training images (cached after the first time)"):
            imgs, sims, labels = cached_neighbours(str(runs[name]), x.numpy().tobytes(), tuple(x.shape), 8)
        cols = st.columns(len(imgs))
        for col, img, s, lab in zip(cols, imgs, sims, labels, strict=True):
            col.image(img.transpose(1, 2, 0) if img.shape[0] == 3 else img[0], caption=f"{lab or ''} {s:.2f}",
                      width="stretch")


main()
