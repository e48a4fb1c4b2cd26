"""Running a trained model on a video file or a live camera: the video side of ``yolox-sdk predict``.

``predict_video`` streams frames from OpenCV one by one (never the whole video), predicts them a few at a
time, and writes an annotated video, one JSON line of detections per frame and a summary. Files are
written under temporary names and renamed only when complete, so a failure never leaves half-written
output, and SIGINT/SIGTERM stop after the current batch with every file closed and valid.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO, Any

import attrs
import cv2
import numpy as np
from tqdm import tqdm

from yolox_sdk.errors import ConfigError, DatasetError
from yolox_sdk.evaluation.draw import draw_detections
from yolox_sdk.evaluation.predict import Detection, Predictor

VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v"})
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://")
DETECTIONS_FILENAME = "detections.jsonl"
SUMMARY_FILENAME = "summary.json"

# Failed reads in a row after which a source counts as ended: OpenCV retries a bad packet itself, so a
# longer run of failures is a truncated file or a camera that went away, not one damaged frame.
MAX_CONSECUTIVE_FAILURES = 10
# The writer's frame rate when the source reports none (many cameras and streams).
FALLBACK_FPS = 30.0
# FFmpeg's AV_LOG_QUIET.
FFMPEG_LOG_QUIET = -8
# (suffix, FourCC) tried in order: MPEG-4 Part 2 in .mp4 plays almost everywhere; Motion-JPEG in .avi is
# built into OpenCV itself, so it opens where no FFmpeg encoder does.
WRITER_CODECS = ((".mp4", "mp4v"), (".avi", "MJPG"))


@attrs.frozen
class VideoPredictionResult:
    """What ``predict_video`` did and wrote.

    Attributes:
        source: the file path, camera index or stream URL read.
        video_path: the annotated video.
        detections_path: ``detections.jsonl``, one line per predicted frame.
        summary_path: ``summary.json`` with these counts and the settings.
        codec: the writer's FourCC (``mp4v``, or ``MJPG`` where that did not open).
        frame_count: frames the container announces (``None`` for cameras and streams that do not say).
        frames_read: frames decoded, those ``stride`` passes over included.
        frames_predicted: frames run through the model and written.
        skipped_frames: frames announced or met that could not be decoded (corrupt or truncated).
        fps: the source's frame rate (``FALLBACK_FPS`` when it reports none).
        fps_measured: frames predicted per second of wall time, reading and writing included.
        stopped_by: ``"SIGINT"`` or ``"SIGTERM"`` when a signal ended it early, else ``None``.
    """

    source: str
    video_path: Path
    detections_path: Path
    summary_path: Path
    codec: str
    frame_count: int | None
    frames_read: int
    frames_predicted: int
    skipped_frames: int
    fps: float
    fps_measured: float
    stopped_by: str | None

    def report_lines(self) -> list[str]:
        """What ``yolox-sdk predict`` prints: the files written and the frame counts."""
        container = (
            "MPEG-4 (mp4v) in .mp4" if self.codec == "mp4v" else f"{self.codec} in .avi (mp4v did not open)"
        )
        announced = f" of {self.frame_count}" if self.frame_count is not None else ""
        return [
            f"Annotated video ({container}): {self.video_path}",
            f"Detections per frame: {self.detections_path}; summary: {self.summary_path}",
            f"{self.frames_read}{announced} frames read, {self.frames_predicted} predicted at "
            f"{self.fps_measured:.1f} frames/s, {self.skipped_frames} skipped",
        ]


@attrs.frozen
class _Frame:
    index: int
    timestamp: float
    image: np.ndarray


def is_live_source(source: str | Path) -> bool:
    """Whether ``source`` names a camera (``0``, ``/dev/video0``) or a stream URL rather than a file.

    A digit string that is also an existing file or folder is that path, not a camera.
    """
    text = str(source)
    if text.isdigit():
        return not Path(text).exists()
    return text.startswith("/dev/video") or text.lower().startswith(STREAM_PREFIXES)


def is_video_source(source: str | Path) -> bool:
    """Whether ``predict`` should read ``source`` as a video: a camera, a stream or a video-suffixed file."""
    if is_live_source(source):
        return True
    path = Path(source)
    return path.suffix.lower() in VIDEO_SUFFIXES and not path.is_dir()


def _backend_names(backends: Sequence[int]) -> str:
    registry = cv2.videoio_registry
    return ", ".join(registry.getBackendName(b) for b in backends if registry.hasBackend(b)) or "none"


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """OpenCV logs a warning per back-end that fails to open a source, and FFmpeg a line per damaged
    packet; our error, or the skipped-frame count, says it once. FFmpeg's level is read when OpenCV first
    uses it; a value the user set (``OPENCV_FFMPEG_LOGLEVEL=24`` shows its warnings) is kept."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", str(FFMPEG_LOG_QUIET))
    previous = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(previous)


