"""``yolox-sdk predict`` on videos and cameras: a short video encoded here from BCCD photos, predicted with the
COCO-pretrained nano, checked against the frames OpenCV decodes from that same file (encoding is lossy)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from yolox_sdk.checkpoints.format import Checkpoint, save_checkpoint
from yolox_sdk.cli.main import cli
from yolox_sdk.evaluation.predict import Predictor
from yolox_sdk.evaluation.video import predict_video

FPS = 5.0
SIZE = (320, 240)  # width, height
CONF = 0.02  # low: a COCO model at 160 px finds few "donuts" in blood cells; frames need boxes to compare


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, nano_weights: Path, coco8_dir: Path) -> Path:
    """The COCO-pretrained nano at 160 px with COCO's class names, saved as one of our checkpoints."""
    from yolox_sdk.models import create_model

    names = yaml.safe_load((coco8_dir / "data.yaml").read_text())["names"]
    model, spec, _ = create_model("yolox-nano", 80, pretrained=str(nano_weights), input_size=(160, 160))
    checkpoint = Checkpoint(model.state_dict(), spec, tuple(names[index] for index in range(80)))
    return save_checkpoint(tmp_path_factory.mktemp("model") / "nano.pt", checkpoint)


@pytest.fixture(scope="module")
def predictor(checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(checkpoint)


def encode_video(path: Path, bccd_dir: Path, frames: int) -> Path:
    """``frames`` BCCD photos (cycled) resized to ``SIZE``, as mp4v .mp4 or, where that cannot be written
    here, MJPG .avi; returns the path actually written."""
    photos = sorted((bccd_dir / "JPEGImages").glob("*.jpg"))[:12]
    for suffix, codec in ((path.suffix, "mp4v"), (".avi", "MJPG")):
        target = path.with_suffix(suffix)
        writer = cv2.VideoWriter(str(target), cv2.VideoWriter_fourcc(*codec), FPS, SIZE)
        if writer.isOpened():
            break
    else:
        pytest.fail("OpenCV can write neither mp4v nor MJPG here")
    for index in range(frames):
        writer.write(cv2.resize(cv2.imread(str(photos[index % len(photos)])), SIZE))
    writer.release()
    return target


def encode_mjpg(path: Path, bccd_dir: Path, frames: int) -> Path:
    photos = sorted((bccd_dir / "JPEGImages").glob("*.jpg"))[:12]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    assert writer.isOpened()
    for index in range(frames):
        writer.write(cv2.resize(cv2.imread(str(photos[index % len(photos)])), SIZE))
    writer.release()
    return path


def decode_all(path: Path) -> list[tuple[float, np.ndarray]]:
    """Every frame OpenCV decodes from ``path``, with its container time stamp in seconds (plain loop)."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, image = capture.read()
        if not ok:
            break
        frames.append((capture.get(cv2.CAP_PROP_POS_MSEC) / 1000, image))
    capture.release()
    return frames


def decode_past_failures(path: Path, attempts: int) -> list[tuple[float, np.ndarray]]:
    """The frames of ``attempts`` reads, failed ones left out, with their container time stamps."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    for _ in range(attempts):
        ok, image = capture.read()
        if ok:
            frames.append((capture.get(cv2.CAP_PROP_POS_MSEC) / 1000, image))
    capture.release()
    return frames


def read_lines(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def predict_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["predict", *args])
    assert "Traceback" not in result.output and "bug" not in result.output, result.output
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def bccd_video(tmp_path_factory: pytest.TempPathFactory, bccd_dir: Path) -> Path:
    return encode_video(tmp_path_factory.mktemp("video") / "bccd.mp4", bccd_dir, 12)


def assert_same_detections(line: dict, expected: list) -> None:
    assert [d["class_name"] for d in line["detections"]] == [d.class_name for d in expected]
    np.testing.assert_allclose(
        [d["box"] for d in line["detections"]] or np.zeros((0, 4)),
        [d.box for d in expected] or np.zeros((0, 4)),
        atol=1.0,
    )


def test_video_gives_an_annotated_video_and_one_line_per_frame(
    bccd_video: Path, checkpoint: Path, predictor: Predictor, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    code, output = predict_cli(str(checkpoint), str(bccd_video), "--out", str(out), "--conf", str(CONF))
    assert code == 0, output
    suffix = bccd_video.suffix
    assert f"Annotated video (MPEG-4 (mp4v) in .mp4): {out / 'bccd.mp4'}" in output or suffix == ".avi"
    assert "12 of 12 frames read, 12 predicted" in output
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [f"bccd{suffix}", "detections.jsonl", "summary.json"]
    )

    written = cv2.VideoCapture(str(out / f"bccd{suffix}"))
    assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS)
    assert (written.get(cv2.CAP_PROP_FRAME_WIDTH), written.get(cv2.CAP_PROP_FRAME_HEIGHT)) == SIZE
    written.release()
    annotated = decode_all(out / f"bccd{suffix}")
    decoded = decode_all(bccd_video)
    assert len(annotated) == len(decoded) == 12

    lines = read_lines(out / "detections.jsonl")
    assert [line["frame"] for line in lines] == list(range(12))
    assert [line["timestamp"] for line in lines] == pytest.approx([index / FPS for index in range(12)])
    expected = predictor.predict([image for _, image in decoded], conf=CONF, nms=0.45)
    assert sum(len(found) for found in expected) >= 12  # the comparison below is about real boxes
    for line, found in zip(lines, expected, strict=True):
        assert_same_detections(line, found)
    for (_, original), (_, drawn), found in zip(decoded, annotated, expected, strict=True):
        if found:  # boxes drawn: beyond the noise of encoding twice
            assert np.abs(drawn.astype(int) - original.astype(int)).max() > 100

    summary = json.loads((out / "summary.json").read_text())
    assert summary["frame_count"] == summary["frames_read"] == summary["frames_predicted"] == 12
    assert summary["skipped_frames"] == 0 and summary["stopped_by"] is None
    assert (summary["width"], summary["height"], summary["fps"]) == (*SIZE, FPS)
    assert summary["settings"]["conf"] == CONF and summary["settings"]["input_size"] == [160, 160]


