"""The model of the batching benchmarks: an MLP whose cost is reading its 64 MiB of weights.

Four 2048 x 2048 float32 layers (MatMul + Relu), built with ``onnx`` and run by ONNX
Runtime on one thread. On one input the run reads every weight for 2048 x 2048 x 4
multiply-adds per layer: memory-bound, as large networks are on GPUs; on 16 inputs it
reads them once for 16 times the work, so a batch of 16 runs many times the items per
second of a batch of 1. Each item of a request is a number; the model's input row is that
number repeated, its answer the sum of the output row (so each request can check its own).

Shared by bench_batching.py and by every server of bench_peer.py (the atom's
batching_server.py, litserve_server.py, bentoml_server.py, ray_server.py); ``python
mlp_model.py OUT.onnx`` writes the model. With MLP_BATCH_LOG set to a file, each run
appends its batch size to it (one line, a few microseconds): bench_peer.py reads the batch
sizes every server formed from there, the same way for all of them. With MLP_CPUS set (CPU
numbers, "1" or "2,3"), each run holds the thread that calls it to those CPUs: the model
gets CPUs of its own, as a model on an accelerator has its device, whatever server calls it
(bench_peer.py's layout for the MLP; one system call per run).
"""

import os
import sys
from pathlib import Path

import numpy as np

WIDTH, LAYERS = 2048, 4
IR_VERSION = 9  # the ONNX IR version the model is written in (see build)


def build(path: Path, seed: int = 0) -> Path:
    """Write the ONNX model to ``path`` (about 64 MiB)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, weights, name = [], [], "x"
    for layer in range(LAYERS):
        matrix = (rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
        weights.append(numpy_helper.from_array(matrix, f"w{layer}"))
        nodes.append(helper.make_node("MatMul", [name, f"w{layer}"], [f"m{layer}"]))
        nodes.append(helper.make_node("Relu", [f"m{layer}"], [f"h{layer}"]))
        name = f"h{layer}"
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", WIDTH])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", WIDTH])],
        weights,
    )
    # The IR version is set, not left to the onnx package: a newer onnx writes a version
    # that the ONNX Runtime of the servers cannot load yet (onnx 1.23 writes 14, ONNX
    # Runtime 1.23 reads up to 11). 9 with opset 17 loads in every ONNX Runtime since 1.15.
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION
    )
    path.write_bytes(model.SerializeToString())
    return path


class Mlp:
    """The model loaded by ONNX Runtime with ``threads`` intra-op threads."""

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        cpus = os.environ.get("MLP_CPUS")
        self.cpus = {int(cpu) for cpu in cpus.split(",")} if cpus else None
        log = os.environ.get("MLP_BATCH_LOG")
        self.batch_log = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT) if log else None

    def predict_batch(self, items: list[float]) -> list[float]:
        """One answer per item, in order (one run for all of them)."""
        if self.cpus is not None:  # the calling thread only (Linux: 0 is the caller)
            os.sched_setaffinity(0, self.cpus)
        rows = np.repeat(np.asarray(items, dtype=np.float32)[:, None], WIDTH, axis=1)
        (out,) = self.session.run(None, {"x": rows})
        if self.batch_log is not None:
            os.write(self.batch_log, b"%d\n" % len(items))
        return [round(float(value), 3) for value in out.sum(axis=1)]


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