def _open_capture(source: str) -> cv2.VideoCapture:
    """An opened ``cv2.VideoCapture`` on ``source``, or a ``DatasetError`` saying what was tried."""
    live = is_live_source(source)
    if not live:
        path = Path(source)
        if not path.is_file():
            raise DatasetError(
                f"{source} does not exist: give a video file ({', '.join(sorted(VIDEO_SUFFIXES))}), a camera "
                "index such as 0, or a stream URL."
            )
    with _quiet_opencv():
        capture = cv2.VideoCapture(int(source) if source.isdigit() else source)
    if capture.isOpened():
        return capture
    if source.isdigit() or source.startswith("/dev/video"):
        raise DatasetError(
            f"Camera {source} cannot be opened: OpenCV's camera back-ends "
            f"({_backend_names(cv2.videoio_registry.getCameraBackends())}) found no camera there. Check that "
            "it is plugged in and not used by another program, and list the devices (ls /dev/video*); the "
            "first camera is 0."
        )
    backends = _backend_names(cv2.videoio_registry.getStreamBackends())
    if live:
        raise DatasetError(
            f"The stream {source} cannot be opened with OpenCV's back-ends ({backends}). Check the URL, "
            "that the server is reachable from here and that the stream plays in another player."
        )
    raise DatasetError(
        f"{source} cannot be opened as a video: OpenCV's back-ends ({backends}) cannot read it. It may be "
        f"truncated, not a video despite its {Path(source).suffix} suffix, or in a codec this OpenCV lacks; "
        "check that it plays (e.g. ffprobe), or re-encode it as H.264 or MPEG-4 in .mp4."
    )


def _output_name(source: str) -> str:
    """The stem of the annotated video: the file's own, ``camera0``, ``video0`` or ``stream``."""
    if source.isdigit():
        return f"camera{source}"
    if source.lower().startswith(STREAM_PREFIXES):
        return "stream"
    return Path(source).stem or "video"


class _FrameReader:
    """Frames of an opened capture in order, telling a damaged frame from the end of the stream.

    OpenCV's ``grab`` returns False for both. While the container announces more frames (or the source
    is live) a failure is retried; a success after failures means those frames were damaged (they keep
    their indices, so later frames keep theirs, as their timestamps confirm). After
    ``MAX_CONSECUTIVE_FAILURES`` in a row the source has ended; announced frames never decoded count as
    skipped too (a truncated file).
    """

    def __init__(self, capture: cv2.VideoCapture, live: bool, fps: float, frame_count: int | None) -> None:
        self.capture = capture
        self.live = live
        self.fps = fps
        self.frame_count = frame_count
        self.next_index = 0
        self.frames_read = 0
        self.damaged = 0
        self.ended = False
        self._started = time.monotonic()

    def next(self, stride: int) -> _Frame | None:
        """The next frame whose index is a multiple of ``stride``, or ``None`` at the end."""
        while not self.ended:
            if not self._grab():
                return None
            index = self.next_index
            self.next_index += 1
            if index % stride:
                continue
            ok, image = self.capture.retrieve()
            if not ok or image is None:
                self.frames_read -= 1
                self.damaged += 1
                continue
            return _Frame(index, self._timestamp(index), image)
        return None

    def _grab(self) -> bool:
        failures = 0
        while not self.capture.grab():
            failures += 1
            if not self._more_expected() or failures >= MAX_CONSECUTIVE_FAILURES:
                self.ended = True
                return False
        self.damaged += failures
        self.next_index += failures
        self.frames_read += 1
        return True

    def _more_expected(self) -> bool:
        return self.live or (self.frame_count is not None and self.next_index < self.frame_count)

    def _timestamp(self, index: int) -> float:
        if self.live:
            return round(time.monotonic() - self._started, 6)
        milliseconds = self.capture.get(cv2.CAP_PROP_POS_MSEC)
        if math.isfinite(milliseconds) and (milliseconds > 0 or index == 0):
            return round(milliseconds / 1000, 6)
        return round(index / self.fps, 6)  # OpenCV reports 0 where the container has no time stamps

    def skipped(self) -> int:
        """Damaged frames, plus those announced but never reached when the stream ended early."""
        unreached = self.frame_count - self.next_index if self.ended and self.frame_count else 0
        return self.damaged + max(0, unreached)


