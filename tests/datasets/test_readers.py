"""Readers and tfds builders: synthetic videos written in each format read back to the same masks and pixels; bad
data reported per video while the rest goes on."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from sam2_jax.datasets import sa1b, vos, writers
from sam2_jax.datasets.synthetic import SyntheticImageDataset, SyntheticVideoDataset
from sam2_jax.video.video_io import VideoSource

STRIDE = 4


@pytest.fixture(scope="module")
def videos():
    return list(SyntheticVideoDataset(num_videos=2, seed=11, num_frames=9, height=40, width=56, num_objects=3))


@pytest.fixture(scope="module")
def folders(tmp_path_factory, videos):
    root = tmp_path_factory.mktemp("formats")
    writers.write_davis(videos, str(root / "davis"), annotation_stride=STRIDE)
    writers.write_sav(videos, str(root / "sav"), annotation_stride=STRIDE)
    rt = [
        type(v)(frames=writers.jpeg_roundtrip(v.frames), masks=v.masks, object_ids=v.object_ids, video_id=v.video_id)
        for v in videos
    ]
    writers.write_sav_train(rt, str(root / "sav_train"))
    return root


def readers(root):
    return {
        "davis": vos.DavisFolder(str(root / "davis")),
        "sav": vos.SAVFolder(str(root / "sav"), split="val"),
        "sav_train": vos.SAVTrainFolder(str(root / "sav_train")),
    }


def test_palette_is_davis():
    # The first colours of the palette of DAVIS and the official tools/vos_inference.py.
    assert len(vos.DAVIS_PALETTE) == 768
    assert vos.DAVIS_PALETTE[:24] == bytes(
        [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128, 128, 0, 128, 0, 128, 128, 128, 128, 128]
    )
    assert vos.DAVIS_PALETTE[24:30] == b"@\x00\x00\xc0\x00\x00"


def test_every_format_reads_back_the_same_video(folders, videos):
    for name, reader in readers(folders).items():
        got = list(reader)
        assert reader.errors == [], name
        assert [g.video_id for g in got] == [v.video_id for v in videos], name
        for g, v in zip(got, videos, strict=True):
            assert (g.height, g.width, g.num_frames) == (40, 56, 9)
            np.testing.assert_array_equal(g.mask_frames, [0, 4, 8], err_msg=name)
            present = v.masks[::STRIDE].any(axis=(0, 2, 3))
            # DAVIS palettes only know the objects that appear on an annotated frame; SA-V lists every object.
            ids = v.object_ids[present] if name == "davis" else v.object_ids
            np.testing.assert_array_equal(g.object_ids, ids, err_msg=name)
            keep = present if name == "davis" else np.ones(len(present), bool)
            np.testing.assert_array_equal(g.masks(), v.masks[::STRIDE][:, keep], err_msg=name)
            assert g.layout == ("davis" if name == "davis" else "sav")
            src = VideoSource(g.frames, image_size=32)
            np.testing.assert_array_equal(src.original_frame(5), writers.jpeg_roundtrip(v.frames[5:6])[0], err_msg=name)


def test_tfds_builders_equal_the_folder_readers(folders, tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from sam2_jax.datasets import tfds_builders as tb

    for name, reader in readers(folders).items():
        builder = tb.VOSFolderBuilder(config=name, data_dir=str(tmp_path / "tfds"), file_format="array_record")
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(folders / name)))
        source = builder.as_data_source()["val"]
        assert len(source) == 2
        for i, folder_video in enumerate(reader):
            rec = tb.vos_video_from_record(source[i])
            assert rec.video_id == folder_video.video_id and rec.frame_names == folder_video.frame_names
            for f in ("object_ids", "mask_frames", "annotated", "packed_masks"):
                np.testing.assert_array_equal(getattr(rec, f), getattr(folder_video, f), err_msg=f"{name} {f}")
            a, b = VideoSource(rec.frames, image_size=32), VideoSource(folder_video.frames, image_size=32)
            for t in (0, 8):
                np.testing.assert_array_equal(a.original_frame(t), b.original_frame(t), err_msg=name)


def test_sa1b_folder_and_builder(tmp_path):
    images = list(SyntheticImageDataset(num_images=2, seed=4, height=30, width=44, num_objects=3))
    writers.write_sa1b(images, str(tmp_path / "sa1b"))
    folder = sa1b.SA1BFolder(str(tmp_path / "sa1b"))
    got = list(folder)
    assert folder.errors == [] and [g.image_id for g in got] == ["image_00000", "image_00001"]
    for g, im in zip(got, images, strict=True):
        present = im.masks.any(axis=(1, 2))
        np.testing.assert_array_equal(g.masks(), im.masks[present])
        np.testing.assert_array_equal(g.load_image(), writers.jpeg_roundtrip(im.image[None])[0])
        ys, xs = np.nonzero(im.masks[present][0])
        np.testing.assert_array_equal(
            g.boxes[0], [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        )
    tfds = pytest.importorskip("tensorflow_datasets")
    from sam2_jax.datasets import tfds_builders as tb

    builder = tb.SA1BBuilder(data_dir=str(tmp_path / "tfds"), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "sa1b")))
    rec = tb.sa1b_image_from_record(builder.as_data_source()["train"][1])
    np.testing.assert_array_equal(rec.masks(), got[1].masks())
    np.testing.assert_array_equal(rec.image, got[1].load_image())


def test_real_sav_annotation_decodes(tmp_path):
    from tests.evaluation.sav_cases import SAV_JSON

    if not os.path.exists(SAV_JSON):
        pytest.skip("shared SA-V annotation not found")
    ann = vos.read_sav_json(SAV_JSON)
    v = vos.sav_train_video("sav_000001", "unused.mp4", ann)
    assert (v.height, v.width, v.num_frames) == (848, 480, 483)
    assert len(v.mask_frames) == 121 and v.mask_frames[-1] == 480
    np.testing.assert_array_equal(v.object_ids, [0, 1, 2, 3, 4])
    # Object 3 first appears at annotated frame 113 (shared/data/README.md).
    assert v.first_annotated()[3] == 113
    # The JSON's masklet_size_abs is each object's mean area over the frames where it is visible.
    area = v.masks().sum(axis=(2, 3)).astype(np.float64)
    mean_visible = [area[:, k][area[:, k] > 0].mean() for k in range(5)]
    np.testing.assert_allclose(mean_visible, ann["masklet_size_abs"], rtol=1e-12)


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_bad_data_is_reported_per_video_and_the_rest_goes_on(folders, tmp_path):
    # DAVIS: a missing frame in video 0, an annotation of the wrong size in video 1.
    d = _copy(folders / "davis", tmp_path / "davis")
    os.remove(d / "JPEGImages" / "480p" / "video_00000" / "00003.jpg")
    reader = vos.DavisFolder(str(d))
    assert [v.video_id for v in reader] == ["video_00001"]
    assert reader.errors[0][0] == "video_00000" and "frame missing after 00002.jpg" in reader.errors[0][1]
    writers.write_label_png(str(d / "Annotations" / "480p" / "video_00001" / "00004.png"), np.zeros((20, 56), np.uint8))
    with pytest.raises(vos.DataError, match=r"00004.png is 56x20 but the frames are 56x40"):
        reader.load("video_00001")
    Image.new("RGB", (56, 40)).save(d / "Annotations" / "480p" / "video_00001" / "00004.png")
    with pytest.raises(vos.DataError, match="is a RGB PNG"):
        reader.load("video_00001")
    # SA-V: an annotation for a frame the video does not have.
    s = _copy(folders / "sav", tmp_path / "sav")
    writers.write_label_png(
        str(s / "Annotations_6fps" / "video_00000" / "001" / "00040.png"), np.zeros((40, 56), np.uint8)
    )
    reader = vos.SAVFolder(str(s), split="val")
    assert [v.video_id for v in reader] == ["video_00001"]
    assert "annotation 40" in reader.errors[0][1] and "has no frame" in reader.errors[0][1]
    # SA-V train: a corrupt JSON and a missing video.
    t = _copy(folders / "sav_train", tmp_path / "sav_train")
    (t / "video_00000_manual.json").write_text('{"masklet": [')
    reader = vos.SAVTrainFolder(str(t))
    assert [v.video_id for v in reader] == ["video_00001"]
    assert "cannot read annotation" in reader.errors[0][1]
    os.remove(t / "video_00001.mp4")
    assert list(reader) == [] and "video file" in reader.errors[1][1]
    # A mask whose RLE size differs from the video.
    ann = json.loads((folders / "sav_train" / "video_00001_manual.json").read_text())
    ann["masklet"][1][0]["size"] = [41, 56]
    with pytest.raises(vos.DataError, match=r"frame 1: mask 0 has size \[41, 56\]"):
        vos.sav_train_video("x", "x.mp4", ann)
    # The tfds builder leaves the bad video out and records why.
    tfds = pytest.importorskip("tensorflow_datasets")
    from sam2_jax.datasets import tfds_builders as tb

    s2 = _copy(folders / "sav", tmp_path / "sav2")
    os.remove(s2 / "JPEGImages_24fps" / "video_00001" / "00000.jpg")
    os.remove(s2 / "JPEGImages_24fps" / "video_00001" / "00001.jpg")
    builder = tb.VOSFolderBuilder(config="sav", data_dir=str(tmp_path / "tfds"), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(s2)))
    assert len(builder.as_data_source()["val"]) == 1
    assert builder.skipped[0][0] == "video_00001" and "has no frame" in builder.skipped[0][1]


def test_synthetic_builder(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    from sam2_jax.datasets import tfds_builders as tb

    ds = SyntheticVideoDataset(num_videos=2, seed=5, num_frames=3, height=24, width=32, num_objects=2)
    builder = tb.SyntheticVOSBuilder(dataset=ds, data_dir=str(tmp_path), file_format="array_record")
    builder.download_and_prepare()
    source = builder.as_data_source()["train"]
    assert len(source) == 2
    for i, v in enumerate(ds):
        rec = tb.vos_video_from_record(source[i])
        assert rec.video_id == v.video_id and rec.frame_names == ["00000", "00001", "00002"]
        np.testing.assert_array_equal(rec.masks(), v.masks)
        np.testing.assert_array_equal(rec.frames, writers.jpeg_roundtrip(v.frames))
