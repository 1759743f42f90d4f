"""A scene folder's bookkeeping: one copy of a published file, disk use, what changed."""

import os

from dreamer.io import write_json
from dreamer.pipeline.folder import changed_settings, disk_usage, format_bytes, largest_entries, publish_file
from dreamer.pipeline.settings import SceneConfigs


def test_a_published_file_is_one_copy_and_rewriting_either_name_leaves_the_other(tmp_path):
    source, target = tmp_path / "splats" / "gaussians.ply", tmp_path / "gaussians.ply"
    source.parent.mkdir()
    source.write_bytes(b"x" * 1000)
    publish_file(source, target)
    assert target.read_bytes() == source.read_bytes()
    assert disk_usage(tmp_path) == 1000  # two names, one file
    assert largest_entries(tmp_path) == [("gaussians.ply", 1000)]  # counted where it is met first
    publish_file(source, target)  # again: still one file, no temporaries left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gaussians.ply", "splats"]
    tmp = target.with_name("new")
    tmp.write_bytes(b"y" * 10)
    os.replace(tmp, target)  # how every writer of the project replaces a file
    assert source.read_bytes() == b"x" * 1000 and disk_usage(tmp_path) == 1010


def test_changed_settings_names_what_changed_and_ignores_what_changes_no_dream(tmp_path):
    base = SceneConfigs()
    assert changed_settings(tmp_path, base) is None  # an empty folder
    write_json(tmp_path / "config.json",
               {"hash": base.result_hash(), "dream_hash": base.dream_hash(), **base.to_dict()})
    assert changed_settings(tmp_path, base) is None  # settings but no outputs yet
    (tmp_path / "points.ply").write_bytes(b"ply")
    assert changed_settings(tmp_path, base) is None
    import dataclasses

    later = dataclasses.replace(base, scene=dataclasses.replace(base.scene, render_frames=12),
                                models=dataclasses.replace(base.models, device="cpu"))
    assert changed_settings(tmp_path, later) is None  # a later stage's setting, a device: not the dream
    other = dataclasses.replace(base, scene=dataclasses.replace(base.scene, width=256),
                                dream=dataclasses.replace(base.dream, seed=4))
    assert changed_settings(tmp_path, other) == "width 512 -> 256, seed 0 -> 4"


def test_sizes_read_like_ls():
    assert [format_bytes(n) for n in (999, 1000, 81_234, 152_000_000, 1_400_000_000)] == \
        ["999 B", "1.0 kB", "81 kB", "152 MB", "1.4 GB"]