class _Outputs:
    """The three output files under temporary names until ``commit`` renames them into place."""

    def __init__(self, out_dir: Path, name: str, fps: float) -> None:
        self.out_dir = out_dir
        self.name = name
        self.fps = fps
        self.writer: cv2.VideoWriter | None = None
        self.codec = ""
        self.video_partial: Path | None = None
        self.detections_partial = out_dir / f".{DETECTIONS_FILENAME}.partial"
        self.summary_partial = out_dir / f".{SUMMARY_FILENAME}.partial"
        self.lines: IO[str] = self.detections_partial.open("w", encoding="utf-8")
        self.size: tuple[int, int] | None = None

    def write(self, frame: _Frame, detections: Sequence[Detection]) -> None:
        """Append the annotated frame to the video and its detections to the JSON lines."""
        if self.writer is None:
            self._open_writer(frame.image.shape[1], frame.image.shape[0])
        assert self.writer is not None
        image = frame.image
        if (image.shape[1], image.shape[0]) != self.size:  # a stream that changed resolution mid-way
            image = cv2.resize(image, self.size)
        self.writer.write(draw_detections(image, detections))
        record = {
            "frame": frame.index,
            "timestamp": frame.timestamp,
            "detections": [detection.to_dict() for detection in detections],
        }
        self.lines.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        """Make the lines written so far visible on disk (one batch at a time)."""
        self.lines.flush()

    def _open_writer(self, width: int, height: int) -> None:
        self.size = (width, height)
        for suffix, codec in WRITER_CODECS:
            path = self.out_dir / f".{self.name}.partial{suffix}"
            with _quiet_opencv():
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), self.fps, self.size)
            if writer.isOpened():
                self.writer, self.codec, self.video_partial = writer, codec, path
                return
            writer.release()
            path.unlink(missing_ok=True)
        raise DatasetError(
            f"OpenCV cannot open a video writer in {self.out_dir} (tried "
            f"{', '.join(f'{codec} in {suffix}' for suffix, codec in WRITER_CODECS)}) for {width}x{height} "
            "frames. Check that the folder is writable and that this OpenCV was built with video support."
        )

    def commit(self, summary: dict[str, Any]) -> tuple[Path, Path, Path]:
        """Close every file and rename it to its final name: video, JSON lines, summary."""
        self.close()
        assert self.video_partial is not None
        video = self.out_dir / f"{self.name}{self.video_partial.suffix}"
        summary["video"] = str(video.resolve())
        self.summary_partial.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        detections = self.out_dir / DETECTIONS_FILENAME
        summary_path = self.out_dir / SUMMARY_FILENAME
        self.video_partial.replace(video)
        self.detections_partial.replace(detections)
        self.summary_partial.replace(summary_path)
        return video, detections, summary_path

    def close(self) -> None:
        """Release the writer and close the lines file (both safe to call twice)."""
        if self.writer is not None:
            self.writer.release()
        self.lines.close()

    def discard(self) -> None:
        """Close and delete every temporary file: nothing half-written stays behind."""
        self.close()
        for path in (self.video_partial, self.detections_partial, self.summary_partial):
            if path is not None:
                path.unlink(missing_ok=True)