def test_stride_and_max_frames(
    bccd_video: Path, checkpoint: Path, predictor: Predictor, tmp_path: Path
) -> None:
    result = predict_video(predictor, bccd_video, tmp_path / "stride", conf=CONF, stride=2, progress=False)
    assert (result.frames_read, result.frames_predicted, result.skipped_frames) == (12, 6, 0)
    lines = read_lines(result.detections_path)
    assert [line["frame"] for line in lines] == [0, 2, 4, 6, 8, 10]
    assert [line["timestamp"] for line in lines] == pytest.approx([0, 0.4, 0.8, 1.2, 1.6, 2.0])
    decoded = decode_all(bccd_video)
    expected = predictor.predict([decoded[index][1] for index in range(0, 12, 2)], conf=CONF)
    for line, found in zip(lines, expected, strict=True):
        assert_same_detections(line, found)
    written = cv2.VideoCapture(str(result.video_path))
    assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(FPS / 2)  # same duration as the source
    written.release()
    assert len(decode_all(result.video_path)) == 6

    out = tmp_path / "first"
    code, output = predict_cli(
        str(checkpoint), str(bccd_video), "--out", str(out), "--max-frames", "3", "--stride", "2"
    )
    assert code == 0, output
    assert [line["frame"] for line in read_lines(out / "detections.jsonl")] == [0, 2, 4]
    assert len(decode_all(out / f"bccd{bccd_video.suffix}")) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames_predicted"], summary["max_frames"], summary["stride"]) == (3, 3, 2)

    code, output = predict_cli(
        str(checkpoint), str(bccd_video.parent), "--out", str(tmp_path / "x"), "--stride", "2"
    )
    assert code == 2 and "apply to videos and cameras" in output


