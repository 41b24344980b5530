"""Evaluation of frozen and fine-tuned representations: feature extraction, k-NN, the linear probe, label
subsets, and the protocols of `selfsup eval` (registry in `protocols.py`, context in `context.py`)."""

from selfsup.eval.features import extract_features
from selfsup.eval.knn import KnnResult, default_chunk_size, knn_classify, knn_predict
from selfsup.eval.linear import linear_probe
from selfsup.eval.subsets import stratified_subset, validation_split

__all__ = ["KnnResult", "default_chunk_size", "extract_features", "knn_classify", "knn_predict", "linear_probe",
           "stratified_subset", "validation_split"]
