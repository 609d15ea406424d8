"""Per-text activation quantisation: an int8 graph whose answer for a text does not depend
on the other texts of its batch.

``onnxruntime.quantization.quantize_dynamic`` quantises every activation that feeds an
int8 matrix product with ``DynamicQuantizeLinear``, which takes one scale and zero point
for the *whole* tensor: over every text of the batch, padding included. A text batched
with a louder neighbour is then read at a coarser scale, and its probabilities move (by up
to 0.07 on en-val tweets, enough to flip borderline labels). Batch and single answers
disagree, and the scorer's cache keeps whichever answer came first.

This rewrite gives every text its own scale and zero point, taken over its own tokens
only: exactly what the same graph computes for that text alone in a batch of one.

* For an activation ``x`` of shape ``[batch, seq, hidden]``: ``x`` times the attention
  mask (padding positions become 0, which every range contains already), its minimum and
  maximum per text (``[batch, 1, 1]``), widened to include 0; ``scale = (max - min) /
  255``, ``zero = clip(round(-min / scale), 0, 255)``; ``q = clip(round(x / scale) +
  zero, 0, 255)`` as uint8: ``DynamicQuantizeLinear``'s own formula, per text. A
  ``[batch, hidden]`` activation (the pooled vector) is taken per row.
* ``MatMulInteger`` accepts only one zero point for its left input, so it now runs with
  zero point 0 and the per-text zero point is taken off after it, exactly in int32:
  ``(q - z) @ (W - w) = q @ (W - w) - z * colsum(W - w)``, with ``colsum`` a constant
  worked out here from the weights.
* The scale products that follow (``x_scale * w_scale``) broadcast over ``[batch, 1, N]``
  unchanged.

Weights, graph inputs and outputs stay as they were; the card's digest changes.

    python -m sentiment.training.pertext_quant IN.int8.onnx OUT.int8.onnx

(needs the ``onnx`` package of the ``train`` extra; nothing at run time does).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MASK_INPUT = "attention_mask"


def rewrite(model: Any) -> int:
    """Rewrite ``model`` (an ``onnx.ModelProto``) in place; returns the number of
    activations now quantised per text."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    if MASK_INPUT not in {i.name for i in graph.input}:
        raise ValueError(f"the graph has no {MASK_INPUT!r} input")
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in list(inferred.graph.value_info) + list(inferred.graph.input)
    }
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    new_inits: list[Any] = []

    def const(name: str, value: Any) -> str:
        new_inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    zero_u8 = const("pertext/zero_u8", np.array(0, dtype=np.uint8))
    tiny = const("pertext/tiny", np.array(1e-30, dtype=np.float32))
    zero_f = const("pertext/zero_f", np.array(0.0, dtype=np.float32))
    full = const("pertext/255", np.array(255.0, dtype=np.float32))
    mask = "pertext/mask"
    flat = const("pertext/flat", np.array([-1], dtype=np.int64))
    head = [
        helper.make_node("Cast", [MASK_INPUT], ["pertext/mask_f"], to=TensorProto.FLOAT),
        helper.make_node(
            "Unsqueeze", ["pertext/mask_f", const("pertext/axis2", np.array([2]))], [mask]
        ),
    ]

    replaced: dict[str, list[Any]] = {}  # original node name -> its replacement nodes
    count = 0
    for node in graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            continue
        x = node.input[0]
        q, scale, zero = node.output
        rank = ranks.get(x)
        if rank not in (2, 3):
            raise ValueError(f"{node.name}: input {x} has rank {rank}, expected 2 or 3")
        p = f"pertext/{count}"
        seen = x
        steps: list[Any] = []
        if rank == 3:  # padding positions become 0: inside every range already
            steps.append(helper.make_node("Mul", [x, mask], [f"{p}/masked"]))
            seen = f"{p}/masked"
        axes = [1, 2] if rank == 3 else [1]  # an attribute up to opset 17
        steps += [
            helper.make_node("ReduceMax", [seen], [f"{p}/max"], axes=axes, keepdims=1),
            helper.make_node("ReduceMin", [seen], [f"{p}/min"], axes=axes, keepdims=1),
            helper.make_node("Max", [f"{p}/max", zero_f], [f"{p}/hi"]),
            helper.make_node("Min", [f"{p}/min", zero_f], [f"{p}/lo"]),
            helper.make_node("Sub", [f"{p}/hi", f"{p}/lo"], [f"{p}/range"]),
            helper.make_node("Div", [f"{p}/range", full], [f"{p}/scale0"]),
            helper.make_node("Max", [f"{p}/scale0", tiny], [scale]),
            helper.make_node("Div", [f"{p}/lo", scale], [f"{p}/lo_s"]),
            helper.make_node("Neg", [f"{p}/lo_s"], [f"{p}/zero_raw"]),
            helper.make_node("Round", [f"{p}/zero_raw"], [f"{p}/zero_r"]),
            helper.make_node("Clip", [f"{p}/zero_r", zero_f, full], [zero]),  # float here
            helper.make_node("Reshape", [scale, flat], [f"{p}/scale_v"]),
            helper.make_node("Reshape", [zero, flat], [f"{p}/zero_v"]),
            helper.make_node("Cast", [f"{p}/zero_v"], [f"{p}/zero_u8"], to=TensorProto.UINT8),
            helper.make_node("QuantizeLinear", [x, f"{p}/scale_v", f"{p}/zero_u8"], [q], axis=0),
        ]
        replaced[node.name] = steps
        # its matrix products: zero point 0, and the per-text zero point taken off after,
        # exactly in int32: (q - z) @ (W - w) = q @ (W - w) - z * colsum(W - w)
        zero_i = f"{p}/zero_i"
        steps.append(helper.make_node("Cast", [zero], [zero_i], to=TensorProto.INT32))
        for product in consumers.get(q, []):
            if product.op_type != "MatMulInteger" or product.input[2] != zero:
                raise ValueError(f"{q} feeds {product.op_type} {product.name}")
            weights, w_zero = product.input[1], product.input[3]
            for name in (weights, w_zero):
                if name not in inits:
                    raise ValueError(f"{product.name}: {name} is not a constant")
            w = numpy_helper.to_array(inits[weights]).astype(np.int64)
            w = w - numpy_helper.to_array(inits[w_zero]).astype(np.int64)
            colsum = const(f"{product.name}/pertext_colsum", w.sum(axis=0).astype(np.int32))
            r = f"{product.name}/pertext"
            replaced[product.name] = [
                helper.make_node(
                    "MatMulInteger", [q, weights, zero_u8, w_zero], [f"{r}/raw"], name=product.name
                ),
                helper.make_node("Mul", [zero_i, colsum], [f"{r}/shift"]),
                helper.make_node("Sub", [f"{r}/raw", f"{r}/shift"], [product.output[0]]),
            ]
        count += 1

    nodes = list(head)
    for node in graph.node:
        nodes.extend(replaced.get(node.name, [node]))
    graph.ClearField("node")
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    onnx.checker.check_model(model)
    return count


def quantise(fp32: Path, int8: Path) -> int:
    """The shipped int8 recipe: dynamic int8 per channel (weights), then :func:`rewrite`
    (activations per text). Returns the number of activations rewritten."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8)
    model = onnx.load(str(int8))
    count = rewrite(model)
    onnx.save(model, str(int8))
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    import onnx

    model = onnx.load(str(args.source))
    count = rewrite(model)
    onnx.save(model, str(args.target))
    print(f"{args.target}: {count} activations quantised per text", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
