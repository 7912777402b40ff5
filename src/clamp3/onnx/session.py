"""One tower graph in an ONNX Runtime session (imports neither torch nor transformers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clamp3.onnx.layout import INPUT_NAMES, MERT_OUTPUT_NAMES, OUTPUT_NAMES
from clamp3.utils.errors import CheckpointError


def providers_for(device: str | None) -> list[str]:
    """ONNX Runtime execution providers for ``device`` (``None``/``"cpu"``, ``"cuda"``,
    ``"cuda:N"``); asking for CUDA where this onnxruntime has no CUDA provider is an error."""
    import onnxruntime as ort

    if device is None or device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise CheckpointError(
                f"--device {device}: this onnxruntime has no CUDA provider (install onnxruntime-gpu)"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise CheckpointError(f"--device {device}: the ONNX backend runs on cpu or cuda")


class TowerSession:
    """``run(inputs, mask)`` on one exported tower graph.

    inputs: (B, L) int64 token ids, (B, L, 64) int64 patch ids or (B, L, F) float32 rows;
    mask: (B, L) bool, True on real positions. Returns the (B, D) float32 embedding and, when
    asked, the (B, L, H) float32 last hidden state.

    ``prepack``: let ONNX Runtime repack the matrix weights into its kernels' layout when the
    session opens. That makes every run 2-3x faster, but repacking the text tower takes about as
    long as loading it (0.2-1 s, fp32 the most), so a process that runs one query (``clamp3
    search``) opens without it (``benchmarks/onnx_runtime.py`` measures both).
    """

    def __init__(
        self,
        path: Path,
        modality: str,
        device: str | None = None,
        threads: int | None = None,
        prepack: bool = True,
    ):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: ORT warns about unused initializers etc.
        if not prepack:
            options.add_session_config_entry("session.disable_prepacking", "1")
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers_for(device))
        except CheckpointError:
            raise
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            raise CheckpointError(
                f"{path}: onnxruntime cannot load this graph ({type(exc).__name__}: {exc})"
            ) from exc
        inputs = tuple(i.name for i in self._session.get_inputs())
        outputs = tuple(o.name for o in self._session.get_outputs())
        expected = MERT_OUTPUT_NAMES if modality == "mert" else OUTPUT_NAMES
        if inputs != INPUT_NAMES[modality] or outputs != expected:
            raise CheckpointError(
                f"{path}: not a clamp3 {modality} graph (inputs {inputs}, outputs {outputs}; "
                f"expected {INPUT_NAMES[modality]} -> {expected})"
            )
        self.path = path
        self.modality = modality
        self._input_names = inputs

    def output_dims(self) -> tuple[object, object]:
        """The static last dimension of the embedding and hidden-state outputs (D, H)."""
        out = self._session.get_outputs()
        return out[0].shape[-1], out[1].shape[-1]

    def run_mert(self, windows: np.ndarray) -> np.ndarray:
        """(B, L) float32 normalised windows -> (13, B, 768) float32 time-mean hidden states."""
        (out,) = self._session.run(list(MERT_OUTPUT_NAMES), {self._input_names[0]: windows})
        return np.asarray(out, dtype=np.float32)

    def run(
        self, inputs: np.ndarray, mask: np.ndarray, hidden: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        feed = {self._input_names[0]: inputs, self._input_names[1]: mask.astype(bool, copy=False)}
        names = list(OUTPUT_NAMES) if hidden else [OUTPUT_NAMES[0]]
        out = self._session.run(names, feed)
        embedding = np.asarray(out[0], dtype=np.float32)
        return embedding, (np.asarray(out[1], dtype=np.float32) if hidden else None)