class _StopOnSignal:
    """Turns the first SIGINT/SIGTERM into a request to stop at the next frame boundary.

    The previous handlers are put back at once, so a second signal acts as before (it stops at once,
    and the partial files are discarded). Only the main thread may install handlers; elsewhere signals
    keep their usual effect.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopOnSignal:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._request_stop)
        return self

    def _request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(signum).name
        self._restore()

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __exit__(self, *exc_info: object) -> None:
        self._restore()


def _check_options(stride: int, max_frames: int | None, batch_size: int) -> None:
    if stride < 1:
        raise ConfigError(f"stride must be 1 or more (every stride-th frame is predicted), got {stride}.")
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"max_frames must be 1 or more (or None for the whole video), got {max_frames}.")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be 1 or more, got {batch_size}.")


def _source_fps(capture: cv2.VideoCapture) -> float:
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if math.isfinite(fps) and 0 < fps <= 1000 else FALLBACK_FPS


def _announced_frames(capture: cv2.VideoCapture, live: bool) -> int | None:
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if not live and math.isfinite(count) and count > 0 else None


def _prepare_out_dir(out_dir: Path, source: str, live: bool) -> bool:
    """Create ``out_dir`` (returns whether it was created here); refuse the source's own folder."""
    if not live and out_dir.resolve() == Path(source).resolve().parent:
        raise ConfigError(
            f"The output folder {out_dir} is the folder of the input video; the annotated video could "
            "overwrite it. Choose another output folder."
        )
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    return created


def predict_video(
    predictor: Predictor,
    source: str | Path,
    out_dir: str | Path,
    conf: float = 0.3,
    nms: float = 0.45,
    class_agnostic: bool = False,
    max_frames: int | None = None,
    stride: int = 1,
    batch_size: int = 4,
    progress: bool = True,
) -> VideoPredictionResult:
    """Predict every ``stride``-th frame of a video file, camera or stream; write the results to ``out_dir``.

    Writes ``<name>.mp4`` (``mp4v``; ``<name>.avi`` in MJPG where that writer does not open) with the
    source's frame size at ``fps / stride``, ``detections.jsonl`` (per predicted frame: ``frame`` index,
    ``timestamp`` in seconds, ``detections`` as in the image ``detections.json``) and ``summary.json``.
    Frames stream through; memory does not grow with the video's length. A damaged frame is skipped and
    counted. Cameras run until ``max_frames`` or a signal. The first SIGINT or SIGTERM stops after the
    current batch and the files are completed as usual; ``stopped_by`` says which signal.

    Args:
        max_frames: stop after predicting this many frames (``None``: until the end).
        stride: predict frames 0, stride, 2*stride, ...
        batch_size: frames per forward pass for files (cameras use 1, to keep latency low).
        progress: show a tqdm progress bar with frames/s.

    Raises:
        DatasetError: the source cannot be opened, or it holds no decodable frame (nothing is written).
        ConfigError: bad ``stride``/``max_frames``/``batch_size``, or ``out_dir`` is the video's folder.
    """
    _check_options(stride, max_frames, batch_size)
    source = str(source)
    out_dir = Path(out_dir)
    live = is_live_source(source)
    capture = _open_capture(source)
    try:
        fps = _source_fps(capture)
        reader = _FrameReader(capture, live, fps, _announced_frames(capture, live))
        created = _prepare_out_dir(out_dir, source, live)
        outputs = _Outputs(out_dir, _output_name(source), fps / stride)
        try:
            predicted, elapsed, stopped_by = _predict_frames(
                predictor,
                reader,
                outputs,
                (conf, nms, class_agnostic),
                max_frames,
                stride,
                1 if live else batch_size,
                progress,
            )
            if predicted == 0:
                raise DatasetError(_no_frames_message(source, reader, stopped_by))
            summary = _summary(predictor, source, reader, outputs, (conf, nms, class_agnostic), stride)
            summary.update(
                max_frames=max_frames,
                frames_predicted=predicted,
                fps_measured=round(predicted / elapsed, 3) if elapsed > 0 else None,
                stopped_by=stopped_by,
            )
            video, detections, summary_path = outputs.commit(summary)
        except BaseException:
            outputs.discard()
            if created and not any(out_dir.iterdir()):
                out_dir.rmdir()
            raise
    finally:
        capture.release()
    return VideoPredictionResult(
        source=source,
        video_path=video,
        detections_path=detections,
        summary_path=summary_path,
        codec=outputs.codec,
        frame_count=reader.frame_count,
        frames_read=reader.frames_read,
        frames_predicted=predicted,
        skipped_frames=reader.skipped(),
        fps=fps,
        fps_measured=summary["fps_measured"] or 0.0,
        stopped_by=stopped_by,
    )


