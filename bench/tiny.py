"""A grid small enough that each run trains in about a second on the CPU: the tests' grid
(tests/tiny.py) and the device checks' (scripts/device_checks.py)."""

TINY = {
    "name": "tiny",
    "seed": 0,
    "dataset": {"name": "synthetic", "augment": {"crop_padding": 1},
                "synthetic": {"num_classes": 4, "image_size": 8, "train_size": 256, "test_size": 64}},
    "model": {"arch": "resnet_small"},
    "pretrain": {"epochs": 3, "batch_size": 64, "lr": 0.05, "warmup_epochs": 0, "schedule": "cosine", "milestones": []},
    "retrain": {"epochs": 1, "batch_size": 64, "lr": 0.02, "warmup_epochs": 0, "schedule": "constant", "milestones": []},
    "teacher": {"arch": "resnet_small", "seed": 1,
                "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "warmup_epochs": 0, "schedule": "cosine",
                          "milestones": []}},
    "tgp": {"finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01, "warmup_epochs": 0, "schedule": "constant",
                         "milestones": []}},
    "budget": {"basis": "retrain-matched"},   # the self-distillation rows at the retrain recipe (1 epoch)
    "runtime": {"device": "cpu"},
    "grid": {"methods": ["dense", "magnitude", "random"], "sparsities": [0.5, 0.9], "seeds": [0]},
}
