"""Evaluation of frozen representations: feature extraction and the weighted k-NN classifier."""

from selfsup.eval.features import extract_features
from selfsup.eval.knn import KnnResult, default_chunk_size, knn_classify, knn_predict

__all__ = ["KnnResult", "default_chunk_size", "extract_features", "knn_classify", "knn_predict"]