def _predict_frames(
    predictor: Predictor,
    reader: _FrameReader,
    outputs: _Outputs,
    thresholds: tuple[float, float, bool],
    max_frames: int | None,
    stride: int,
    batch_size: int,
    progress: bool,
) -> tuple[int, float, str | None]:
    """The read-predict-write loop; returns frames predicted, seconds taken and the stopping signal."""
    conf, nms, class_agnostic = thresholds
    total = _expected_outputs(reader.frame_count, stride, max_frames)
    predicted = 0
    started = time.monotonic()
    bar = tqdm(total=total, unit="frame", desc=outputs.name, dynamic_ncols=True, disable=not progress)
    with bar, _StopOnSignal() as stop:
        while stop.signal_name is None and (max_frames is None or predicted < max_frames):
            wanted = batch_size if max_frames is None else min(batch_size, max_frames - predicted)
            batch = _read_batch(reader, stride, wanted, stop)
            if not batch:
                break
            found = predictor.predict([frame.image for frame in batch], conf, nms, class_agnostic, len(batch))
            for frame, detections in zip(batch, found, strict=True):
                outputs.write(frame, detections)
            outputs.flush()
            predicted += len(batch)
            bar.update(len(batch))
        return predicted, time.monotonic() - started, stop.signal_name


def _read_batch(reader: _FrameReader, stride: int, wanted: int, stop: _StopOnSignal) -> list[_Frame]:
    batch: list[_Frame] = []
    while len(batch) < wanted and stop.signal_name is None:
        frame = reader.next(stride)
        if frame is None:
            break
        batch.append(frame)
    return batch


def _expected_outputs(frame_count: int | None, stride: int, max_frames: int | None) -> int | None:
    """The progress bar's total: predicted frames if the container's count holds, else ``max_frames``."""
    if frame_count is None:
        return max_frames
    expected = math.ceil(frame_count / stride)
    return expected if max_frames is None else min(expected, max_frames)


def _no_frames_message(source: str, reader: _FrameReader, stopped_by: str | None) -> str:
    if stopped_by is not None:
        return (
            f"Stopped by {stopped_by} before the first frame of {source} was predicted; nothing was written."
        )
    announced = f" (it announces {reader.frame_count})" if reader.frame_count else ""
    return (
        f"{source} opened but no frame could be decoded{announced}: it is empty, truncated or damaged. "
        "Check that it plays, or re-encode it; nothing was written."
    )


def _summary(
    predictor: Predictor,
    source: str,
    reader: _FrameReader,
    outputs: _Outputs,
    thresholds: tuple[float, float, bool],
    stride: int,
) -> dict[str, Any]:
    conf, nms, class_agnostic = thresholds
    assert outputs.size is not None
    return {
        "source": source if is_live_source(source) else str(Path(source).resolve()),
        "codec": outputs.codec,
        "width": outputs.size[0],
        "height": outputs.size[1],
        "fps": reader.fps,
        "output_fps": outputs.fps,
        "frame_count": reader.frame_count,
        "frames_read": reader.frames_read,
        "skipped_frames": reader.skipped(),
        "stride": stride,
        "settings": {
            "conf": conf,
            "nms": nms,
            "class_agnostic": class_agnostic,
            "input_size": list(predictor.input_size),
        },
        "class_names": list(predictor.class_names),
    }