def test_truncated_videos(bccd_dir: Path, checkpoint: Path, tmp_path: Path) -> None:
    """MJPG .avi cut in half: the frames before the cut are predicted and the rest counted as skipped (exit
    0, --strict 1). mp4v .mp4 cut in half has lost its index (written last): OpenCV cannot open it, exit 2."""
    avi = encode_mjpg(tmp_path / "clip.avi", bccd_dir, 12)
    avi.write_bytes(avi.read_bytes()[: avi.stat().st_size // 2])
    readable = decode_all(avi)
    assert 0 < len(readable) < 12  # what OpenCV itself decodes from the cut file

    out = tmp_path / "out"
    code, output = predict_cli(str(checkpoint), str(avi), "--out", str(out))
    assert code == 0, output
    skipped = 12 - len(readable)
    assert f"Skipped {skipped} frame(s) that could not be decoded" in output
    assert f"{len(readable)} of 12 frames read, {len(readable)} predicted" in output
    lines = read_lines(out / "detections.jsonl")
    assert [line["frame"] for line in lines] == list(range(len(readable)))
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["frames_predicted"], summary["skipped_frames"]) == (len(readable), skipped)
    assert len(decode_all(out / "clip.mp4")) == len(readable)

    code, output = predict_cli(str(checkpoint), str(avi), "--out", str(out), "--strict")
    assert code == 1 and f"Skipped {skipped} frame(s)" in output

    mp4 = tmp_path / "cut.mp4"
    full = encode_video(tmp_path / "full.mp4", bccd_dir, 12)
    if full.suffix != ".mp4":
        pytest.skip("this OpenCV cannot write mp4v")
    mp4.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    code, output = predict_cli(str(checkpoint), str(mp4), "--out", str(tmp_path / "cut-out"))
    assert code == 2 and f"{mp4} cannot be opened as a video" in output
    assert not (tmp_path / "cut-out").exists()


def test_damaged_frame_mid_video_is_skipped_and_keeps_later_indices(
    bccd_dir: Path, predictor: Predictor, tmp_path: Path
) -> None:
    """Random bytes over a tenth of an mp4's middle: OpenCV fails on some frames and decodes the later ones.
    The lines keep each decoded frame's index, which its container time stamp (plain OpenCV loop) confirms."""
    video = encode_video(tmp_path / "damaged.mp4", bccd_dir, 12)
    data = bytearray(video.read_bytes())
    start, length = len(data) // 2, len(data) // 10
    data[start : start + length] = np.random.default_rng(0).integers(0, 256, length, dtype=np.uint8).tobytes()
    video.write_bytes(bytes(data))
    readable = decode_past_failures(video, 40)
    if len(readable) in (0, 12) or len(decode_all(video)) == len(readable):
        pytest.skip(f"this OpenCV decodes {len(readable)} of the 12 frames, none after a failure")
    result = predict_video(predictor, video, tmp_path / "out", conf=CONF, progress=False)
    assert result.frames_predicted == result.frames_read == len(readable)
    assert result.skipped_frames == 12 - len(readable)
    lines = read_lines(result.detections_path)
    assert [line["timestamp"] for line in lines] == pytest.approx([stamp for stamp, _ in readable])
    assert [line["frame"] for line in lines] == [round(stamp * FPS) for stamp, _ in readable]


def test_sources_that_cannot_be_read(
    bccd_dir: Path, bccd_video: Path, checkpoint: Path, tmp_path: Path
) -> None:
    fake = tmp_path / "notes.mp4"
    fake.write_text("not a video")
    out = tmp_path / "out"
    code, output = predict_cli(str(checkpoint), str(fake), "--out", str(out))
    assert code == 2 and f"{fake} cannot be opened as a video" in output and "FFMPEG" in output
    assert not out.exists()

    code, output = predict_cli(str(checkpoint), "99", "--out", str(out))
    assert code == 2 and "Camera 99 cannot be opened" in output
    assert not out.exists()

    code, output = predict_cli(str(checkpoint), str(tmp_path / "missing.mkv"), "--out", str(out))
    assert code == 2 and "missing.mkv does not exist" in output

    empty = encode_mjpg(tmp_path / "empty.avi", bccd_dir, 0)
    out.mkdir()
    (out / "keep.txt").write_text("earlier output")
    code, output = predict_cli(str(checkpoint), str(empty), "--out", str(out))
    assert code == 2 and "no frame could be decoded" in output and "nothing was written" in output
    assert sorted(path.name for path in out.iterdir()) == ["keep.txt"]  # no temporary file left

    code, output = predict_cli(str(checkpoint), str(bccd_video), "--out", str(bccd_video.parent))
    assert code == 2 and "overwrite" in output


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_after_the_current_frames_with_valid_files(
    signum: int, exit_code: int, bccd_dir: Path, checkpoint: Path, tmp_path: Path
) -> None:
    video = encode_video(tmp_path / "long.mp4", bccd_dir, 200)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "yolox_sdk.cli.main",
        "predict",
        str(checkpoint),
        str(video),
        "--out",
        str(out),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ
    )
    partial = out / ".detections.jsonl.partial"
    deadline = time.monotonic() + 120
    while not (partial.is_file() and partial.stat().st_size > 0):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == exit_code, stdout + stderr
    assert f"Stopped by {signal.Signals(signum).name}" in stderr and "Traceback" not in stderr
    lines = read_lines(out / "detections.jsonl")
    assert 0 < len(lines) < 200 and [line["frame"] for line in lines] == list(range(len(lines)))
    assert len(decode_all(out / f"long{video.suffix}")) == len(lines)  # playable, every frame there
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_by"] == signal.Signals(signum).name and summary["frames_predicted"] == len(lines)
    assert not list(out.glob(".*partial*"))
