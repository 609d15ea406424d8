"""A model card that is JSON but not an object (a list, null, a number), or that lacks a
field, is a ModelLoadError naming the file (said in one line at start), not an
AttributeError or a KeyError with a traceback."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from sentiment.chinese import ChineseModel
from sentiment.config import MODELS_DIR
from sentiment.encoder import EncoderCard
from sentiment.errors import ModelLoadError
from sentiment.wordmodel import WordModel

LOADERS: dict[str, Callable[[Path], object]] = {
    "encoder": EncoderCard.load,
    "chinese": ChineseModel.load,
    "words": WordModel.load,
}


@pytest.mark.parametrize("content", ["[]", "null", "3", '"card"'])
@pytest.mark.parametrize("kind", sorted(LOADERS))
def test_a_card_that_is_not_a_json_object_is_a_model_load_error(
    tmp_path: Path, kind: str, content: str
) -> None:
    card = tmp_path / "model.json"
    card.write_text(content, encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"model\.json.*not a JSON object"):
        LOADERS[kind](card)


def _copy_card(tmp_path: Path, name: str, drop: str) -> Path:
    """The shipped card ``name`` beside its arrays (linked), less the field ``drop``."""
    doc = json.loads((MODELS_DIR / name).read_text(encoding="utf-8"))
    (tmp_path / doc["arrays"]).symlink_to(MODELS_DIR / doc["arrays"])
    del doc[drop]
    card = tmp_path / name
    card.write_text(json.dumps(doc), encoding="utf-8")
    return card


@pytest.mark.parametrize(
    ("name", "drop", "load"),
    [
        ("zh-char-ngram.json", "bias", ChineseModel.load),
        ("zh-char-ngram.json", "max_n", ChineseModel.load),
        ("zh-char-ngram.json", "name", ChineseModel.load),
        ("en-word-ngram.json", "version", WordModel.load),
    ],
)
def test_a_card_without_a_field_is_a_model_load_error_naming_it(
    tmp_path: Path, name: str, drop: str, load: Callable[[Path], object]
) -> None:
    with pytest.raises(ModelLoadError, match=rf"{name}.*{drop}"):
        load(_copy_card(tmp_path, name, drop))
