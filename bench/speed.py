"""``make bench-speed``: training throughput of the engine beside a plain DataLoader loop.

Both loops train the same model with the same batch size, optimizer, precision and memory format
on the same device; they differ only in the data path and the loop:
- engine: the whole uint8 split on the device, augmentation on the device, no per-step host sync;
- plain: ``torch.utils.data.DataLoader`` over the same images with torchvision transforms
  (RandomCrop with padding, RandomHorizontalFlip, ToTensor, Normalize), ``.to(device)`` per step.
Warm-up epochs are run first and not timed; evaluation is not part of either figure.
"""
from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from .config import DatasetConfig, RuntimeConfig, TrainConfig, from_dict
from .engine import PhaseTimer, autocast, resolve_device, train, use_channels_last
from .models import build_model
from .store import atomic_write_bytes

MARK_BEGIN = "<!-- bench-speed results: rows are appended by `make bench-speed` -->"


def _engine_images_per_s(data, model, recipe, runtime, augment, epochs, log):
    timer = PhaseTimer(data.train_x.device)
    warm = TrainConfig(**{**recipe.__dict__, "epochs": 1, "warmup_epochs": 0.0})
    train(model, data, warm, runtime=runtime, timer=timer, seed=0, augment=augment, phase="warmup", log=log)
    res = train(model, data, recipe, runtime=runtime, timer=timer, seed=1, augment=augment, phase="timed", log=log)
    images = data.steps_per_epoch(recipe.batch_size) * recipe.batch_size * recipe.epochs
    return images / res.train_seconds, res.train_seconds / recipe.epochs


def _plain_images_per_s(data, model, recipe, runtime, augment, epochs, workers):
    import torchvision.transforms as T
    from PIL import Image

    device = data.train_x.device
    images = data.train_x.permute(0, 2, 3, 1).cpu().numpy()
    labels = data.train_y.cpu().numpy()
    mean, std = data.mean.flatten().tolist(), data.std.flatten().tolist()
    tf = [T.RandomCrop(data.image_size, padding=augment.crop_padding)] if augment.crop_padding else []
    tf += [T.RandomHorizontalFlip()] if augment.flip else []
    tf += [T.RandomRotation(augment.rotate_deg)] if augment.rotate_deg else []
    transform = T.Compose(tf + [T.ToTensor(), T.Normalize(mean, std)])

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(labels)

        def __getitem__(self, i):
            return transform(Image.fromarray(images[i])), int(labels[i])

    loader = torch.utils.data.DataLoader(Images(), batch_size=recipe.batch_size, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    cl = use_channels_last(runtime, device)

    def epoch():
        model.train()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(runtime, device):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    epoch()  # warm-up (workers start, cuDNN autotune)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(epochs):
        epoch()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return len(loader) * recipe.batch_size * epochs / seconds, seconds / epochs


def run_speed(args) -> dict:
    from .data import load_dataset

    runtime = RuntimeConfig(device=args.device)
    device = resolve_device(runtime)
    dcfg = from_dict(DatasetConfig, {"name": args.dataset, "train_limit": args.train_limit})
    data = load_dataset(dcfg, args.data_dir, device)
    recipe = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=0.05, warmup_epochs=0.0,
                         schedule="constant", milestones=[])
    log = (lambda s: None) if not args.verbose else print
    results = {}
    for name, fn in (("engine", _engine_images_per_s), ("plain", _plain_images_per_s)):
        torch.manual_seed(0)
        model = build_model(args.arch, data.num_classes).to(device)
        if use_channels_last(runtime, device):
            model = model.to(memory_format=torch.channels_last)
        extra = log if name == "engine" else args.workers
        results[name] = fn(data, model, recipe, runtime, dcfg.augment, args.epochs, extra)
        print(f"{name:7s} {results[name][0]:10.1f} images/s  {results[name][1]:8.2f} s/epoch")
    ratio = results["engine"][0] / results["plain"][0]
    print(f"engine / plain = {ratio:.2f}x")
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    row = {
        "date": dt.date.today().isoformat(), "device": dev_name, "dataset": args.dataset, "n_train": len(data.train_y),
        "official": data.info["official"], "arch": args.arch, "batch": args.batch_size, "epochs": args.epochs,
        "amp": "bf16" if runtime.amp != "off" and device.type == "cuda" else "fp32",
        "engine": results["engine"], "plain": results["plain"], "ratio": ratio, "workers": args.workers,
    }
    if args.output:
        append_row(Path(args.output), row)
        print(f"appended to {args.output}")
    return row


def append_row(path: Path, row: dict) -> None:
    line = (f"| {row['date']} | {row['device']} | {row['dataset']} ({row['n_train']} train, "
            f"official={row['official']}) | {row['arch']} | {row['batch']} | {row['amp']} | {row['epochs']} | "
            f"{row['engine'][0]:.1f} | {row['engine'][1]:.2f} | {row['plain'][0]:.1f} ({row['workers']} workers) | "
            f"{row['plain'][1]:.2f} | **{row['ratio']:.2f}x** |\n")
    header = ("| date | device | data | model | batch | precision | timed epochs | engine img/s | engine s/epoch "
              "| DataLoader img/s | DataLoader s/epoch | ratio |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    text = path.read_text() if path.exists() else ""
    if MARK_BEGIN not in text:
        text += f"\n{MARK_BEGIN}\n\n{header}"
    atomic_write_bytes(path, (text + line).encode())


def register(sub) -> None:
    p = sub.add_parser("speed", help="training images/s of the engine vs a plain DataLoader loop")
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=2, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--train-limit", type=int, default=None, help="use this many train images (CPU: small)")
    p.add_argument("--workers", type=int, default=4, help="DataLoader workers for the plain loop")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", type=Path, default=Path("data"))
    p.add_argument("--output", default="docs/performance.md", help="append a row here ('' to skip)")
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_speed)


def cmd_speed(args) -> int:
    run_speed(args)
    return 0
