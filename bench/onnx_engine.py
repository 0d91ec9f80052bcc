"""ONNX Runtime baselines for bench.int8: the model exported, BERT-fused, and quantized per channel."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

NAMES = ("ORT fp32", "ORT int8 per-channel QInt8")


def export(model_dir: str, out: Path) -> dict[str, Path]:
    """fp32 (fused BERT graph) and quantize_dynamic per-channel QInt8 ONNX files of the model, built once."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model
    from transformers import AutoModel

    files = {NAMES[0]: out / "fused.onnx", NAMES[1]: out / "fused-int8-per-channel.onnx"}
    if all(path.exists() for path in files.values()):
        return files
    out.mkdir(parents=True, exist_ok=True)
    # Eager attention exports the pattern ORT's optimizer fuses into its Attention op (SDPA's does not fuse).
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()

    class Hidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model  # a submodule: its weights export as initializers

        def forward(self, ids, mask):
            return self.model(input_ids=ids, attention_mask=mask).last_hidden_state

    raw, ids = out / "raw.onnx", torch.ones(1, 16, dtype=torch.long)
    axes = {"b": 0, "s": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Hidden(), (ids, ids), str(raw), input_names=["input_ids", "attention_mask"],
                          output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                          dynamic_axes={name: {v: k for k, v in axes.items()}
                                        for name in ("input_ids", "attention_mask", "last_hidden_state")})
    config = model.config
    optimize_model(str(raw), model_type="bert", num_heads=config.num_attention_heads,
                   hidden_size=config.hidden_size).save_model_to_file(str(files[NAMES[0]]))
    quantize_dynamic(str(files[NAMES[0]]), str(files[NAMES[1]]), per_channel=True, weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": 1})  # the fused ops hide some types from shape inference
    return files


class OrtEmbedder:
    """One ONNX file on one thread, one text per call (its fastest policy: no padding), mean pooled, normalized."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def embed(self, sequences: list[list[int]]) -> np.ndarray:
        """Unit vectors of finished token sequences, in order."""
        rows = []
        for ids in sequences:
            ids = np.array([ids], dtype=np.int64)
            states = self.session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
            vector = states[0].mean(axis=0)
            rows.append(vector / np.linalg.norm(vector))
        return np.stack(rows).astype(np.float32)
