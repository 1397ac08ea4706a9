"""A tiny ONNX image classifier written byte by byte (the onnx package is not a dependency):
unsafe when an image's mean brightness is above 0.5.

logits = [-z, z] with z = 50 * (mean(pixels) - 0.5), so softmax gives P(unsafe) = 1 / (1 + exp(-2z));
with one_output, the single logit z (sigmoid gives 1 / (1 + exp(-z))). The input is NCHW float32,
batch dimension free, `size` x `size` pixels. Encoded from onnx.proto's field numbers (opset 13)."""

import numpy as np


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor(name: str, array: np.ndarray) -> bytes:
    kind = {np.float32: 1, np.int64: 7}[array.dtype.type]
    dims = b"".join(_field(1, d) for d in array.shape)
    return dims + _field(2, kind) + _field(8, name) + _field(9, array.tobytes())


def _node(op: str, inputs, outputs, **attrs) -> bytes:
    data = b"".join(_field(1, i) for i in inputs) + b"".join(_field(2, o) for o in outputs) + _field(4, op)
    for name, value in attrs.items():
        if isinstance(value, list):
            attr = _field(1, name) + b"".join(_field(8, v) for v in value) + _field(20, 7)  # INTS
        else:
            attr = _field(1, name) + _field(3, value) + _field(20, 2)  # INT
        data += _field(5, attr)
    return data


def _value_info(name: str, dims) -> bytes:
    shape = b"".join(_field(1, _field(2, d) if isinstance(d, str) else _field(1, d)) for d in dims)
    tensor_type = _field(1, 1) + _field(2, shape)  # elem_type FLOAT
    return _field(1, name) + _field(2, _field(1, tensor_type))


def brightness_classifier(path, size: int = 16, one_output: bool = False):
    nodes = [
        _node("ReduceMean", ["pixels"], ["mean"], axes=[1, 2, 3], keepdims=0),
        _node("Sub", ["mean", "half"], ["centred"]),
        _node("Mul", ["centred", "scale"], ["z"]),
        _node("Reshape", ["z", "column"], ["z2"]),
    ]
    if one_output:
        nodes.append(_node("Identity", ["z2"], ["logits"]))
        out_dims = ["n", 1]
    else:
        nodes += [_node("Neg", ["z2"], ["minus"]), _node("Concat", ["minus", "z2"], ["logits"], axis=1)]
        out_dims = ["n", 2]
    initial = [
        _tensor("half", np.array(0.5, np.float32)),
        _tensor("scale", np.array(50.0, np.float32)),
        _tensor("column", np.array([-1, 1], np.int64)),
    ]
    graph = b"".join(_field(1, n) for n in nodes) + _field(2, "brightness")
    graph += b"".join(_field(5, t) for t in initial)
    graph += _field(11, _value_info("pixels", ["n", 3, size, size])) + _field(12, _value_info("logits", out_dims))
    model = _field(1, 8) + _field(2, "shielddiff-test") + _field(7, graph) + _field(8, _field(1, "") + _field(2, 13))
    path.write_bytes(model)
    return path


def p_unsafe(mean: float, one_output: bool = False) -> float:
    z = 50 * (mean - 0.5)
    return 1 / (1 + np.exp(-(z if one_output else 2 * z)))
