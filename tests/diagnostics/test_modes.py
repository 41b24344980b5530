import math

from selfsup.diagnostics import collapse_modes

LOG_K = math.log(1024)


def test_collapsed_embeddings_against_their_reference():
    assert collapse_modes({"emb_std": 0.001, "emb_std_ideal": 0.05}) == ["embedding"]
    assert collapse_modes({"emb_std": 0.04, "emb_std_ideal": 0.05, "backbone_std": 0.001,
                           "backbone_std_ideal": 0.08}) == ["embedding"]
    assert collapse_modes({"emb_std": 0.04, "emb_std_ideal": 0.05}) == []


def test_embeddings_near_one_line_collapse_whatever_their_std():
    assert collapse_modes({"emb_std": 0.012, "emb_std_ideal": 0.044, "emb_rank": 1.2}) == ["embedding"]
    assert collapse_modes({"emb_std": 0.012, "emb_std_ideal": 0.044, "emb_rank": 5.0}) == []
    assert collapse_modes({"emb_rank": float("nan")}) == []  # a diverged step is not a collapse


def test_dino_collapses_need_kl_near_zero_and_say_which_end_the_entropy_is_at():
    assert collapse_modes({"teacher_entropy": 0.01, "teacher_student_kl": 1e-4, "log_K": LOG_K}) == ["one-prototype"]
    assert collapse_modes({"teacher_entropy": LOG_K - 0.01, "teacher_student_kl": 1e-4, "log_K": LOG_K}) == ["uniform"]
    assert collapse_modes({"teacher_entropy": 0.01, "teacher_student_kl": 1.0, "log_K": LOG_K}) == []
    assert collapse_modes({"teacher_entropy": 3.0, "teacher_student_kl": 1e-4, "log_K": LOG_K}) == []
    assert collapse_modes({"loss": 1.0}) == []
