"""Training Kronos tokenizers and predictors from scratch or by fine-tuning.

Pure torch + numpy: inputs are DataFrames or arrays, outputs are `save_pretrained`
checkpoints. Stage 1 trains the tokenizer to reconstruct normalised candles through its
binary codes; stage 2 trains the predictor on the frozen tokenizer's tokens. Both run as
one process or data-parallel under `torchrun` (gloo on CPU, nccl on GPU).

    from kronos.training import TrainConfig, train_tokenizer, train_predictor, export_pair
    tok = train_tokenizer(frames, TrainConfig(out_dir="runs/tok", max_steps=500), init="nano")
    pred = train_predictor(frames, tok.best_dir, TrainConfig(out_dir="runs/pred", max_steps=2000))
    export_pair(tok.best_dir, pred.best_dir, "my-model")  # KronosPredictor.from_pretrained("my-model")
"""
from .data import Series, WindowDataset, build_datasets, normalise_window, prepare_series, split_point, window_starts
from .distributed import DistInfo, init_distributed
from .errors import TrainingConfigError, TrainingDataError, TrainingError, TrainingStateError
from .sizes import MODEL_SIZES, NANO_MODEL, NANO_TOKENIZER, SIZE_NAMES, TOKENIZER_SIZES, model_size, tokenizer_size
from .state import load_state, save_checkpoint
from .trainer import (PredictorStage, TokenizerStage, TrainConfig, TrainResult, check_bits, export_pair, load_model,
                      load_tokenizer, lr_factor, read_metrics, train_predictor, train_tokenizer)

__all__ = ["TrainConfig", "TrainResult", "train_tokenizer", "train_predictor", "export_pair", "load_tokenizer",
           "load_model", "check_bits", "lr_factor", "read_metrics", "TokenizerStage", "PredictorStage",
           "Series", "WindowDataset", "build_datasets", "normalise_window", "prepare_series", "split_point",
           "window_starts", "DistInfo", "init_distributed", "TrainingError", "TrainingDataError",
           "TrainingConfigError", "TrainingStateError", "NANO_TOKENIZER", "NANO_MODEL", "TOKENIZER_SIZES",
           "MODEL_SIZES", "SIZE_NAMES", "tokenizer_size", "model_size", "load_state", "save_checkpoint"]
