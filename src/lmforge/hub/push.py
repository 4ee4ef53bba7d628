"""`lmforge push`: a saved model folder (and optionally a Gradio Space for it) to the Hugging Face Hub.

What is uploaded is decided first, as an upload plan (path in the repository -> local file or new content): the
folder's model, tokenizer, code and run files (never checkpoints, pickles or the optimizer state), the code files and
`auto_map` the folder misses for `trust_remote_code=True` (see remote_code.py), and the rendered model card as
README.md. `--dry-run` writes exactly that plan to a folder; a real push sends it as one commit per repository,
after checking the token and the network, so that a failure leaves nothing half-uploaded.
"""

import os
import shutil
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, SpaceCard, SpaceCardData, constants, get_token
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id

from .. import __version__
from ..errors import LmforgeError
from .cards import read_model_folder, render_model_card
from .remote_code import remote_code_updates

# Files of a run folder that never go to the Hub: pickled files (lmforge shares weights as safetensors only, and
# training_args.bin is a pickle), the optimizer state, and the card (rendered anew).
EXCLUDED_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".pyc")
EXCLUDED_FILES = {"README.md", "training_args.bin", "training_args.json", "optimizer.pt", "scheduler.pt"}
# The only subfolders uploaded: those that belong to the model (LatentReasoner's encoder tokenizer). The others
# (checkpoint-*, interrupted/, runs/...) stay local.
MODEL_SUBFOLDERS = {"encoder_tokenizer"}
# gradio version written in the Space metadata when gradio is not installed here
DEFAULT_GRADIO_VERSION = "6.31.0"

SPACE_APP = '''"""Web demo of the model {repo_id}: `lmforge demo` on a Gradio Space (written by `lmforge push --space`)."""

from huggingface_hub import snapshot_download

from lmforge.demo import launch_demo

MODEL_ID = "{repo_id}"

if __name__ == "__main__":
    launch_demo(snapshot_download(MODEL_ID))
'''


@dataclass
class UploadPlan:
    """The files of one Hub repository: path in the repository -> local file to upload, or new content."""

    repo_id: str
    repo_type: str = "model"
    files: dict[str, Path | bytes] = field(default_factory=dict)

    def write_to(self, folder: Path) -> list[str]:
        """Write the plan to `folder` (emptied first): the exact tree a push would upload. Returns its paths."""
        if folder.exists():
            shutil.rmtree(folder)
        for path_in_repo, source in sorted(self.files.items()):
            target = folder / path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, bytes):
                target.write_bytes(source)
            else:
                shutil.copy2(source, target)
        return sorted(self.files)

    def operations(self) -> list[CommitOperationAdd]:
        return [
            CommitOperationAdd(
                path_in_repo=path_in_repo, path_or_fileobj=source if isinstance(source, bytes) else str(source)
            )
            for path_in_repo, source in sorted(self.files.items())
        ]


def _excluded(path: Path, top_level: bool) -> bool:
    if path.is_dir():
        return not top_level or path.name not in MODEL_SUBFOLDERS
    return path.name in EXCLUDED_FILES or path.suffix in EXCLUDED_SUFFIXES or path.name.startswith((".", "_"))


def check_repo_id(repo_id: str, what: str = "--repo-id") -> None:
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise LmforgeError(f"{what} {repo_id!r} is not a valid repository id: {str(err).splitlines()[0]}") from None
    if repo_id.count("/") != 1:
        raise LmforgeError(f"{what} {repo_id!r} must be USER/NAME (or ORGANIZATION/NAME)")


def model_upload_plan(
    model_path: str | Path, repo_id: str, space_id: str | None = None, license: str = "mit"
) -> UploadPlan:
    """Everything `lmforge push` uploads to the model repository."""
    check_repo_id(repo_id)
    folder = read_model_folder(model_path).path
    plan = UploadPlan(repo_id=repo_id)
    for entry in sorted(folder.iterdir()):
        if _excluded(entry, top_level=True):
            continue
        if entry.is_dir():
            for file in sorted(entry.rglob("*")):
                if file.is_file() and not _excluded(file, top_level=False):
                    plan.files[file.relative_to(folder).as_posix()] = file
        else:
            plan.files[entry.name] = entry
    plan.files.update(remote_code_updates(folder))
    card = render_model_card(folder, repo_id=repo_id, space_id=space_id, license=license)
    plan.files["README.md"] = str(card).encode("utf-8")
    return plan


