"""The package list in setup.cfg must match the folders on disk (kernels/ is mapped by hand)."""
import configparser
from pathlib import Path

import minilm

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_folder_is_listed_in_setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    on_disk = set()
    for init in (ROOT / "minilm").rglob("__init__.py"):
        on_disk.add(".".join(init.parent.relative_to(ROOT).parts))
    for init in (ROOT / "kernels").rglob("__init__.py"):
        on_disk.add(".".join(("minilm",) + init.parent.relative_to(ROOT).parts))
    assert listed == on_disk, f"setup.cfg lists {sorted(listed - on_disk)} that do not exist and misses {sorted(on_disk - listed)}"


def test_kernels_are_importable_as_minilm_kernels():
    import minilm.kernels
    assert Path(minilm.kernels.__file__).resolve().parent == ROOT / "kernels"
    assert minilm.__version__