def space_upload_plan(space_id: str, repo_id: str, license: str = "mit") -> UploadPlan:
    """A Gradio Space that downloads the model `repo_id` and runs `lmforge demo` on it."""
    check_repo_id(space_id, what="--space")
    try:
        gradio_version = package_version("gradio")
    except PackageNotFoundError:
        gradio_version = DEFAULT_GRADIO_VERSION
    card_data = SpaceCardData(
        title=space_id.split("/")[-1],
        sdk="gradio",
        sdk_version=gradio_version,
        app_file="app.py",
        models=[repo_id],
        license=license,
        pinned=False,
        emoji="📜",
        colorFrom="indigo",
        colorTo="gray",
        short_description=f"Web demo of the lmforge model {repo_id}"[:60],
    )
    content = (
        f"---\n{card_data.to_yaml()}\n---\n\n# {space_id.split('/')[-1]}\n\n"
        f"A web demo of [{repo_id}](https://huggingface.co/{repo_id}), a model trained with lmforge. It runs "
        "`lmforge demo` on the model: a prompt box, sampling settings and the text as it is generated. The Hub's "
        "hosted inference widget cannot run the model, whose code ships in its repository (custom code).\n"
    )
    card = SpaceCard(content)
    return UploadPlan(
        repo_id=space_id,
        repo_type="space",
        files={
            "README.md": str(card).encode("utf-8"),
            "app.py": SPACE_APP.format(repo_id=repo_id).encode("utf-8"),
            "requirements.txt": f"lmforge[demo]=={__version__}\n".encode(),
        },
    )


def hub_offline() -> bool:
    """Whether the Hugging Face Hub is switched off here (`HF_HUB_OFFLINE`)."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    return bool(constants.HF_HUB_OFFLINE) or value.upper() in {"1", "ON", "YES", "TRUE"}


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def check_hub_access(token: str | None = None) -> str:
    """Make sure a push can work before anything is uploaded: returns the user name of the token.

    One-line errors say which is missing: the network (offline mode, or the Hub cannot be reached) or the token.
    """
    if hub_offline():
        raise LmforgeError(
            "cannot reach the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE=1); unset it to push, or use "
            "--dry-run to write the folder that would be uploaded"
        )
    token = token or get_token()
    if not token:
        raise LmforgeError(
            "no Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access) to push"
        )
    try:
        info = HfApi().whoami(token=token)
    except HfHubHTTPError as err:
        status = err.response.status_code if err.response is not None else None
        if status in (401, 403):
            raise LmforgeError(
                f"the Hugging Face Hub rejected the token (HTTP {status}); log in again with `hf auth login`"
            ) from None
        raise LmforgeError(f"the Hugging Face Hub answered with an error: {_first_line(err)}") from None
    except Exception as err:  # connection refused, DNS failure, timeout, proxy...
        raise LmforgeError(
            f"cannot reach the Hugging Face Hub ({type(err).__name__}: {_first_line(err)}); check the network"
        ) from None
    return str(info.get("name", ""))


def upload(plan: UploadPlan, token: str | None, private: bool = False) -> str:
    """Create the repository if needed and upload the plan as one commit; returns the repository URL."""
    api = HfApi(token=token)
    try:
        url = api.create_repo(
            plan.repo_id,
            repo_type=plan.repo_type,
            private=private,
            exist_ok=True,
            space_sdk="gradio" if plan.repo_type == "space" else None,
        )
        api.create_commit(
            plan.repo_id,
            plan.operations(),
            repo_type=plan.repo_type,
            commit_message=f"Upload with lmforge {__version__}",
        )
    except Exception as err:
        raise LmforgeError(
            f"upload to {plan.repo_id} failed, nothing was committed: {type(err).__name__}: {_first_line(err)}"
        ) from None
    return str(url)


def default_staging_dir(model_path: str | Path) -> Path:
    """Where `--dry-run` writes by default: next to the model folder, `<folder>-hub`."""
    return Path(str(Path(model_path).resolve()) + "-hub")


def push(
    model_path: str | Path,
    repo_id: str,
    private: bool = False,
    dry_run: bool = False,
    space_id: str | None = None,
    output_dir: str | Path | None = None,
    license: str = "mit",
    token: str | None = None,
) -> dict[str, list[str]]:
    """Push a saved model (and a Space for it): see the module docstring. Returns the uploaded (or written) files
    under "model" (and "space"). With `dry_run`, the repositories' trees are written to `output_dir/model` and
    `output_dir/space` (default: `<model_path>-hub`) and nothing is sent."""
    model_plan = model_upload_plan(model_path, repo_id, space_id=space_id, license=license)
    plans = [model_plan] + ([space_upload_plan(space_id, repo_id, license=license)] if space_id else [])
    written: dict[str, list[str]] = {}
    if dry_run:
        staging = Path(output_dir) if output_dir else default_staging_dir(model_path)
        if staging.exists() and not staging.is_dir():
            raise LmforgeError(f"output_dir {staging} is a file; give a folder for the dry run")
        for plan in plans:
            written[plan.repo_type] = plan.write_to(staging / plan.repo_type)
        return written
    check_hub_access(token)
    token = token or get_token()
    for plan in plans:
        upload(plan, token, private=private)
        written[plan.repo_type] = sorted(plan.files)
    return written


__all__ = [
    "UploadPlan",
    "check_hub_access",
    "check_repo_id",
    "default_staging_dir",
    "model_upload_plan",
    "push",
    "space_upload_plan",
    "upload",
]
